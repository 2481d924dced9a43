"""Attention rollout (Abnar and Zuidema, ACL 2020): attention carried through the layers."""

from __future__ import annotations

from typing import Any

from vitexplorer.core.explain.method import Computation, Method, MethodOptions, register
from vitexplorer.core.render.numbering import shown


class _Rollout(Computation):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        start = min(options.start_layer, spec.num_layers - 1)
        return (options.head_fusion, options.discard_ratio, start)

    def from_attention(self, attention: Any, spec: Any, options: MethodOptions) -> Any:
        from vitexplorer.core.explain.rollout import rollout_map

        return rollout_map(
            attention,
            options.token,
            spec.grid,
            spec.num_prefix_tokens,
            options.head_fusion,
            options.discard_ratio,
            options.start_layer,
        )

    def prepare(self, attention: Any, spec: Any, options: MethodOptions) -> Any:
        """The layer matrices, computed once per image and option (a click then costs about a
        millisecond even on ViT-L/16 at 384 px)."""
        from vitexplorer.core.explain import rollout

        fusion, ratio, start = self.key(options, spec)
        return rollout.rollout_layers(attention, fusion, ratio, start, spec.num_prefix_tokens)

    def token_map(self, prepared: Any, options: MethodOptions, spec: Any) -> Any:
        import numpy as np

        from vitexplorer.core.explain.rollout import rollout_row

        row = rollout_row(prepared, options.token)
        return np.ascontiguousarray(row[spec.num_prefix_tokens :].reshape(spec.grid))

    def whole(self, prepared: Any) -> Any:
        """The whole (tokens, tokens) rollout: row i is token i's map, prefix tokens included."""
        from vitexplorer.core.explain.rollout import rollout_matrix

        return rollout_matrix(prepared)


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    token = spec.token_label(int(parameters.get("token", 0)))
    layers = spec.num_layers
    words = [f"{parameters.get('head_fusion', 'mean')} of heads"]
    ratio = float(parameters.get("discard_ratio", 0.0))
    if ratio:
        words.append(f"{100 * ratio:.0f}% discarded")
    start = int(parameters.get("start_layer", 0)) % layers
    words.append(
        f"layers {shown(start)} to {layers}" if start < layers - 1 else f"layer {layers} only"
    )
    return f"rollout · {', '.join(words)} · {token}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    words = [f"{parameters.get('head_fusion', 'mean')} of heads"]
    if parameters.get("discard_ratio"):
        words.append(f"{100 * parameters['discard_ratio']:.0f}% discarded")
    if parameters.get("start_layer"):
        words.append(f"from layer {shown(parameters['start_layer'])}")
    return f"rollout · {', '.join(words)}"


ROLLOUT = register(
    Method(
        name="rollout",
        label="Rollout",
        summary="attention rollout (Abnar and Zuidema 2020)",
        tip="Rollout: attention carried through the layers (Abnar and Zuidema 2020)",
        help_title="Rollout",
        help="attention carried through the layers, each layer's attention averaged with the "
        "identity for the residual connection.",
        paper="Abnar and Zuidema, Quantifying Attention Flow in Transformers, ACL 2020",
        year=2020,
        options=("token", "head_fusion", "discard_ratio", "start_layer"),
        distribution=True,
        not_applied="Rollout multiplies every layer from its 'from layer' on and fuses the heads "
        "its own way (the Show bar's options): no single layer or head applies. Show Attention "
        "to pick one.",
        title=_title,
        caption=_caption,
        compute=_Rollout(),
        order=1,
    )
)
