"""Configs of Hugging Face ViTs: which supported class a config describes, the settings a
vitexplorer checkpoint records and their checks, building from them, and the preprocessing read
from an image processor's config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from vitexplorer.core.families.base import UnsupportedModel
from vitexplorer.core.families.hf_model import KINDS, HFClassifier, unsupported_class
from vitexplorer.core.spec import IMAGENET_MEAN, IMAGENET_STD
from vitexplorer.core.vit import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_IMAGE_SIZE,
    MAX_MLP_RATIO,
    MAX_WIDTH,
    check_grid,
    check_whole,
    show_value,
)

CONFIG_CLASSES = {
    "vit": "ViTConfig",
    "deit": "DeiTConfig",
    "dinov2": "Dinov2Config",
    "dinov2_with_registers": "Dinov2WithRegistersConfig",
    "clip_vision_model": "CLIPVisionConfig",
}
_DEFAULT_CLASS = {  # a config that names no supported class: its model_type decides
    "vit": "ViTModel",
    "deit": "DeiTModel",
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
    "clip_vision_model": "CLIPVisionModel",
    "clip": "CLIPVisionModelWithProjection",  # a whole CLIP model: its image tower
}
# Preprocessing when a model has no preprocessor_config.json: each family's image processor
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
DEFAULT_PREP = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"),
    "deit": (IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
    "dinov2": (IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
    "dinov2_with_registers": (IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
    "clip_vision_model": (_CLIP_MEAN, _CLIP_STD, "bicubic"),
}
# ViT's and DeiT's base models are built without their pooler, which nothing here reads (DINO's
# checkpoints lack it)
EXTRA: dict[str, dict[str, Any]] = {
    n: {"add_pooling_layer": False} for n in ("ViTModel", "DeiTModel")
}
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_SPEC_CONFIG_KEYS = ("class", "image_size", "num_classes", "hf")
# config keys that describe a run, a checkpoint or the backbone API, not the architecture
_NOT_ARCHITECTURE = {"stage_names", "out_features", "out_indices"}


def choose_class(config: Mapping[str, Any]) -> str:
    """The supported class for a config (as a dict): the first of its ``architectures`` that
    vitexplorer knows, else its model_type's base model; UnsupportedModel otherwise."""
    model_type = config.get("model_type")
    names = config.get("architectures") or []
    names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    for name in names:
        if name in KINDS and KINDS[name].model_type == model_type:
            return name
    if model_type == "clip" and all(name == "CLIPModel" for name in names):
        return _DEFAULT_CLASS["clip"]  # a whole CLIP model: its image tower
    if model_type in _DEFAULT_CLASS and not names:
        return _DEFAULT_CLASS[model_type]
    raise UnsupportedModel(unsupported_class(names[0] if names else str(model_type), model_type))


def _config_class(model_type: str) -> type:
    import transformers

    return getattr(transformers, CONFIG_CLASSES[model_type])


def model_class(architecture: str) -> type:
    import transformers

    return getattr(transformers, architecture)


def architecture_config(config: Any) -> dict[str, Any]:
    """The settings of ``config`` that shape the model, as plain JSON values: no labels, no
    names, no dtype, no code references."""
    from transformers import PreTrainedConfig

    run = (set(PreTrainedConfig().to_dict()) | _NOT_ARCHITECTURE) - {"model_type"}
    return {k: v for k, v in config.to_dict().items() if k not in run and not k.startswith("_")}


def _shown(value: object) -> str:
    """A value from a file for a message: quoted and short when it is a text."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "\u2026"
    return show_value(value)


def check_config(arch: str, config: dict[str, Any]) -> tuple[int, int]:
    """The input size and class count of a checkpoint's config for an hf: model, every field
    that building reads checked first (sizes bounded as for vitexplorer's own ViT)."""
    unknown = [key for key in config if key not in _SPEC_CONFIG_KEYS]
    if unknown:
        raise ValueError(
            f"unknown setting {_shown(unknown[0])}; an hf: config has "
            f"{', '.join(_SPEC_CONFIG_KEYS)}"
        )
    architecture = config.get("class")
    if not isinstance(architecture, str) or architecture not in KINDS:
        raise ValueError(f"class {_shown(architecture)} is not one of {', '.join(KINDS)}")
    kind = KINDS[architecture]
    hf = config.get("hf")
    if not isinstance(hf, dict):
        raise ValueError(f"hf is {_shown(hf)}, not a JSON object")
    _check_hf_config(hf, kind.model_type)
    patch = hf["patch_size"]
    image_size = check_whole("image_size", config.get("image_size"), patch, MAX_IMAGE_SIZE)
    check_grid(image_size, patch)
    low = 1 if kind.classifier else 0
    num_classes = check_whole("num_classes", config.get("num_classes"), low, MAX_CLASSES)
    return image_size, num_classes


def _check_hf_config(hf: dict[str, Any], model_type: str) -> None:
    from transformers.activations import ACT2FN

    if hf.get("model_type") != model_type:
        raise ValueError(f"hf.model_type is {_shown(hf.get('model_type'))}, not {model_type!r}")
    for key, value in hf.items():
        values = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            raise ValueError(f"hf.{key} must be a number, a text or a list of them")
    width = check_whole("hf.hidden_size", hf.get("hidden_size"), 1, MAX_WIDTH)
    check_whole("hf.num_hidden_layers", hf.get("num_hidden_layers"), 1, MAX_DEPTH)
    heads = check_whole("hf.num_attention_heads", hf.get("num_attention_heads"), 1, MAX_HEADS)
    if width % heads:
        raise ValueError(f"hf.hidden_size {width} is not a multiple of {heads} heads")
    image = check_whole("hf.image_size", hf.get("image_size"), 1, MAX_IMAGE_SIZE)
    patch = check_whole("hf.patch_size", hf.get("patch_size"), 1, image)
    check_grid(image, patch)
    check_whole("hf.num_channels", hf.get("num_channels", 3), 3, 3)
    if "intermediate_size" in hf:
        check_whole("hf.intermediate_size", hf["intermediate_size"], 1, int(MAX_MLP_RATIO) * width)
    if "mlp_ratio" in hf:
        ratio = hf["mlp_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(f"hf.mlp_ratio must be a number, not {_shown(ratio)}")
        if not 0 < ratio <= MAX_MLP_RATIO or int(width * ratio) < 1:
            raise ValueError(f"hf.mlp_ratio must be above 0 and at most {MAX_MLP_RATIO:g}")
    if "num_register_tokens" in hf:
        check_whole("hf.num_register_tokens", hf["num_register_tokens"], 0, 64)
    if "projection_dim" in hf:
        check_whole("hf.projection_dim", hf["projection_dim"], 1, MAX_WIDTH)
    act = hf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in ACT2FN:
        raise ValueError(f"hf.hidden_act {_shown(act)} is not an activation transformers has")
    eps = hf.get("layer_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError("hf.layer_norm_eps must be a number between 0 and 1")


def build_model(
    architecture: str, hf: dict[str, Any], num_classes: int, input_size: int
) -> HFClassifier:
    """A randomly initialised model of a checked config, wrapped."""
    kind = KINDS[architecture]
    config_class = _config_class(kind.model_type)
    known = set(architecture_config(config_class())) - {"model_type"}
    settings = {k: v for k, v in hf.items() if k in known}  # nothing else reaches the config
    if kind.classifier:
        settings["num_labels"] = num_classes
    config = config_class(**settings)
    extra = EXTRA.get(architecture, {})
    wrapper = HFClassifier(model_class(architecture)(config, **extra), architecture, input_size)
    if not kind.classifier and num_classes:  # an image tower fine-tuned with a head of its own
        wrapper.head = nn.Linear(wrapper.feature_width, num_classes)
    return wrapper.eval()


# --- preprocessing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


def _side(value: Any, what: str) -> int | None:
    """One side from an image processor's size: an int, or a dict of height and width (equal),
    or of shortest_edge."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        return None
    if "shortest_edge" in value:
        return _side(value["shortest_edge"], what)
    height, width = value.get("height"), value.get("width")
    if height != width:
        raise UnsupportedModel(
            f"its image processor's {what} is {height}x{width}; only square inputs are supported"
        )
    return _side(height, what)


def _channels(value: Any, what: str) -> tuple[float, float, float]:
    """Three numbers, one per RGB channel (a single number stands for all three)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) for v in value)
    ):
        raise UnsupportedModel(f"its image processor's {what} is not one number per RGB channel")
    return float(value[0]), float(value[1]), float(value[2])


def preprocessing(model_type: str, config_size: int, processor: dict[str, Any]) -> Preprocessing:
    """Resize, crop, normalisation and interpolation from ``preprocessor_config.json`` (as a
    dict; empty when the model has none: the family's defaults at the config's size)."""
    mean, std, interpolation = DEFAULT_PREP[model_type]
    if processor.get("do_normalize", True):
        mean = _channels(processor.get("image_mean", mean), "image_mean")
        std = _channels(processor.get("image_std", std), "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    # vitexplorer scales pixels to 0..1; HF multiplies 0..255 by rescale_factor (or not at all)
    factor = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) else 1
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise UnsupportedModel(f"its image processor's rescale_factor {_shown(factor)} is unusable")
    scale = 255.0 * factor
    mean = tuple(m / scale for m in mean)
    std = tuple(s / scale for s in std)
    if not all(s > 0 for s in std):
        raise UnsupportedModel("its image processor's image_std is not above 0 for every channel")
    resample = processor.get("resample")
    if isinstance(resample, int) and resample in _RESAMPLE:
        interpolation = _RESAMPLE[resample]
    elif isinstance(resample, str) and resample.lower() in _RESAMPLE.values():
        interpolation = resample.lower()
    resize = _side(processor.get("size"), "size") if processor.get("do_resize", True) else None
    crop = None
    if processor.get("do_center_crop", "crop_size" in processor):
        crop = _side(processor.get("crop_size"), "crop size")
    image_size = crop or resize or config_size
    resize_size = max(resize or image_size, image_size)
    return Preprocessing(image_size, resize_size, mean, std, interpolation)  # type: ignore[arg-type]
