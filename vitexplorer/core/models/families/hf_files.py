"""The files of a Hugging Face model folder, checked before any library opens them.

Every file the folder names (config, image processor, weights, shard index and the shards it
lists) must be a regular file inside the folder (a link may point elsewhere in it, or, in the hub
cache, elsewhere in the model's cache folder) and of a sane size; a named pipe would block the
library that opens it for good, holding the interpreter lock. The JSON files are read here, with
a size limit, and every field a library builds from is type-checked and bounded
(:mod:`hf_fields`) before transformers sees the file (a config asking for 10^9 labels makes
transformers build a label table of that many entries first). Safetensors headers are checked
as :mod:`core.checkpoint` checks them, then by safetensors itself on the header alone; pickles
are read with ``weights_only=True``. Each refusal is an :class:`HFFolderError`: one line naming
the file, the cause and what to do.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vitexplorer.core.io.paths import node_kind
from vitexplorer.core.io.values import show_value
from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.families.hf_config import choose_class
from vitexplorer.core.models.families.hf_fields import config_problem, is_whole, processor_problem

MAX_JSON_BYTES = 16_000_000  # an ImageNet-21k config (21,843 labels) is under 1 MB
MAX_SHARDS = 10_000
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
OTHER_JSON = ("preprocessor_config.json", "adapter_config.json", "generation_config.json")
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
                name or "''", "is not a file name inside the folder", "name files by their "
                "place in the folder (no '..', no absolute paths)"
            )  # fmt: skip
        path = self.path / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.refuse(name, f"cannot be read ({exc.strerror or exc})", fix) from None
        try:
            target = path.resolve(strict=True)
            info = os.stat(target)
        except (OSError, RuntimeError):  # RuntimeError: a loop of links, before Python 3.13
            raise self.refuse(name, "is a broken link or a loop of links", fix) from None
        if not target.is_relative_to(self.boundary):
            if not stat.S_ISLNK(os.lstat(path).st_mode):  # a folder on its way is a link
                raise self.refuse(name, "lies outside the model folder", fix)
            raise self.refuse(
                name,
                f"is a link to {_label(str(target))}, outside the model folder",
                "copy the file into the folder instead of linking to it",
            )
        if not stat.S_ISREG(info.st_mode):
            raise self.refuse(name, f"is {node_kind(info.st_mode)}, not a regular file", fix)
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


# --- config.json and preprocessor_config.json ---------------------------------------------------


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

    from vitexplorer.core.models.checkpoint import read_safetensors_header

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
    except Exception as exc:  # safetensors' errors, whatever their class
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
    from vitexplorer.core.models.checkpoint import read_weights

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
    if not isinstance(vision, dict) or not is_whole(vision.get("hidden_size")):
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


# --- where the files are -------------------------------------------------------------------------


def local_folder(folder: Path | None, text: str) -> Folder | None:
    """The folder whose files a load of ``hf:TEXT`` would read: the save_pretrained ``folder``,
    or a hub name's snapshot in the local cache (whose links may point anywhere in the model's
    cache folder, where the hub keeps its blobs); None for a hub name not in the cache."""
    if folder is not None:
        hub = folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--")
        return Folder(folder, text, folder.parent.parent if hub else None)
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(text, "config.json")
    except Exception:  # an odd name or cache: the load says what is wrong
        return None
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    return Folder(snapshot, text, snapshot.parent.parent)


def check_files(
    folder: Path | None, text: str, weights: bool, deep: bool = True
) -> dict[str, Any] | None:
    """Every file of ``hf:TEXT``'s folder checked before any library opens it: config.json and
    preprocessor_config.json read and bounded, and with ``weights``, every weights file (with
    ``deep``, the headers and pickles of those transformers reads). The processor's checked
    settings; None for a hub name that is not in the local cache (to be downloaded)."""
    found = local_folder(folder, text)
    if found is None:
        return None
    raw = checked_config(found)
    processor = check_processor(found)
    if weights and deep:
        check_weights(found, model_bytes(raw))
    elif weights:
        for file in WEIGHTS:
            found.member(file)
    return processor


def checked_config(folder: Folder) -> dict[str, Any]:
    """config.json, read, checked and naming a class vitexplorer supports."""
    raw = check_config(folder)
    try:
        choose_class(raw)
    except UnsupportedModel as exc:
        raise UnsupportedModel(f"hf:{folder.source}: config.json: {exc}") from None
    return raw


def download_config(text: str) -> None:
    """A hub model's config.json downloaded alone into the cache and checked there, as a
    folder's is, before transformers reads it (a hub file can be as hostile as a folder's)."""
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(text, "config.json"))
    checked_config(Folder(path.parent, text, path.parent.parent.parent))  # the model's cache


def cached_processor(path: Path, text: str) -> dict[str, Any]:
    """The checked settings of a hub model's preprocessor_config.json at ``path`` (its cache)."""
    return check_processor(Folder(path.parent, text, path.parent.parent.parent))
