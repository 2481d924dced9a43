"""The files of a Hugging Face model folder, checked before any library opens them.

Every file the folder names (config, image processor, weights, shard index and the shards it
lists) must be a regular file inside the folder (a link may point elsewhere in it, or, in the hub
cache, elsewhere in the model's cache folder) and of a sane size; a named pipe would block the
library that opens it for good, holding the interpreter lock. The JSON files are read here, with
a size limit, and every field a library builds from is type-checked and bounded before
transformers sees the file (a config asking for 10^9 labels makes transformers build a label
table of that many entries first). Safetensors headers are checked as :mod:`core.checkpoint`
checks them, then by safetensors itself on the header alone; pickles are read with
``weights_only=True``. Each refusal is an :class:`HFFolderError`: one line naming the file, the
cause and what to do.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vitexplorer.core.checkpoint import WeightsFileError
from vitexplorer.core.vit import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_IMAGE_SIZE,
    MAX_MLP_RATIO,
    MAX_WIDTH,
    show_value,
)

MAX_JSON_BYTES = 16_000_000  # an ImageNet-21k config (21,843 labels) is under 1 MB
MAX_SHARDS = 10_000
MAX_NAME = 1000  # characters of a class name (as checkpoints allow)
_SIDE = MAX_IMAGE_SIZE
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
OTHER_JSON = ("preprocessor_config.json", "adapter_config.json", "generation_config.json")
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
_SAFETENSORS_DTYPES = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",
    "U16", "F16", "BF16", "I32", "U32", "F32", "I64", "U64", "F64", "C64", "F4", "F6_E2M3",
    "F6_E3M2",
}  # fmt: skip


class HFFolderError(ValueError):
    """A file of a Hugging Face model folder that no library should open."""


def _label(name: str) -> str:
    return name if name.isprintable() and len(name) <= 80 else ascii(name[:80])


class Folder:
    """A model folder and the boundary its links must stay inside."""

    def __init__(self, path: Path, source: str, boundary: Path | None = None) -> None:
        self.path = path
        self.source = source  # what followed "hf:", for messages
        self.boundary = (boundary or path).resolve()

    def refuse(self, name: str, cause: str, todo: str) -> HFFolderError:
        return HFFolderError(f"hf:{self.source}: {_label(name)} {cause}; {todo}")

    def member(self, name: str, limit: int | None = None) -> Path | None:
        """The path of ``name`` in the folder once checked (None when there is nothing of that
        name): relative, inside, a regular file, not empty, at most ``limit`` bytes."""
        fix = "replace it with the file that save_pretrained wrote"
        if not name or "\x00" in name or os.path.isabs(name) or ".." in Path(name).parts:
            raise self.refuse(
                name or "''", "is not a file name inside the folder", "the index must name its "
                "shards by their names in the folder (no '..', no absolute paths)"
            )  # fmt: skip
        path = self.path / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.refuse(name, f"cannot be read ({exc.strerror or exc})", fix) from None
        if stat.S_ISLNK(info.st_mode):
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                raise self.refuse(name, "is a broken link or a loop of links", fix) from None
            if not target.is_relative_to(self.boundary):
                raise self.refuse(
                    name,
                    f"is a link to {_label(str(target))}, outside the model folder",
                    "copy the file into the folder instead of linking to it",
                )
            info = os.stat(target)
        elif not path.resolve().is_relative_to(self.boundary):
            raise self.refuse(name, "lies outside the model folder", fix)
        if not stat.S_ISREG(info.st_mode):
            raise self.refuse(name, f"is {_node(info.st_mode)}, not a regular file", fix)
        if info.st_size == 0:
            raise self.refuse(name, "is empty", fix)
        if limit is not None and info.st_size > limit:
            raise self.refuse(
                name, f"is {info.st_size:,} bytes, more than the {limit:,} accepted", fix
            )
        return path

    def json(self, name: str) -> dict[str, Any] | None:
        """The JSON object in ``name`` (None when the folder has no such file)."""
        path = self.member(name, MAX_JSON_BYTES)
        if path is None:
            return None
        fix = "replace it with the file that save_pretrained wrote"
        try:
            data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
        except OSError as exc:
            raise self.refuse(name, f"cannot be read ({exc.strerror or exc})", fix) from None
        except RecursionError:
            raise self.refuse(name, "is not valid JSON (nested too deeply)", fix) from None
        except ValueError as exc:  # JSON, UTF-8, NaN
            why = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
            raise self.refuse(name, f"is not valid JSON ({why})", fix) from None
        if not isinstance(data, dict):
            raise self.refuse(name, "is not a JSON object", fix)
        return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _node(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


# --- config.json ---------------------------------------------------------------------------------


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
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
    for key, (low, high) in _INTS.items():
        value = config.get(key)
        if key in config and not (_whole(value) and low <= value <= high):
            return (
                f"gives {where}{key} {show_value(value)}, not a whole number from {low} to {high:,}"
            )
    for key in _SIDES:
        value = config.get(key)
        values = value if isinstance(value, list) and len(value) == 2 else [value]
        if key in config and not all(_whole(v) and 1 <= v <= MAX_IMAGE_SIZE for v in values):
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
        if not all(_whole(v) and 0 <= v < MAX_CLASSES for v in ids.values()):
            return f"gives {where}label2id a value that is not a class number"
    return None


def check_config(folder: Folder) -> dict[str, Any]:
    """config.json, read and checked (the vision tower's config, a whole CLIP model's, too)."""
    config = folder.json("config.json")
    if config is None:
        raise folder.refuse("config.json", "is missing", "give a save_pretrained folder")
    todo = "fix the field, or use the config.json that save_pretrained wrote"
    problem = config_problem(config)
    for key in ("vision_config", "text_config"):
        nested = config.get(key)
        if problem is None and isinstance(nested, dict):
            nested = {"model_type": key, **nested}  # the whole model's model_type decides
            problem = config_problem(nested, f"{key}.")
    if problem is not None:
        raise folder.refuse("config.json", problem, todo)
    return config


# --- preprocessor_config.json ----------------------------------------------------------------


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
            if value is not None and not (_whole(value) and 1 <= value <= MAX_IMAGE_SIZE):
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
        (_whole(resample) and 0 <= resample <= 5) or isinstance(resample, str)
    ):
        return f"gives resample {show_value(resample)}, not a PIL filter (0 to 5)"
    for key in ("image_processor_type", "processor_class"):
        if settings.get(key) is not None and not isinstance(settings[key], str):
            return f"gives {key} {show_value(settings[key])}, not a class name"
    return None


def check_processor(folder: Folder) -> dict[str, Any]:
    """preprocessor_config.json, read and checked ({} when the folder has none)."""
    settings = folder.json("preprocessor_config.json")
    if settings is None:
        return {}
    problem = processor_problem(settings)
    if problem is not None:
        raise folder.refuse(
            "preprocessor_config.json",
            problem,
            "fix the field, or remove the file to use the family's usual preprocessing",
        )
    return settings


# --- weights -----------------------------------------------------------------------------------


def check_weights(folder: Folder, expected_bytes: int | None = None) -> list[Path]:
    """Every weights file the folder holds stat'ed, and the one transformers reads (with the
    shards its index names) checked through: headers, pickles, total size. The files the
    model's tensors come from. ``expected_bytes``: the model's size in float32, to bound
    theirs."""
    present = [  # each one stat'ed: a named pipe is refused even where it would not be read
        name
        for name in WEIGHTS
        if folder.member(name, MAX_JSON_BYTES if name.endswith(".json") else None) is not None
    ]
    if not present:
        return []
    used = present[0]  # transformers' choice: safetensors first, a single file before shards
    files = _shards(folder, used) if used.endswith(".index.json") else [folder.path / used]
    for name in OTHER_JSON[1:]:  # read by transformers when present: checked, not used
        folder.json(name)
    total = 0
    for path in dict.fromkeys(files):
        if path.name.endswith(".safetensors"):
            total += _check_safetensors(folder, path)
        else:
            total += _check_pickle(folder, path)
    if expected_bytes is not None and total > 4 * expected_bytes + 16_000_000:
        files = list(dict.fromkeys(files))
        others = f" and {len(files) - 1} other weights files hold" if len(files) > 1 else " holds"
        raise HFFolderError(
            f"hf:{folder.source}: {_label(files[0].name)}{others} {total / 1e6:,.1f} MB of "
            f"tensors, far more than the {expected_bytes / 1e6:,.1f} MB that a model of its "
            f"config.json needs; check that the weights belong to this config"
        )
    return files


def _shards(folder: Folder, index_name: str) -> list[Path]:
    index = folder.json(index_name)
    assert index is not None
    todo = "replace it with the index that save_pretrained wrote"
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise folder.refuse(index_name, "has no weight_map object", todo)
    names = set()
    for key, value in weight_map.items():
        if not isinstance(value, str):
            raise folder.refuse(
                index_name, f"maps {show_value(key)} to {show_value(value)}, not a file name", todo
            )
        names.add(value)
    if len(names) > MAX_SHARDS:
        raise folder.refuse(index_name, f"names {len(names):,} shards", todo)
    shards = []
    for name in sorted(names):
        if not name or "\x00" in name or os.path.isabs(name) or ".." in Path(name).parts:
            raise folder.refuse(
                index_name, f"names {_label(name or repr(name))}, not a file in the folder", todo
            )
        path = folder.member(name)
        if path is None:
            raise folder.refuse(
                index_name, f"names {_label(name)}, which is not in the folder", todo
            )
        suffix = ".safetensors" if index_name.startswith("model.safetensors") else ".bin"
        if not name.endswith(suffix):
            raise folder.refuse(index_name, f"names {_label(name)}, not a {suffix} file", todo)
        shards.append(path)
    return shards


def _check_safetensors(folder: Folder, path: Path) -> int:
    """The header's checks (core.checkpoint's, then safetensors' own on the header alone); the
    bytes of tensors the file holds."""
    from safetensors import safe_open

    from vitexplorer.core.checkpoint import read_safetensors_header

    name = path.name
    todo = "replace it with the file that save_pretrained wrote"
    try:
        shapes, _ = read_safetensors_header(path, weights=False)
    except WeightsFileError as exc:
        raise folder.refuse(name, str(exc).removeprefix(name).strip(), todo) from None
    total = 0
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                if piece.get_dtype() not in _SAFETENSORS_DTYPES:
                    raise ValueError(f"tensor {key[:60]!r} has dtype {piece.get_dtype()}")
                total += math.prod(shapes[key]) * 4  # loaded as float32
            meta = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001  (safetensors' errors, whatever their class)
        why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        why = why.removeprefix("Error while deserializing header: ")
        raise folder.refuse(name, f"is not a valid safetensors file ({why})", todo) from None
    if meta.get("format", "pt") not in ("pt", "tf", "flax", "mlx"):
        raise folder.refuse(
            name, f"says its format is {show_value(meta.get('format'))}, not pt", todo
        )
    return total


def _check_pickle(folder: Folder, path: Path) -> int:
    """A PyTorch pickle, read with ``weights_only=True`` (core.checkpoint's reader, which never
    shows PyTorch's advice to load it unsafely); the bytes of its tensors."""
    from vitexplorer.core.checkpoint import read_weights

    try:
        state, _ = read_weights(path)
    except WeightsFileError as exc:
        text = str(exc)
        raise folder.refuse(
            path.name,
            text.removeprefix(path.name).strip() if text.startswith(path.name) else f"({text})",
            "save the model with save_pretrained (safetensors) from code you trust",
        ) from None
    return sum(t.numel() * 4 for t in state.values())  # loaded as float32


def model_bytes(config: Mapping[str, Any]) -> int | None:
    """About how many bytes a checked config's model takes in float32 (None when the config
    leaves its sizes to the class's defaults)."""
    vision = config.get("vision_config") if config.get("model_type") == "clip" else config
    if not isinstance(vision, dict) or not _whole(vision.get("hidden_size")):
        return None
    width = vision["hidden_size"]
    layers = vision.get("num_hidden_layers", 12)
    inner = vision.get("intermediate_size") or int(width * vision.get("mlp_ratio", 4))
    side = vision.get("image_size", 224)
    patch = vision.get("patch_size", 16)
    side, patch = (
        (side[0] if isinstance(side, list) else side),
        (patch[0] if isinstance(patch, list) else patch),
    )
    tokens = (side // max(patch, 1)) ** 2 + 8
    classes = max(int(config.get("num_labels") or 0), len(config.get("id2label") or {}))
    params = layers * (4 * width * width + 2 * width * inner + 12 * width)
    params += (3 * patch * patch + tokens + 8) * width + 2 * classes * (2 * width + 1)
    params += width * int(config.get("projection_dim") or 0)
    return 4 * params
