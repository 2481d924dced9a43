"""timm's ``VisionTransformer`` (``vit_*``, ``deit_*`` with the distilled ones, DINO, DINOv2 with
registers, CLIP and SigLIP towers), named ``timm:NAME`` or ``timm:NAME.TAG``.

timm internals this file relies on, all present throughout timm 1.0.x: the model's
``patch_embed``, ``_pos_embed`` (private, but the one place that knows the prefix tokens,
registers, ``no_embed_class`` and dynamic sizes), ``patch_drop``, ``norm_pre``, ``blocks``,
``norm``, ``fc_norm``, ``attn_pool``, ``head``/``head_dist``, ``forward_head``; and the attributes
of timm's ``Attention`` (``qkv``, ``q_norm``, ``k_norm``, ``scale``, ``attn_drop``, ``proj``,
``proj_drop``, and where present ``norm`` and ``gate``). Its fused path is left on: the analysed
pass swaps in an explicit forward built from those attributes.

Weights: ``none`` (random), ``default`` (timm's pretrained tag through timm's own caches and
download places: :mod:`vitexplorer.core.models.families.timm_weights`), or a file in timm's key
layout. No code from a hub is ever loaded, and no name outside timm's registry is accepted.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard, cast

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

from vitexplorer.core.io.values import check_whole, show_value
from vitexplorer.core.models.building import BuildPlan, check_weights_file, load_weights_file
from vitexplorer.core.models.checkpoint import (
    WeightsFileError,
    file_label,
)
from vitexplorer.core.models.download import CancelCheck, ProgressCallback, WeightsDownload
from vitexplorer.core.models.families import timm_weights
from vitexplorer.core.models.families.base import Part, UnsupportedModel, ViTAdapter
from vitexplorer.core.models.families.family import Family
from vitexplorer.core.models.families.registry import family_named
from vitexplorer.core.models.metadata import (
    INTERPOLATIONS,
    apply_metadata,
    check_config_keys,
    quoted,
)
from vitexplorer.core.models.spec import RANDOM, ModelSpec
from vitexplorer.core.models.vit import MAX_CLASSES, MAX_IMAGE_SIZE, SmallViTConfig, check_grid
from vitexplorer.core.training import estimate

PREFIX = "timm:"
HEAD_KINDS = ("classifier", "projection", "none")  # what the model's head is
_LOADED = timm_weights.LOADED  # timm's own initialisation skipped: every parameter is loaded
_HEAD_MARK = "_vitexplorer_head"  # set on a module whose head kind is known, not guessed
# a checkpoint's config; "projection": a CLIP tower's projection width, its num_classes 0
_CONFIG_KEYS = ("model_name", "num_classes", "img_size", "projection")


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
        setattr(m, _HEAD_MARK, "classifier")

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """timm's own ``reset_classifier``, zero-initialised; it also gives a model without a
        classifier (DINO, a CLIP tower) one."""
        m = self.module
        m.reset_classifier(num_classes)
        for head in (m.head, getattr(m, "head_dist", None)):
            if isinstance(head, nn.Linear):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        setattr(m, _HEAD_MARK, "classifier")
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
    marked = getattr(module, _HEAD_MARK, None)
    if marked in HEAD_KINDS:
        return marked
    cfg = getattr(module, "pretrained_cfg", None) or {}
    projection = (
        "clip" in str(cfg.get("architecture", ""))
        and module.num_classes == cfg.get("num_classes")
        and timm.data.infer_imagenet_subset({"num_classes": module.num_classes}) is None
    )
    return "projection" if projection else "classifier"


# --- names and the model's description ---------------------------------------------------


def model_name(name: str) -> str:
    """The timm name in ``timm:NAME`` (``NAME`` may carry a pretrained tag), checked."""
    bare = name[len(PREFIX) :] if name.lower().startswith(PREFIX) else name
    if bare.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise ValueError(
            f"timm:{bare} would fetch a model's configuration from outside timm; vitexplorer "
            f"opens timm's own models: timm:NAME, with --weights FILE for your weights"
        )
    arch, tag = timm.models.split_model_name_tag(bare)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch[:200], timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join('timm:' + c for c in close)}?" if close else ""
        raise ValueError(f"timm has no model {_shown(arch)}{hint}")
    if tag and not timm.list_pretrained(bare):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(arch + ".*")]
        known = f"; its tags are {', '.join(tags[:8])}" if tags else "; it has no pretrained tags"
        raise ValueError(f"timm's {arch} has no pretrained tag {_shown(tag)}{known}")
    return bare


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, its middle cut when it is longer than ``limit``."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit // 2]!r}...{text[-limit // 2 :]!r} ({len(text):,} characters)"


def _skeleton(name: str, **kwargs: Any) -> VisionTransformer:
    """The model on the meta device (no memory, no weights), checked to be one we support."""
    with torch.device("meta"):
        module = timm.create_model(name, pretrained=False, **kwargs)
    check_supported(module, name)
    return cast(VisionTransformer, module)  # check_supported refuses any other class


def check_supported(module: nn.Module, name: str) -> None:
    """UnsupportedModel, one line, for a timm model whose attention we cannot capture."""
    if not isinstance(module, VisionTransformer):
        kinds = {type(m).__name__.lower() for m in module.modules()}
        attends = any("attention" in k or "attn" in k for k in kinds)
        if attends and any(w in k for k in kinds for w in ("window", "stage", "merging", "swin")):
            why = "windowed or hierarchical attention is not supported yet"
        elif attends:
            why = "only timm's VisionTransformer models (vit_*, deit_*, ...) are supported yet"
        else:
            why = "it is not a Vision Transformer"
        raise UnsupportedModel(f"timm:{name} ({type(module).__name__}): {why}")
    adapter = TimmAdapter(module)
    adapter.attention_modules()
    adapter.prefix_kinds  # noqa: B018  (raises for prefix tokens of unknown kinds)
    patch_size(module)


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


_RGB = tuple[float, float, float]


def spec_for(module: Any, name: str, weights: str) -> ModelSpec:  # any timm model
    """The spec of a timm ViT: preprocessing from its ``pretrained_cfg``, as timm resolves it."""
    check_supported(module, name)
    adapter = TimmAdapter(module)
    rows, cols = module.patch_embed.grid_size
    patch = patch_size(module)
    height, width = rows * patch, cols * patch
    image_size = min(height, width)
    data = timm.data.resolve_data_config(model=module)
    crop_pct = data.get("crop_pct") or timm.data.DEFAULT_CROP_PCT  # as create_transform does
    resize = math.floor(image_size / crop_pct)
    crop_mode = data.get("crop_mode") or "center"
    if crop_mode not in ("center", "squash", "border"):
        raise UnsupportedModel(f"timm:{name}: its crop_mode {crop_mode!r} is not one timm has")
    interpolation = data.get("interpolation")
    kind = adapter.head_kind
    classes = module.num_classes if kind == "classifier" else 0
    projection = {"projection": module.num_classes} if kind == "projection" else {}
    cfg = getattr(module, "pretrained_cfg", None) or {}
    arch, tag = cfg.get("architecture") or name.split(".")[0], cfg.get("tag")
    return ModelSpec(
        name=PREFIX + name,
        display_name=name,
        weights=weights,
        image_size=image_size,
        resize_size=min(max(resize, image_size), 2 * image_size),
        patch_size=patch,
        num_layers=len(module.blocks),
        num_heads=module.blocks[0].attn.num_heads,
        class_names=class_names(classes, cfg),
        num_prefix_tokens=adapter.num_prefix_tokens,
        # timm's data config gives one value per RGB channel
        mean=cast(_RGB, tuple(float(v) for v in data["mean"])),
        std=cast(_RGB, tuple(float(v) for v in data["std"])),
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
        crop_mode=crop_mode,
        config={
            "model_name": f"{arch}.{tag}" if tag else arch,
            "num_classes": classes,
            "img_size": height if height == width else [height, width],
            **projection,
        },
        family="timm",
        prefix_kinds=adapter.prefix_kinds,
        grid_shape=None if rows == cols else (rows, cols),
        has_classifier=kind == "classifier",
    )


def class_names(num_classes: int, cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The pretrained config's labels; ImageNet's for its 1000 classes (torchvision's names, as
    for torchvision's ViTs) and for its larger label sets (timm's WordNet lemmas)."""
    for key in ("label_descriptions", "label_names"):
        names = cfg.get(key)
        if names and len(names) == num_classes:
            return tuple(str(n) for n in names)
    if num_classes == 1000:
        from torchvision.models import ViT_B_16_Weights

        return tuple(ViT_B_16_Weights.DEFAULT.meta["categories"])
    subset = timm.data.infer_imagenet_subset({"num_classes": num_classes})
    if subset is not None:
        return tuple(timm.data.ImageNetInfo(subset).label_descriptions())
    return tuple(f"class {i}" for i in range(num_classes))


# --- loading ---------------------------------------------------------------------------------


def _check_memory(arch: str, skeleton: nn.Module) -> None:
    """A one-line refusal, before the model is built, when the weights of ``skeleton`` (timm's
    ``arch`` on the meta device) would not fit in the free memory (it is built in RAM)."""
    estimate.check_model_fits(PREFIX + arch, skeleton, torch.device("cpu"))


def _file_plan(arch: str, shapes: Mapping[str, tuple[int, ...]], path: Path) -> BuildPlan:
    """How to build timm's ``arch`` for the state dict in ``path``, in timm's layout: the class
    count is read off ``head.weight`` (none without one) and a square input size off
    ``pos_embed``."""
    label, source = f"file {path.name}", file_label(path)
    default = _skeleton(arch)
    kwargs: dict[str, Any] = {}
    head = shapes.get("head.weight")
    if head is not None and len(head) == 2:
        kwargs["num_classes"] = head[0]
    elif "head.weight" not in shapes and "head.bias" not in shapes:
        kwargs["num_classes"] = 0
    pos = shapes.get("pos_embed")
    if pos is not None and len(pos) == 3 and default.pos_embed is not None:
        patch = patch_size(default)
        prefix = 0 if default.no_embed_class else default.num_prefix_tokens
        side = math.isqrt(max(pos[1] - prefix, 0))
        if side > 0 and side * side == pos[1] - prefix:
            kwargs["img_size"] = side * patch
    try:
        if "img_size" in kwargs:
            check_whole(
                "the image size its pos_embed implies", kwargs["img_size"], 1, MAX_IMAGE_SIZE
            )
            check_grid(kwargs["img_size"], patch_size(default))
        if "num_classes" in kwargs:
            check_whole("the class count of its head.weight", kwargs["num_classes"], 0, MAX_CLASSES)
    except ValueError as exc:
        raise WeightsFileError(f"{source}: {exc}") from None
    return BuildPlan(
        lambda: timm.create_model(arch, pretrained=False, weight_init=_LOADED, **kwargs),
        f"timm's {arch}",
        lambda module: spec_for(module, arch, label),
        from_metadata=False,
    )


# --- checkpoints ---------------------------------------------------------------------------


def _build_kwargs(config: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``create_model`` keywords from a checkpoint's config (the class count and the input
    size, nothing else) and the head's kind when the config says it."""
    kwargs: dict[str, Any] = {}
    kind = None
    if "num_classes" in config:
        kwargs["num_classes"] = check_whole("num_classes", config["num_classes"], 0, MAX_CLASSES)
        kind = "classifier" if kwargs["num_classes"] else "none"
    if "projection" in config and not kwargs.get("num_classes"):
        kwargs["num_classes"] = check_whole("projection", config["projection"], 1, MAX_CLASSES)
        kind = "projection"
    if "img_size" in config:
        size = config["img_size"]
        sides = size if isinstance(size, list) and len(size) == 2 else [size]
        for side in sides:
            check_whole("img_size", side, 1, MAX_IMAGE_SIZE)
        kwargs["img_size"] = tuple(sides) if len(sides) == 2 else sides[0]
    return kwargs, kind


def default_weights_download(name: str) -> WeightsDownload:
    """What the app can offer to download for ``timm:NAME``'s default weights (no network;
    the size is not known offline: 0); a ValueError, before anything is offered, for a name
    that cannot be loaded (unknown, not supported, too large, without pretrained weights)."""
    arch = model_name(name)
    _check_memory(arch, _skeleton(arch))
    return timm_weights.describe(arch)


class TimmFamily(Family):
    """timm's ViTs as ``timm:NAME``: "default" weights are timm's pretrained ones (downloaded
    from the Hugging Face hub or timm's URL when missing), "none" random, or a weights file."""

    info = family_named("timm")
    adapter_type = TimmAdapter

    def check_source(self, name: str, weights: str) -> None:
        """What :meth:`load` would refuse that can be found out cheaply: an unknown name, a model
        we cannot capture or whose weights would not fit in the free memory, a weights file that
        is missing or (safetensors) does not fit."""
        arch = model_name(name)
        skeleton = _skeleton(arch)
        if weights in ("none", "default"):
            _check_memory(arch, skeleton)
        if weights == "none":
            return
        if weights == "default":
            timm_weights.pretrained_source(arch)
            return
        check_weights_file(Path(weights), lambda shapes, path: _file_plan(arch, shapes, path))

    def load(
        self,
        name: str,
        weights: str,
        *,
        allow_download: bool = True,
        progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        shape: SmallViTConfig | None = None,
    ) -> tuple[nn.Module, ModelSpec, Path | None]:
        """The model ``timm:NAME`` with ``weights``: "none", "default" or a weights file."""
        arch = model_name(name)
        skeleton = _skeleton(arch)  # refuses what we cannot capture before anything is allocated
        if weights in ("none", "default"):  # nor build (nor download) what would not fit
            _check_memory(arch, skeleton)
        if weights == "none":
            module = timm.create_model(arch, pretrained=False)
            return module, spec_for(module, arch, RANDOM).randomised(warn=True), None
        if weights == "default":
            module, tagged, path = timm_weights.fetch(arch, allow_download, progress, cancelled)
            return module, spec_for(module, tagged, f"timm {tagged}"), path
        path = Path(weights)
        plan = lambda shapes, path: _file_plan(arch, shapes, path)  # noqa: E731
        return (*load_weights_file(path, plan), path)

    def check_config(self, arch: str, config: dict[str, Any]) -> tuple[int, int]:
        """The image size and class count of a checkpoint's ``config`` for ``arch`` (timm:NAME)."""
        check_config_keys(arch, config, _CONFIG_KEYS)
        name = config.get("model_name", model_name(arch))
        if not isinstance(name, str):
            raise ValueError(f"model_name must be a text, not {show_value(name)}")
        name = model_name(name)
        if (
            timm.models.split_model_name_tag(name)[0]
            != timm.models.split_model_name_tag(model_name(arch))[0]
        ):
            raise ValueError(f"model_name {quoted(name)} is not the architecture {arch}")
        kwargs, kind = _build_kwargs(config)
        module = _skeleton(name, **kwargs)
        rows, cols = module.patch_embed.grid_size
        patch = patch_size(module)
        check_grid(max(rows, cols) * patch, patch)
        return min(rows, cols) * patch, module.num_classes if kind == "classifier" else 0

    def checkpoint_plan(self, arch: str, meta: dict[str, Any], label: str) -> BuildPlan:
        """An untrained ``arch`` shaped by a vitexplorer checkpoint's checked metadata."""
        config = meta["config"]
        name = model_name(config.get("model_name", arch))
        kwargs, kind = _build_kwargs(config)

        def build() -> nn.Module:
            module = timm.create_model(name, pretrained=False, weight_init=_LOADED, **kwargs)
            if kind is not None:
                setattr(module, _HEAD_MARK, kind)
            return module

        def spec(module: nn.Module) -> ModelSpec:
            found = spec_for(module, name, label)
            return apply_metadata(replace(found, name=arch), meta)

        return BuildPlan(build, f"timm's {name}", spec, True)

    def default_download(self, name: str) -> WeightsDownload:
        """The default weights loading ``name`` would download (see default_weights_download)."""
        return default_weights_download(name)
