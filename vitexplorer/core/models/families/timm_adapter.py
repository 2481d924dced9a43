"""The adapter of timm's ``VisionTransformer`` (:class:`TimmAdapter`): its tokens, blocks, head,
attention capture and parts, through the timm internals listed in
:mod:`vitexplorer.core.models.families.timm`, which loads the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import timm
import torch
from timm.layers import Format
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import (  # Attention: here in every 1.0.x
    Attention,
    Block,
    ResPostBlock,
    VisionTransformer,
)
from torch import nn

from vitexplorer.core.models.families.base import Part, ViTAdapter
from vitexplorer.core.models.families.family import UnsupportedModel

if TYPE_CHECKING:
    from vitexplorer.core.models.blocks import BlockParts, Ops

HEAD_KINDS = ("classifier", "projection", "none")  # what the model's head is
HEAD_MARK = "_vitexplorer_head"  # set on a module whose head kind is known, not guessed


# --- the adapter -----------------------------------------------------------------------------


class _DistilledClassifier(nn.Linear):
    """A distilled DeiT's two heads as one linear map of [class token, distillation token]:
    ``(head(cls) + head_dist(dist)) / 2``, which is what timm's ``forward_head`` computes.
    Its parameters are the two heads' own, so training it trains them."""

    def __init__(self, head: nn.Linear, head_dist: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.head, self.head_dist = head, head_dist
        self.in_features = head.in_features + head_dist.in_features
        self.out_features = head.out_features

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([self.head.weight, self.head_dist.weight], dim=1) / 2

    @property
    def bias(self) -> torch.Tensor:  # type: ignore[override]
        return (self.head.bias + self.head_dist.bias) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self.head.in_features
        return (self.head(x[..., :width]) + self.head_dist(x[..., width:])) / 2


class _FinalStage(nn.Module):
    """The final norm, owning the norms and attention pool that act after pooling, so that
    fine-tuning the last blocks trains them too; its forward is the final norm alone."""

    def __init__(self, norm: nn.Module, after: list[nn.Module]) -> None:
        super().__init__()
        self.norm = norm
        self.after = nn.ModuleList(after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TimmAdapter(ViTAdapter):
    family = "timm"
    module: VisionTransformer

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, VisionTransformer)

    @property
    def distilled(self) -> bool:
        return isinstance(self.module, VisionTransformerDistilled)

    @property
    def prefix_kinds(self) -> tuple[str, ...]:
        m = self.module
        if self.distilled:
            kinds: tuple[str, ...] = ("cls", "dist")
        else:
            kinds = ("cls",) if m.cls_token is not None else ()
            kinds += ("reg",) * (0 if m.reg_token is None else m.reg_token.shape[1])
        if len(kinds) != m.num_prefix_tokens:
            raise UnsupportedModel(
                f"a {type(m).__name__} with {m.num_prefix_tokens} prefix tokens of unknown kinds"
            )
        return kinds

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.module
        ph, pw = m.patch_embed.patch_size
        grid = (images.shape[-2] // ph, images.shape[-1] // pw)
        if m.dynamic_img_size or tuple(m.patch_embed.grid_size) == grid:
            return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))
        with _any_input_size(m):  # another size (a rectangle): timm's own resampling
            return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))

    def blocks(self) -> list[nn.Module]:
        return list(self.module.blocks)

    def final_norm(self) -> nn.Module:
        m = self.module
        after = [part for part in (m.fc_norm, m.attn_pool) if part is not None]
        if not any(True for part in after for _ in part.parameters()):
            return m.norm
        return _FinalStage(m.norm, after)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.module
        if self.distilled and isinstance(self.get_classifier(), _DistilledClassifier):
            return m.head_drop(torch.cat([tokens[:, 0], tokens[:, 1]], dim=-1))
        return m.forward_head(tokens, pre_logits=True)

    # --- the classifier --------------------------------------------------------------------
    @property
    def head_kind(self) -> str:
        """What the head is: "classifier", "projection" (a CLIP tower's) or "none"."""
        return head_kind(self.module)

    def get_classifier(self) -> nn.Linear | None:
        m = self.module
        if self.head_kind != "classifier":
            return None
        if self.distilled:
            return _DistilledClassifier(cast(nn.Linear, m.head), cast(nn.Linear, m.head_dist))
        return cast(nn.Linear, m.head)  # a classifier's head is a Linear

    def set_classifier(self, head: nn.Linear) -> None:
        m = self.module
        if self.distilled:
            if not isinstance(head, _DistilledClassifier):
                if head.in_features != 2 * m.embed_dim:
                    raise ValueError(
                        f"a distilled DeiT's classifier reads both prefix tokens: "
                        f"{2 * m.embed_dim} features, not {head.in_features}"
                    )
                head = _split_distilled(head, m.embed_dim)
            m.head, m.head_dist = head.head, head.head_dist
        else:
            m.head = head
        m.num_classes = head.out_features
        setattr(m, HEAD_MARK, "classifier")

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """timm's own ``reset_classifier``, zero-initialised; it also gives a model without a
        classifier (DINO, a CLIP tower) one."""
        m = self.module
        m.reset_classifier(num_classes)
        for head in (m.head, getattr(m, "head_dist", None)):
            if isinstance(head, nn.Linear):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        setattr(m, HEAD_MARK, "classifier")
        found = self.get_classifier()
        assert found is not None
        return found

    # --- attention capture -----------------------------------------------------------------
    def attention_modules(self) -> list[nn.Module]:
        found: list[nn.Module] = []
        for i, block in enumerate(self.module.blocks):
            attention = getattr(block, "attn", None)
            if not isinstance(block, (Block, ResPostBlock)) or not _plain_attention(attention):
                what = type(attention).__name__ if attention is not None else type(block).__name__
                raise UnsupportedModel(
                    f"block {i + 1} of this {type(self.module).__name__} uses {what}, not timm's "
                    f"plain Attention; its attention maps cannot be captured yet"
                )
            found.append(attention)
        return found

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        """timm's ``Attention.forward`` on its eager path, the softmax taken by ``sink``."""
        assert _plain_attention(attention)
        a: Any = attention
        heads, head_dim = a.num_heads, a.head_dim
        norm = getattr(a, "norm", None) or nn.Identity()
        gate_layer = getattr(a, "gate", None)

        def forward(
            x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
        ) -> torch.Tensor:
            b, n, _ = x.shape
            gate = gate_layer(x).sigmoid() if gate_layer is not None else None
            qkv = a.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            q, k = a.q_norm(q), a.k_norm(k)
            bias = _mask_bias(n, q, attn_mask, is_causal)
            weights = a.attn_drop(sink.weights(q, k, a.scale, bias=bias))
            out = norm((weights @ v).transpose(1, 2).reshape(b, n, heads * head_dim))
            if gate is not None:
                out = out * gate
            return a.proj_drop(a.proj(out))

        return forward

    # --- the explicit forward (core/models/blocks.py) ----------------------------------------
    def block_parts(self, block: nn.Module) -> BlockParts:
        """timm's pre-norm ``Block`` with the plain ``Attention`` and ``Mlp``; q/k norms, a norm
        after the attention or in the MLP, a gate, SwiGLU or a post-norm block are refused."""
        from timm.layers import LayerScale, Mlp

        from vitexplorer.core.models.blocks import (
            BlockParts,
            check_identity,
            check_norm,
            linear_of,
            split_packed,
        )

        if type(block) is not Block:
            raise UnsupportedModel(
                f"its blocks are {type(block).__name__}, not timm's pre-norm Block"
            )
        a: Any = block.attn
        if not _plain_attention(a):
            raise UnsupportedModel(
                f"its attention is {type(a).__name__}, not timm's plain Attention"
            )
        check_identity(a.q_norm, "its attention's q_norm")
        check_identity(a.k_norm, "its attention's k_norm")
        check_identity(a.norm, "its attention's norm after the heads")
        if getattr(a, "gate", None) is not None:
            raise UnsupportedModel("its attention has a gate")
        mlp: Any = block.mlp
        if type(mlp) is not Mlp:
            raise UnsupportedModel(f"its MLP is {type(mlp).__name__}, not timm's plain Mlp")
        check_identity(mlp.norm, "its MLP's norm")
        scales: list[torch.Tensor | None] = []
        for name in ("ls1", "ls2"):
            part = getattr(block, name)
            if isinstance(part, LayerScale):
                scales.append(part.gamma)
            else:
                check_identity(part, f"its {name}")
                scales.append(None)
        q, k, v = split_packed(a.qkv.weight, a.qkv.bias)
        return BlockParts(
            norm1=check_norm(block.norm1, "its norm1"),
            q=q,
            k=k,
            v=v,
            num_heads=a.num_heads,
            scale=a.scale,
            scale_scores=False,
            out=linear_of(a.proj),
            norm2=check_norm(block.norm2, "its norm2"),
            fc1=linear_of(mlp.fc1),
            act=mlp.act,
            fc2=linear_of(mlp.fc2),
            ls1=scales[0],
            ls2=scales[1],
        )

    def explicit_head(self, tokens: torch.Tensor, ops: Ops) -> torch.Tensor:
        """The final norm, the pooling (class token, distillation token, or the average), then
        ``fc_norm`` where there is one; an attention pool is refused."""
        from vitexplorer.core.models.blocks import check_norm

        m = self.module
        if m.attn_pool is not None:
            raise UnsupportedModel("it pools its tokens with an attention pool (global_pool='map')")
        x = (
            tokens
            if isinstance(m.norm, nn.Identity)
            else ops.norm(check_norm(m.norm, "its norm"), tokens)
        )
        if self.distilled and isinstance(self.get_classifier(), _DistilledClassifier):
            return torch.cat([x[:, 0], x[:, 1]], dim=-1)
        x = m.pool(x)
        if not isinstance(m.fc_norm, nn.Identity):
            x = ops.norm(check_norm(m.fc_norm, "its fc_norm"), x)
        return x

    # --- parameters ------------------------------------------------------------------------
    def position_embeddings(self) -> torch.Tensor | None:
        """Prefix tokens first; only the patches' for models that keep the prefix tokens out
        of the position embedding (``no_embed_class``: DeiT III, DINOv2 with registers)."""
        pos = self.module.pos_embed
        return None if pos is None else pos[0]

    def patch_filters(self) -> torch.Tensor:
        proj = getattr(self.module.patch_embed, "proj", None)
        patch = (patch_size(self.module),) * 2
        if not isinstance(proj, nn.Conv2d) or tuple(proj.kernel_size) != patch:
            raise UnsupportedModel(
                "its patch embedding is not one convolution over the image's patches (a hybrid "
                "CNN stem?), so it has no patch filters to show"
            )
        return proj.weight

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        head = [m.norm, m.fc_norm, m.attn_pool, m.head, getattr(m, "head_dist", None)]
        embedding = [m.patch_embed, m.cls_token, getattr(m, "dist_token", None), m.reg_token]
        embedding += [m.pos_embed, m.norm_pre]
        return _present(head), self.blocks(), _present(embedding)


@contextmanager
def _any_input_size(module: Any) -> Iterator[None]:  # a timm VisionTransformer
    """For one call, the model as timm builds it with ``dynamic_img_size=True``: the patch
    embedding accepts any multiple of the patch size and ``_pos_embed`` resamples the position
    embeddings to the input's grid (timm's ``resample_abs_pos_embed``)."""
    patch_embed = module.patch_embed
    saved = (
        module.dynamic_img_size,
        patch_embed.strict_img_size,
        patch_embed.flatten,
        patch_embed.output_fmt,
    )
    module.dynamic_img_size = True
    patch_embed.strict_img_size = False
    patch_embed.flatten = False
    patch_embed.output_fmt = Format.NHWC
    try:
        yield
    finally:
        (
            module.dynamic_img_size,
            patch_embed.strict_img_size,
            patch_embed.flatten,
            patch_embed.output_fmt,
        ) = saved


def _present(parts: list[Any]) -> list[Part]:
    """The parts that exist and hold parameters."""
    return [
        p
        for p in parts
        if isinstance(p, nn.Parameter)
        or (isinstance(p, nn.Module) and any(True for _ in p.parameters()))
    ]


def _split_distilled(head: nn.Linear, width: int) -> _DistilledClassifier:
    """A linear map of [cls, dist] as a distilled DeiT's two heads (each twice its half)."""
    parts = []
    for half in (head.weight[:, :width], head.weight[:, width:]):
        linear = nn.Linear(width, head.out_features).to(head.weight.device)
        with torch.no_grad():
            linear.weight.copy_(2 * half)
            linear.bias.copy_(head.bias if head.bias is not None else 0.0)
        parts.append(linear)
    return _DistilledClassifier(*parts)


def _plain_attention(module: object) -> TypeGuard[Attention]:
    """timm's ``Attention`` (or a subclass keeping its forward): one token-by-token softmax."""
    return isinstance(module, Attention) and type(module).forward is Attention.forward


def _mask_bias(
    n: int, like: torch.Tensor, mask: torch.Tensor | None, is_causal: bool
) -> torch.Tensor | None:
    """The additive bias of ``scaled_dot_product_attention``'s ``attn_mask``/``is_causal``,
    of ``like``'s dtype and device."""
    if is_causal:
        return like.new_full((n, n), float("-inf")).triu_(1)
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros_like(mask, dtype=like.dtype).masked_fill_(~mask, float("-inf"))


def head_kind(module: nn.Module) -> str:
    """What ``module``'s head is. A CLIP tower's head is its image-text projection (as many
    outputs as the embedding, no ImageNet label set), unless vitexplorer gave it a classifier."""
    heads = [module.head, getattr(module, "head_dist", module.head)]
    if not all(isinstance(h, nn.Linear) for h in heads):
        return "none"
    marked = getattr(module, HEAD_MARK, None)
    if marked in HEAD_KINDS:
        return marked
    cfg = getattr(module, "pretrained_cfg", None) or {}
    projection = (
        "clip" in str(cfg.get("architecture", ""))
        and module.num_classes == cfg.get("num_classes")
        and timm.data.infer_imagenet_subset({"num_classes": module.num_classes}) is None
    )
    return "projection" if projection else "classifier"


def patch_size(module: nn.Module) -> int:
    """The side of the image patch each token stands for (a hybrid's stem included)."""
    embed: Any = module.patch_embed  # PatchEmbed, HybridEmbed, ...
    (height, width), (rows, cols) = embed.img_size, embed.grid_size
    ratio = embed.feat_ratio(as_scalar=False) if hasattr(embed, "feat_ratio") else None
    ratio = tuple(ratio) if ratio is not None else tuple(embed.patch_size)
    if ratio[0] != ratio[1] or (rows * ratio[0], cols * ratio[1]) != (height, width):
        raise UnsupportedModel(
            f"its {height}x{width} px input is not a whole grid of square patches "
            f"({rows}x{cols} tokens of {ratio[0]}x{ratio[1]} px)"
        )
    return ratio[0]
