"""Configs of Hugging Face ViTs: which supported class a config describes, the settings a
vitexplorer checkpoint records and their checks, building from them, and the preprocessing read
from an image processor's config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from vitexplorer.core.io.values import check_whole, show_value
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.families.hf_model import KINDS, HFClassifier, unsupported_class
from vitexplorer.core.models.spec import IMAGENET_MEAN, IMAGENET_STD
from vitexplorer.core.models.vit import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_IMAGE_SIZE,
    MAX_MLP_RATIO,
    MAX_WIDTH,
    check_grid,
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
    if not isinstance(model_type, str):
        raise UnsupportedModel(f"its model_type is {_shown(model_type)}, not a text")
    names = config.get("architectures") or []
    names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    for name in names:
        if name in KINDS and KINDS[name].model_type == model_type:
            return name
    if model_type == "clip" and all(name == "CLIPModel" for name in names):
        return _DEFAULT_CLASS["clip"]  # a whole CLIP model: its image tower
    if model_type in _DEFAULT_CLASS and not names:
        return _DEFAULT_CLASS[model_type]
    known = [n for n in names if n in KINDS]
    if known and model_type not in _DEFAULT_CLASS:
        raise UnsupportedModel(
            f"its model_type {_shown(model_type)} is not {KINDS[known[0]].model_type!r}, the "
            f"model_type of {known[0]}; fix the model_type"
        )
    raise UnsupportedModel(unsupported_class(names[0] if names else str(model_type), model_type))


def _config_class(model_type: str) -> type:
    import transformers

    return getattr(transformers, CONFIG_CLASSES[model_type])


def model_class(architecture: str) -> type[Any]:
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
    crop_mode: str = "center"  # "squash": resize to resize_size square, as size {height, width}
    notes: tuple[str, ...] = ()  # one-line warnings: defaults used, steps not followed


# the image processor each family's checkpoints come with (its defaults stand in for a missing
# preprocessor_config.json)
DEFAULT_PROCESSOR = {
    "vit": "ViTImageProcessor",
    "deit": "DeiTImageProcessor",
    "dinov2": "BitImageProcessor",
    "dinov2_with_registers": "BitImageProcessor",
    "clip_vision_model": "CLIPImageProcessor",
}


def _square(size: Any, what: str) -> int:
    """The side of a square (height, width) size; UnsupportedModel for any other."""
    height, width = size.height, size.width
    if not (isinstance(height, int) and height == width and height > 0):
        raise UnsupportedModel(
            f"its image processor's {what} is {height}x{width}; only square inputs are supported"
        )
    return height


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


def image_processor(model_type: str, settings: dict[str, Any]) -> tuple[Any, str | None]:
    """The image processor transformers builds from ``preprocessor_config.json`` (as a dict):
    its class's defaults for what the file leaves out, its class's reading of a bare size. A
    class transformers lacks is read as the family's usual one, said in the note returned."""
    import transformers
    from transformers.utils import logging as hf_logging

    default = DEFAULT_PROCESSOR[model_type]
    name = str(settings.get("image_processor_type") or default)
    cls = getattr(transformers, name.removesuffix("Fast"), None)
    note = None
    if not (isinstance(cls, type) and issubclass(cls, transformers.BaseImageProcessor)):
        note = (
            f"its image processor {_shown(name)} is not one this transformers has; vitexplorer "
            f"reads its settings as a {default}'s"
        )
        cls = getattr(transformers, default)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return cls.from_dict(settings), note
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModel(f"its image processor's settings are unusable: {text}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def preprocessing(model_type: str, config_size: int, processor: dict[str, Any]) -> Preprocessing:
    """Resize, crop, normalisation and interpolation as the model's image processor does them,
    from ``preprocessor_config.json`` (as a dict; empty when the model has none: the family's
    processor's defaults at the config's size, said in a note)."""
    proc, note = image_processor(model_type, processor)
    notes = [note] if note else []
    if not processor:  # the family's usual steps at the config's size
        _at_size(proc, config_size)
        proc.image_mean, proc.image_std, resample = DEFAULT_PREP[model_type]
        proc.resample = {v: k for k, v in _RESAMPLE.items()}[resample]
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if proc.do_normalize:
        mean = _channels(proc.image_mean, "image_mean")
        std = _channels(proc.image_std, "image_std")
    # vitexplorer's spec is for pixels scaled to 0..1; HF multiplies 0..255 by rescale_factor
    factor = proc.rescale_factor if proc.do_rescale else 1
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise UnsupportedModel(f"its image processor's rescale_factor {_shown(factor)} is unusable")
    scale = 255.0 * factor
    mean = (mean[0] / scale, mean[1] / scale, mean[2] / scale)
    std = (std[0] / scale, std[1] / scale, std[2] / scale)
    if not all(s > 0 for s in std):
        raise UnsupportedModel("its image processor's image_std is not above 0 for every channel")
    interpolation = _interpolation(proc.resample)
    crop = _square(proc.crop_size, "crop size") if proc.do_center_crop else None
    size, mode = proc.size, "center"
    if not proc.do_resize:
        resize = crop or config_size
        notes.append(
            f"its image processor does not resize images; vitexplorer resizes the short side to "
            f"{resize} px"
        )
    elif size.shortest_edge and not (size.longest_edge or size.height or size.width):
        resize = size.shortest_edge
        crop_pct = getattr(proc, "crop_pct", None)
        if type(proc).__name__ == "ConvNextImageProcessor" and crop_pct:
            if resize < 384:  # ConvNext's: the short side to shortest_edge / crop_pct, cropped
                resize, crop = int(resize / crop_pct), resize
            else:
                mode, crop = "squash", None
    elif size.height or size.width:
        resize, mode = _square(size, "size"), "squash"
    else:
        raise UnsupportedModel(f"its image processor's size {dict(size)} is not supported")
    if crop is None and mode == "center":
        crop = resize
        notes.append(
            f"its image processor resizes the short side to {resize} px and keeps the whole "
            f"image; vitexplorer crops its central {resize} px square (Whole image, --aspect "
            f"keep, shows it all)"
        )
    if resize > MAX_IMAGE_SIZE:  # e.g. ConvNext's shortest_edge / crop_pct
        raise UnsupportedModel(
            f"its image processor resizes images to {resize} px, more than {MAX_IMAGE_SIZE}"
        )
    image_size = crop or resize
    if crop is not None and crop > resize:
        notes.append(
            f"its image processor pads the {resize} px image with black to crop {crop} px; "
            f"vitexplorer resizes to {crop} px instead"
        )
    prep = Preprocessing(
        image_size,
        max(resize, image_size),
        mean,
        std,
        interpolation,
        mode,
    )
    if not processor:
        used = f"the usual steps for a {model_type} model ({type(proc).__name__}'s)"
        notes.insert(0, "no preprocessor_config.json: " + describe(prep, used))
    return replace(prep, notes=tuple(notes))


def _interpolation(resample: Any) -> str:
    """PIL's resampling filter (a number, as processors keep it) as torchvision names it; None
    is bilinear, as transformers' torchvision backend takes it."""
    if resample is None:
        return "bilinear"
    if isinstance(resample, str) and resample.lower() in _RESAMPLE.values():
        return resample.lower()
    if isinstance(resample, int) and int(resample) in _RESAMPLE:
        return _RESAMPLE[int(resample)]
    raise UnsupportedModel(f"its image processor's resample {_shown(resample)} is not a PIL filter")


def _at_size(proc: Any, side: int) -> None:
    """A default image processor made to give the config's input side (its crop scaled)."""
    from transformers.image_processing_utils import SizeDict

    crop = proc.crop_size.height if proc.do_center_crop and proc.crop_size else None
    size = proc.size
    old = size.shortest_edge or size.height
    new = int(old * side / crop) if crop else side
    if size.shortest_edge:
        proc.size = SizeDict(shortest_edge=new)
    else:
        proc.size = SizeDict(height=new, width=new)
    if crop:
        proc.crop_size = SizeDict(height=side, width=side)


def describe(prep: Preprocessing, used: str) -> str:
    """The steps of ``prep`` in a few words, for a note."""
    side, resize = prep.image_size, prep.resize_size
    if prep.crop_mode == "squash":
        steps = f"resize to {resize}x{resize}, " + (f"crop {side}" if resize != side else "no crop")
    else:
        steps = f"resize the short side to {resize}, crop {side}"
    mean = ", ".join(f"{m:.4g}" for m in prep.mean)
    std = ", ".join(f"{s:.4g}" for s in prep.std)
    return (
        f"vitexplorer uses {used} at the config's {side} px: {steps}, "
        f"{prep.interpolation}, mean ({mean}), std ({std})"
    )
