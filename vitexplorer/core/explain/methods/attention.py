"""Raw attention: one token's attention in one layer and head, or the mean of the heads."""

from __future__ import annotations

from typing import Any

from vitexplorer.core.explain.method import Computation, Method, MethodOptions, register
from vitexplorer.core.render.numbering import shown


class _Attention(Computation):
    def from_attention(self, attention: Any, spec: Any, options: MethodOptions) -> Any:
        return self.token_map(attention, options, spec)

    def token_map(self, prepared: Any, options: MethodOptions, spec: Any) -> Any:
        from vitexplorer.core.explain.tokens import attention_map

        return attention_map(
            prepared,
            options.layer,
            options.head,
            options.token,
            spec.grid,
            spec.num_prefix_tokens,
        )


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    token = spec.token_label(int(parameters.get("token", 0)))
    layers = spec.num_layers
    layer = int(parameters.get("layer", -1)) % layers
    head = parameters.get("head")
    heads = "mean of heads" if head is None else f"head {shown(head)} of {spec.num_heads}"
    return f"attention · layer {shown(layer)} of {layers}, {heads} · {token}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    head = parameters.get("head")
    heads = "mean of heads" if head is None else f"head {shown(head)}"
    return f"attention · layer {shown(int(parameters.get('layer', -1)))}, {heads}"


ATTENTION = register(
    Method(
        name="attention",
        label="Attention",
        summary="the CLS token's attention in --layer and --head",
        tip="Attention: the selected layer and head",
        help_title="Attention",
        help="the selected token's attention in one layer and head, or the mean of the heads: "
        "what the layer mixes into that token, not why the model decides.",
        options=("layer", "head", "token"),
        distribution=True,
        title=_title,
        caption=_caption,
        compute=_Attention(),
        order=0,
    )
)
