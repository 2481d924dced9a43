"""The model a fine-tune started from, recorded so that it can be loaded again: the request that
loaded it (family, name, weights) and, when its weights came from a file, that file's SHA-256.

A checkpoint keeps it under ``finetune.base_request`` beside the display label
(``finetune.base``, for people and older versions). Reading it back finds the file where it was,
or beside the checkpoint, and refuses a file whose bytes are no longer those it was fine-tuned
from, in one line. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vitexplorer.core.io.paths import expand_user

RECORD_KEY = "base_request"  # in a checkpoint's "finetune" metadata
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NO_WEIGHTS = ("default", "none")  # weights that are no file
_HASHES: dict[tuple[str, int, int, int], str] = {}  # by path, size, times of change


class BaseRecordError(ValueError):
    """A recorded base that cannot be loaded again; the message says which file, why and what
    to do."""


@dataclass(frozen=True)
class BaseRequest:
    """How to load a fine-tune's base model again (as
    :func:`vitexplorer.core.models.loading.load_model` takes it): ``name`` and ``weights``,
    ``family`` for people and checks, and the SHA-256 of the file that held the weights (the
    checkpoint ``name``, or the weights file), None when they came from no file."""

    family: str
    name: str
    weights: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def file(self) -> Path | None:
        """The file whose bytes the record's hash is of, or None."""
        if self.weights not in _NO_WEIGHTS:
            return Path(self.weights)
        return Path(self.name) if self.sha256 is not None else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the file ``path``, read in chunks; read once while the file keeps its
    size and times of change (its ctime cannot be set back), as the app asks again whenever the
    model before is shown."""
    state = os.stat(path)
    key = (os.path.realpath(path), state.st_size, state.st_mtime_ns, state.st_ctime_ns)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def base_request(name: str, weights: str, family: str) -> BaseRequest:
    """The record of a base loaded as ``load_model(name, weights)``: a file's path made
    absolute and its bytes hashed (a checkpoint given as ``name``, or a weights file)."""
    if weights not in _NO_WEIGHTS:
        path = expand_user(weights).resolve()
        return BaseRequest(family, name, str(path), file_sha256(path))
    if weights == "default" and _is_file(name):
        path = expand_user(name).resolve()
        return BaseRequest(family, str(path), weights, file_sha256(path))
    return BaseRequest(family, name, weights)


def _is_file(name: str) -> bool:
    try:
        return os.path.isfile(expand_user(name))
    except ValueError:  # '~nouser/...'
        return False


def read_record(record: object) -> BaseRequest | None:
    """The :class:`BaseRequest` a checkpoint's ``finetune`` metadata holds, or None when it
    holds none (an older checkpoint, or a record that is not one: then the label decides)."""
    found = record.get(RECORD_KEY) if isinstance(record, dict) else None
    if not isinstance(found, dict):
        return None
    family, name, weights = (found.get(k) for k in ("family", "name", "weights"))
    sha = found.get("sha256")
    texts = all(isinstance(v, str) and v and len(v) < 4096 for v in (family, name, weights))
    if not texts or not (sha is None or (isinstance(sha, str) and _HEX64.fullmatch(sha))):
        return None
    return BaseRequest(family, name, weights, sha)  # type: ignore[arg-type]


def loadable_base(record: BaseRequest, checkpoint: str | os.PathLike[str]) -> BaseRequest:
    """``record`` as it loads now: its file where it was recorded or, when it is not there
    any more, the file of that name beside ``checkpoint``, either only when its bytes are the
    ones recorded. Else a one-line :class:`BaseRecordError`."""
    where = Path(checkpoint).name
    if record.weights == "none":
        raise BaseRecordError(
            f"{where} was fine-tuned from {record.name} with random weights, which cannot be "
            f"had again"
        )
    recorded = record.file
    if recorded is None:
        return record
    places = (recorded, Path(checkpoint).parent / recorded.name)
    found = next((p for p in places if _is_file(str(p))), None)
    if found is None:
        raise BaseRecordError(
            f"{where} was fine-tuned from {recorded}, which is not there any more (nor beside "
            f"it): put the file back, or open the base with 'Weights or checkpoint file…'"
        )
    try:
        sha = file_sha256(found)
    except OSError as exc:
        raise BaseRecordError(
            f"{where} was fine-tuned from {found}, which cannot be read ({exc.strerror or exc}): "
            f"make it readable, or open the base with 'Weights or checkpoint file…'"
        ) from exc
    if sha != record.sha256:
        raise BaseRecordError(
            f"{found} has changed since {where} was fine-tuned from it (its SHA-256 is not the "
            f"one recorded): it is not that base any more; open the base with 'Weights or "
            f"checkpoint file…'"
        )
    if record.weights not in _NO_WEIGHTS:
        return BaseRequest(record.family, record.name, str(found), sha)
    return BaseRequest(record.family, str(found), record.weights, sha)
