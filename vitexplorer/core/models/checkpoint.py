"""Reading and writing model weights: safetensors with JSON metadata, written atomically.

Legacy ``.pth`` files are read with ``torch.load(weights_only=True)`` so that an untrusted pickle
can never execute code.

Everything about a weights file is untrusted: what the path is (a folder, a device, a named pipe),
the safetensors header (lengths and offsets), the pickle, and the metadata. Every problem is a
:class:`WeightsFileError` of one short line that names the file; never PyTorch's advice on
``torch.load``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import stat
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vitexplorer.core.io.files import atomic_path, explain_write_error
from vitexplorer.core.io.paths import node_kind
from vitexplorer.core.io.values import show_value

METADATA_KEY = "vitexplorer"
# tensors that travel beside the weights when the metadata has the key (core.timelapse's)
TIMELAPSE_KEY, TIMELAPSE_PREFIX = "timelapse", "timelapse."
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_HEADER = 100_000_000  # the most safetensors itself accepts
_DTYPE_BITS = {  # safetensors' dtypes: the bits of one element
    **dict.fromkeys(("F4",), 4),
    **dict.fromkeys(("F6_E2M3", "F6_E3M2"), 6),
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 8),
    **dict.fromkeys(("F8_E4M3FNUZ", "F8_E5M2FNUZ"), 8),
    **dict.fromkeys(("I16", "U16", "F16", "BF16"), 16),
    **dict.fromkeys(("I32", "U32", "F32"), 32),
    **dict.fromkeys(("I64", "U64", "F64", "C64"), 64),
}
ACCEPTED_FORMATS = (
    "vitexplorer reads safetensors files and PyTorch state dicts of tensors (.pth/.pt/.bin)"
)


class WeightsFileError(ValueError):
    """A weights file that cannot be read or does not fit the chosen model."""


def check_weights_path(path: str | Path) -> Path:
    """``path`` if it names a regular file; else a :class:`WeightsFileError` that says what it
    names instead. Only ``stat``: a named pipe would block whoever opens it."""
    path = Path(path)
    _regular_file(path)
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The state dict in ``path`` and vitexplorer's metadata if the file carries it.

    The metadata is a JSON object, otherwise unchecked: see ``models.check_checkpoint_metadata``.
    """
    path = Path(path)
    size = _regular_file(path).st_size
    name = file_label(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
            return _read_safetensors(path, name, size)
    except OSError as exc:
        raise WeightsFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return _read_torch(path, name, head), None


def read_safetensors_header(
    path: str | Path, weights: bool = True
) -> tuple[dict[str, tuple[int, ...]], dict[str, Any] | None]:
    """The tensor shapes and vitexplorer metadata of a safetensors file, without its tensors;
    with ``weights``, only the model's (no time-lapse)."""
    path = Path(path)
    size = _regular_file(path).st_size
    name = file_label(path)
    try:
        header = _safetensors_header(path, name, size)
    except OSError as exc:
        raise WeightsFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    metadata = _metadata(header, name)
    return (weights_only(shapes, metadata) if weights else shapes), metadata


def is_safetensors_file(path: str | Path) -> bool:
    """Whether ``path`` (a regular file) is, or claims to be, a safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return True
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a named pipe
            return False
        with open(path, "rb") as handle:
            return _looks_like_safetensors(handle.read(16), os.fstat(handle.fileno()).st_size)
    except (OSError, ValueError):
        return False


def file_label(path: Path) -> str:
    """The file's name for a one-line message (escaped when it holds a newline or the like)."""
    return path.name if path.name.isprintable() else ascii(path.name)


def _regular_file(path: Path) -> os.stat_result:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise WeightsFileError(f"weights file not found: {path}") from None
    except PermissionError:
        raise WeightsFileError(f"cannot read {path}: permission denied") from None
    except (OSError, ValueError) as exc:  # a loop of links, a name with a NUL character
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise WeightsFileError(f"cannot read {path}: {reason}") from None
    mode = info.st_mode
    if stat.S_ISREG(mode) and info.st_size == 0:
        raise WeightsFileError(f"{path} is empty, not a weights file")
    if stat.S_ISREG(mode):
        return info
    raise WeightsFileError(f"{path} is {node_kind(mode)}, not a weights file")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file under another suffix: an 8-byte length that fits, then ``{``."""
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size


def _reason(exc: BaseException, limit: int = 120) -> str:
    """The first line of a library's message, short, and without advice on torch.load."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not first or "weights_only" in text:
        return type(exc).__name__
    first = first.removeprefix("Error while deserializing header: ")
    return first if len(first) <= limit else first[: limit - 1] + "\u2026"


def _read_torch(path: Path, name: str, head: bytes) -> dict[str, torch.Tensor]:
    is_zip = head.startswith(b"PK")
    is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 5"
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if is_zip or is_pickle:  # a pickle that holds more than tensors: never run, never loaded
            raise WeightsFileError(
                f"{name} contains Python code or objects that cannot be loaded safely, so they "
                f"are not loaded; {ACCEPTED_FORMATS}"
            ) from exc
        raise WeightsFileError(
            f"{name} is not a PyTorch weights file: it is neither a zip archive nor a pickle; "
            f"{ACCEPTED_FORMATS}"
        ) from exc
    except EOFError as exc:
        raise WeightsFileError(f"{name} is not a PyTorch weights file: it is truncated") from exc
    except OSError as exc:
        if exc.errno not in (None, errno.EINVAL):  # EINVAL: the zip reader, on a truncated file
            raise WeightsFileError(f"cannot read {name}: {exc.strerror or _reason(exc)}") from exc
        raise _damaged(name, exc, is_zip) from exc
    except Exception as exc:  # zip, record and rebuild errors: a damaged file, to a user
        raise _damaged(name, exc, is_zip) from exc
    if isinstance(obj, dict):
        for key in _NESTED_STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not (
        isinstance(obj, dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise WeightsFileError(f"{name} does not hold a state dict of tensors; {ACCEPTED_FORMATS}")
    return obj


def _damaged(name: str, exc: BaseException, is_zip: bool) -> WeightsFileError:
    if is_zip or "zip archive" in str(exc):
        return WeightsFileError(
            f"{name} is not a PyTorch weights file that can be read: it is damaged or truncated"
        )
    return WeightsFileError(
        f"{name} is not a PyTorch weights file that can be read ({_reason(exc, 80)})"
    )


def _read_safetensors(
    path: Path, name: str, size: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    header = _safetensors_header(path, name, size)
    metadata = _metadata(header, name)  # before the tensors: the cheaper failure first
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, TypeError, RuntimeError, MemoryError) as exc:
        raise WeightsFileError(f"{name} is not a valid safetensors file: {_reason(exc)}") from exc
    return weights_only(state, metadata), metadata


def weights_only(tensors: dict[str, Any], metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``tensors`` (or shapes) without those of a time-lapse the metadata says the file holds."""
    if metadata is None or TIMELAPSE_KEY not in metadata:
        return tensors
    return {k: v for k, v in tensors.items() if not k.startswith(TIMELAPSE_PREFIX)}


def _safetensors_header(path: Path, name: str, size: int) -> dict[str, Any]:
    """The checked JSON header: its length within the file, every tensor's data inside it."""
    bad = f"{name} is not a valid safetensors file"
    if size < 8:
        raise WeightsFileError(f"{bad}: it is only {size} bytes long")
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > size - 8:
            raise WeightsFileError(
                f"{bad}: its header claims {length:,} bytes but only {size - 8:,} follow "
                f"(a truncated file, or not safetensors)"
            )
        if length > _MAX_HEADER:
            raise WeightsFileError(f"{bad}: its header claims {length:,} bytes, too many")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise WeightsFileError(f"{bad}: its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{bad}: its header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsFileError(f"{bad}: its __metadata__ is not an object of texts")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (whole_numbers(offsets) and len(offsets) == 2 and whole_numbers(shape)):
            raise WeightsFileError(f"{bad}: the entry of tensor {_key(key)} is malformed")
        bits = _DTYPE_BITS.get(entry.get("dtype"))
        if bits is not None and math.prod(shape) * bits != (offsets[1] - offsets[0]) * 8:
            raise WeightsFileError(
                f"{bad}: the shape of tensor {_key(key)} does not match the size of its data"
            )
        end = max(end, offsets[1])
    data = size - 8 - length
    if end > data:
        raise WeightsFileError(
            f"{name} is truncated: its tensors need {end:,} bytes of data but it holds {data:,}"
        )
    return header


def whole_numbers(values: object) -> TypeGuard[list[int]]:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    )


def _metadata(header: dict[str, Any], name: str) -> dict[str, Any] | None:
    """vitexplorer's metadata in a checked safetensors header: a JSON object, or None."""
    raw = header.get("__metadata__", {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise WeightsFileError(
            f"{name} has unreadable vitexplorer metadata: it is not valid JSON"
        ) from None
    if not isinstance(meta, dict):
        raise WeightsFileError(
            f"{name} has invalid vitexplorer metadata: it is {show_value(meta)}, not a JSON object"
        )
    return meta


def state_numel(state: Mapping[str, torch.Tensor | Sequence[int]]) -> int:
    """How many numbers the tensors (or shapes) in ``state`` hold."""
    total = 0
    for shape in shapes_of(state).values():
        count = 1
        for dim in shape:
            count *= dim
        total += count
    return total


def shapes_of(state: Mapping[str, torch.Tensor | Sequence[int]]) -> dict[str, tuple[int, ...]]:
    return {
        k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()
    }


def _key(key: str, limit: int = 60) -> str:
    """A state-dict key for a message: printable and short."""
    text = key if key.isprintable() else ascii(key)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def save_weights(
    path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> None:
    """Write ``state_dict`` and ``metadata`` to ``path`` atomically (a temporary file beside it,
    flushed to the disk, then renamed over it; see :func:`vitexplorer.core.io.files.atomic_path`).

    Raises OSError with the system's reason (a full disk included) when it cannot be written.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    # safetensors writes through a temporary file of its own beside the one it is given: in a
    # folder of our own, so that a save killed midway leaves nothing unrecognisable behind
    with atomic_path(path, durable=True, own_folder=True) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
        except SafetensorError as exc:  # safetensors reports I/O failures in its own words
            failure = explain_write_error(OSError(str(exc)), path.parent)
            if failure.errno is None:
                failure = OSError(errno.EIO, f"cannot write {path.name}: {exc}")
            raise failure from exc


def check_fits(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor | Sequence[int]], what: str
) -> None:
    """Raise a :class:`WeightsFileError` naming every mismatch between model and weights.

    ``state_dict`` holds tensors or only their shapes (from a safetensors header); ``model`` may
    live on the meta device, which makes this a check before anything is allocated."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = shapes_of(state_dict)
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{_key(k)}: file {given[k]}, model {v}"
        for k, v in expected.items()
        if k in given and given[k] != v
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. " + "; ".join(shapes[:3]))
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. " + ", ".join(map(_key, missing[:3])))
    if unexpected:
        examples = ", ".join(map(_key, unexpected[:3]))
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {examples}")
    raise WeightsFileError(f"the weights do not fit {what}: " + "; ".join(parts))
