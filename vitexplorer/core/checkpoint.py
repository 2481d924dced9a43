"""Reading and writing model weights: safetensors with JSON metadata, written atomically.

Legacy ``.pth`` files are read with ``torch.load(weights_only=True)`` so that an untrusted pickle
can never execute code.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vitexplorer.core.files import atomic_path, explain_write_error

METADATA_KEY = "vitexplorer"
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")


class WeightsFileError(ValueError):
    """A weights file that cannot be read or does not fit the chosen model."""


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The state dict in ``path`` and vitexplorer's metadata if the file carries it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean the same to a user
        raise WeightsFileError(
            f"{path.name} is not a PyTorch weights file that can be loaded safely ({exc})"
        ) from exc
    if isinstance(obj, dict):
        for key in _NESTED_STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"{path.name} does not hold a state dict of tensors")
    return obj, None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    try:
        state = load_file(str(path), device="cpu")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"{path.name} is not a valid safetensors file ({exc})") from exc
    try:
        metadata = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise WeightsFileError(f"{path.name} has unreadable vitexplorer metadata ({exc})") from exc
    return state, metadata


def save_weights(
    path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> None:
    """Write ``state_dict`` and ``metadata`` to ``path`` atomically (a temporary file beside it,
    flushed to the disk, then renamed over it; see :func:`vitexplorer.core.files.atomic_path`).

    Raises OSError with the system's reason (a full disk included) when it cannot be written.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path, durable=True) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
        except SafetensorError as exc:  # safetensors reports I/O failures in its own words
            failure = explain_write_error(OSError(str(exc)), path.parent)
            if failure.errno is None:
                failure = OSError(errno.EIO, f"cannot write {path.name}: {exc}")
            raise failure from exc


def check_fits(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Raise a :class:`WeightsFileError` naming every mismatch between model and weights."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. " + "; ".join(shapes[:3]))
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. " + ", ".join(missing[:3]))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. " + ", ".join(unexpected[:3]))
    raise WeightsFileError(f"the weights do not fit {what}: " + "; ".join(parts))
