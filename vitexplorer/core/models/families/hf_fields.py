"""The fields of a Hugging Face config.json and preprocessor_config.json that libraries build
from, type-checked and bounded on the raw JSON (before transformers reads the file): sizes as
vitexplorer's own ViT bounds them (core/vit.py), labels as checkpoints' class names, switches
true or false, numbers finite. Each check returns what is wrong in words, or None."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from vitexplorer.core.io.values import show_value
from vitexplorer.core.models.vit import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_IMAGE_SIZE,
    MAX_MLP_RATIO,
    MAX_WIDTH,
)

MAX_NAME = 1000  # characters of a class name (as checkpoints allow)
_SIDE = MAX_IMAGE_SIZE
_INTS = {  # field: (lowest, highest)
    "hidden_size": (1, MAX_WIDTH),
    "num_hidden_layers": (1, MAX_DEPTH),
    "num_attention_heads": (1, MAX_HEADS),
    "intermediate_size": (1, int(MAX_MLP_RATIO) * MAX_WIDTH),
    "num_channels": (1, 64),
    "encoder_stride": (1, MAX_IMAGE_SIZE),
    "num_labels": (0, MAX_CLASSES),
    "num_register_tokens": (0, 64),
    "projection_dim": (1, MAX_WIDTH),
    "pooler_output_size": (1, MAX_WIDTH),
    "chunk_size_feed_forward": (0, MAX_WIDTH),
}
_SIDES = ("image_size", "patch_size")  # a whole number or a list of two
_FRACTIONS = (  # numbers from 0 to 1
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "attention_dropout",
    "dropout",
    "drop_path_rate",
)
_POSITIVE = {"initializer_range": 100.0, "initializer_factor": 100.0, "layerscale_value": 1e6}
_BOOLS = (
    "qkv_bias",
    "use_swiglu_ffn",
    "use_mask_token",
    "apply_layernorm",
    "reshape_hidden_states",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "torchscript",
    "tie_word_embeddings",
    "is_encoder_decoder",
    "is_decoder",
    "add_cross_attention",
)
_DTYPES = {"float32", "float16", "bfloat16", "float64", "float", "half", "double", "auto"}
_PROBLEMS = {"regression", "single_label_classification", "multi_label_classification"}
_ATTENTION = {"eager", "sdpa"}
_PROC_SIDES = ("size", "crop_size")
_PROC_EDGES = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")
_PROC_BOOLS = (
    "do_resize",
    "do_center_crop",
    "do_normalize",
    "do_rescale",
    "do_convert_rgb",
    "do_pad",
    "do_flip_channel_order",
)


def is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def config_problem(config: Mapping[str, Any], where: str = "") -> str | None:
    """What is wrong with a raw config (as read from config.json), or None: every field that
    transformers builds from, type-checked and bounded."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return f"gives {where}model_type as {show_value(model_type)}, not a text"
    names = config.get("architectures")
    if names is not None and not (
        isinstance(names, list) and len(names) <= 16 and all(isinstance(n, str) for n in names)
    ):
        return f"gives {where}architectures as {show_value(names)}, not a list of class names"
    high: float  # each field's upper bound
    for key, (low, high) in _INTS.items():
        value = config.get(key)
        if key in config and not (is_whole(value) and low <= value <= high):
            return (
                f"gives {where}{key} {show_value(value)}, not a whole number from {low} to {high:,}"
            )
    for key in _SIDES:
        value = config.get(key)
        values = value if isinstance(value, list) and len(value) == 2 else [value]
        if key in config and not all(is_whole(v) and 1 <= v <= MAX_IMAGE_SIZE for v in values):
            return f"gives {where}{key} {show_value(value)}, not a whole number from 1 to {_SIDE:,}"
    for key in _FRACTIONS:
        value = config.get(key)
        if key in config and not (_number(value) and 0 <= value <= 1):
            return f"gives {where}{key} {show_value(value)}, not a number from 0 to 1"
    for key, high in _POSITIVE.items():
        value = config.get(key)
        if key in config and not (_number(value) and 0 <= value <= high):
            return f"gives {where}{key} {show_value(value)}, not a number from 0 to {high:g}"
    for key in ("layer_norm_eps", "mlp_ratio"):
        value = config.get(key)
        high = 1 if key == "layer_norm_eps" else MAX_MLP_RATIO
        if key in config and not (_number(value) and 0 < value <= high):
            return (
                f"gives {where}{key} {show_value(value)}, not a number above 0 and at most {high:g}"
            )
    for key in _BOOLS:
        if key in config and not isinstance(config[key], bool):
            return f"gives {where}{key} {show_value(config[key])}, not true or false"
    return _text_problem(config, where) or _label_problem(config, where)


def _text_problem(config: Mapping[str, Any], where: str) -> str | None:
    from transformers.activations import ACT2FN

    for key in ("hidden_act", "pooler_act"):
        value = config.get(key)
        if key in config and not (isinstance(value, str) and value in ACT2FN):
            return f"gives {where}{key} {show_value(value)}, not an activation transformers has"
    for key in ("dtype", "torch_dtype"):
        value = config.get(key)
        if value is not None and not (isinstance(value, str) and value in _DTYPES):
            return (
                f"gives {where}{key} {show_value(value)}, not one of {', '.join(sorted(_DTYPES))}"
            )
    value = config.get("problem_type")
    if value is not None and not (isinstance(value, str) and value in _PROBLEMS):
        kinds = ", ".join(sorted(_PROBLEMS))
        return f"gives {where}problem_type {show_value(value)}, not one of {kinds}"
    for key in ("attn_implementation", "_attn_implementation"):
        value = config.get(key)
        if value is not None and not (isinstance(value, str) and value in _ATTENTION):
            return f"gives {where}{key} {show_value(value)}, not eager or sdpa"
    pruned = config.get("pruned_heads")
    if pruned not in (None, {}):
        return f"gives {where}pruned_heads {show_value(pruned)}: pruned heads are not supported"
    for key in ("vision_config", "text_config"):
        if key in config and not isinstance(config[key], dict):
            return f"gives {where}{key} {show_value(config[key])}, not a JSON object"
    return None


def _label_problem(config: Mapping[str, Any], where: str) -> str | None:
    labels = config.get("id2label")
    if labels is not None:
        if not isinstance(labels, dict):
            return f"gives {where}id2label as {show_value(labels)}, not an object of class names"
        if len(labels) > MAX_CLASSES:
            return f"gives {where}{len(labels):,} labels in id2label, more than {MAX_CLASSES:,}"
        for key, name in labels.items():
            if not (key.isdecimal() and len(key) <= 6 and int(key) < MAX_CLASSES):
                return f"gives {where}id2label a key {show_value(key)}, not a class number"
            if not isinstance(name, str) or len(name) > MAX_NAME:
                return (
                    f"gives {where}id2label[{key}] {show_value(name)}, not a class name of at "
                    f"most {MAX_NAME} characters"
                )
    ids = config.get("label2id")
    if ids is not None:
        if not isinstance(ids, dict) or len(ids) > MAX_CLASSES:
            return f"gives {where}label2id as {show_value(ids)}, not an object of class numbers"
        if not all(is_whole(v) and 0 <= v < MAX_CLASSES for v in ids.values()):
            return f"gives {where}label2id a value that is not a class number"
    return None


def processor_problem(settings: Mapping[str, Any]) -> str | None:
    """What is wrong with a raw image processor config, or None: its sizes bounded as images
    are, its switches true or false, its numbers finite."""
    for key in _PROC_SIDES:
        if key not in settings or settings[key] is None:
            continue
        size = settings[key]
        edges = size.items() if isinstance(size, dict) else [(key, size)]
        if isinstance(size, dict) and (not size or any(k not in _PROC_EDGES for k in size)):
            return f"gives {key} {show_value(size)}, not one of {', '.join(_PROC_EDGES)}"
        for name, value in edges:
            if value is not None and not (is_whole(value) and 1 <= value <= MAX_IMAGE_SIZE):
                what = name if name == key else f"{key}.{name}"
                return f"gives {what} {show_value(value)}, not a whole number from 1 to {_SIDE:,}"
    for key in _PROC_BOOLS:
        if key in settings and not isinstance(settings[key], bool):
            return f"gives {key} {show_value(settings[key])}, not true or false"
    for key in ("image_mean", "image_std"):
        value = settings.get(key)
        values = value if isinstance(value, list) and len(value) in (1, 3) else [value]
        if value is not None and not all(_number(v) for v in values):
            return f"gives {key} {show_value(value)}, not one number per RGB channel"
    factor = settings.get("rescale_factor")
    if "rescale_factor" in settings and not (_number(factor) and 0 < factor <= 1):
        return f"gives rescale_factor {show_value(factor)}, not a number above 0 and at most 1"
    pct = settings.get("crop_pct")
    if pct is not None and not (_number(pct) and 0.05 <= pct <= 1):
        return f"gives crop_pct {show_value(pct)}, not a number from 0.05 to 1"
    resample = settings.get("resample")
    if resample is not None and not (
        (is_whole(resample) and 0 <= resample <= 5) or isinstance(resample, str)
    ):
        return f"gives resample {show_value(resample)}, not a PIL filter (0 to 5)"
    for key in ("image_processor_type", "processor_class"):
        if settings.get(key) is not None and not isinstance(settings[key], str):
            return f"gives {key} {show_value(settings[key])}, not a class name"
    return None
