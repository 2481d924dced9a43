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
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vitexplorer.core.io.values import check_whole, show_value
from vitexplorer.core.models.building import BuildPlan, check_weights_file, load_weights_file
from vitexplorer.core.models.checkpoint import (
    WeightsFileError,
    file_label,
)
from vitexplorer.core.models.download import CancelCheck, ProgressCallback, WeightsDownload
from vitexplorer.core.models.families import timm_weights
from vitexplorer.core.models.families.family import Family, UnsupportedModel
from vitexplorer.core.models.families.registry import family_named
from vitexplorer.core.models.families.timm_adapter import (
    HEAD_MARK,
    TimmAdapter,
    patch_size,
)
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
_LOADED = timm_weights.LOADED  # timm's own initialisation skipped: every parameter is loaded
# a checkpoint's config; "projection": a CLIP tower's projection width, its num_classes 0
_CONFIG_KEYS = ("model_name", "num_classes", "img_size", "projection")


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
                setattr(module, HEAD_MARK, kind)
            return module

        def spec(module: nn.Module) -> ModelSpec:
            found = spec_for(module, name, label)
            return apply_metadata(replace(found, name=arch), meta)

        return BuildPlan(build, f"timm's {name}", spec, True)

    def default_download(self, name: str) -> WeightsDownload:
        """The default weights loading ``name`` would download (see default_weights_download)."""
        return default_weights_download(name)
