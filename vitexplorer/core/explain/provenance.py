"""What a figure was made from, so that it can be made again: the method card.

A card names the model (architecture, where its weights came from and the SHA-256 of the
weights file), the preprocessing (resize, crop, normalisation), the method and its parameters,
the image and the software versions. ``vitexplorer analyze`` writes one per method beside the
maps, and the app's export writes one beside each exported view.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Any

from vitexplorer import __version__
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.render.numbering import NUMBERING, card_parameters

_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex digest


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, remembered while the file keeps its size and modification time
    (hashing ViT-H's 2.5 GB of weights takes seconds; it is done once per session)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def weights_facts(model: LoadedModel) -> dict[str, Any]:
    """Where the parameters came from: the file and its hash, or why there is none."""
    facts: dict[str, Any] = {"label": model.spec.weights}
    path = model.weights_file
    if path is None:
        facts["file"] = None
        facts["sha256"] = None
        facts["note"] = (
            "no weights file: random initialisation, or a model fine-tuned in the app and not "
            "saved yet"
        )
        return facts
    facts["file"] = str(path)
    try:
        facts["sha256"] = file_sha256(path)
    except OSError as exc:  # moved or deleted since it was loaded
        facts["sha256"] = None
        facts["note"] = f"the weights file could not be read again: {exc.strerror or exc}"
    return facts


def preprocessing_facts(model: LoadedModel) -> dict[str, Any]:
    spec = model.spec
    facts: dict[str, Any] = {
        "resize": spec.resize_size,
        "center_crop": spec.image_size,
        "interpolation": spec.interpolation,
        "mean": list(spec.mean),
        "std": list(spec.std),
    }
    if spec.crop_mode != "center":  # "resize" is then both sides (squash) or the long one
        facts["crop_mode"] = spec.crop_mode
    return facts


def method_card(
    model: LoadedModel,
    method: str,
    parameters: dict[str, Any],
    image: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-ready record of one map: enough to compute it again and get the same numbers.

    ``model`` is a ``LoadedModel``, or anything with its ``spec``, ``weights_file`` and
    ``device`` (the app describes the model its worker holds this way). ``parameters`` are
    given as the code holds them, 0-based; the card writes the layer, head, token and start
    layer from 1, as people count them (:mod:`vitexplorer.core.render.numbering`), and says so in
    its ``numbering`` entry."""
    import numpy
    import torch

    spec = model.spec
    card: dict[str, Any] = {
        "method": method,
        "numbering": NUMBERING,
        "parameters": card_parameters(parameters),
        "model": {
            "architecture": spec.name,
            "display_name": spec.display_name,
            "weights": weights_facts(model),
            "input_size": [spec.image_size, spec.image_size],
            "patch_size": spec.patch_size,
            "grid": list(spec.grid),
            "num_prefix_tokens": spec.num_prefix_tokens,
            "num_layers": spec.num_layers,
            "num_heads": spec.num_heads,
            "num_classes": len(spec.class_names),
        },
        "preprocessing": preprocessing_facts(model),
        "image": None if image is None else str(image),
        "device": str(model.device),
        "software": {
            "vitexplorer": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
    }
    if extra:
        card.update(extra)
    return card


def json_ready(data: Any, where: str = "") -> tuple[Any, list[str]]:
    """``data`` with every non-finite float (NaN, infinity) replaced by None, and numpy scalars
    and arrays made plain, so that strict JSON can hold it; with the places replaced
    (``predictions[0].probability``), for a warning."""
    replaced: list[str] = []

    def clean(value: Any, at: str) -> Any:
        if isinstance(value, dict):
            return {k: clean(v, f"{at}.{k}" if at else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{at}[{i}]") for i, v in enumerate(value)]
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
            return clean(value.tolist(), at)  # a numpy scalar or array
        if isinstance(value, float) and not math.isfinite(value):
            replaced.append(at)
            return None
        return value

    return clean(data, where), replaced


def strict_json(data: dict[str, Any]) -> tuple[bytes, list[str]]:
    """``data`` as indented JSON that every parser accepts (non-finite numbers become null),
    and the places that were not finite."""
    clean, replaced = json_ready(data)
    return (json.dumps(clean, indent=2, allow_nan=False) + "\n").encode("utf-8"), replaced


# --- names that tell models apart ----------------------------------------------------------------

DEMO_WEIGHTS = "trained on CIFAR-10"  # the demo's own weights label, said by its name already


def _freeze_words(policy: Any) -> str:
    """A freeze policy (``head``, ``last:K``, ``none``) as what trained, for people."""
    policy = str(policy).strip().lower()
    if policy == "head":
        return "head only"
    if policy == "none":
        return "all blocks"
    if policy.startswith("last:") and policy[5:].isdigit():
        k = int(policy[5:])
        return "last block" if k == 1 else f"last {k} blocks"
    return f"freeze {policy}"


def training_words(metadata: dict[str, Any] | None, num_classes: int | None = None) -> str:
    """How a model was trained, from its checkpoint metadata (the ``finetune`` or ``train``
    record that :meth:`~vitexplorer.core.training.engine.FinetuneResult.metadata` writes):
    "fine-tuned on CIFAR-10 (500 images, 1 epoch, last 2 blocks)"; "" when it records none.

    The images are those drawn for training (validation included): the per-class setting
    times ``num_classes``; the epochs those completed ("1 of 5 epochs" for a stopped run)."""
    if not isinstance(metadata, dict):
        return ""
    scratch = isinstance(metadata.get("train"), dict)
    record = metadata.get("train") if scratch else metadata.get("finetune")
    if not isinstance(record, dict):
        return ""
    verb = "trained from scratch" if scratch else "fine-tuned"
    dataset = record.get("dataset")
    words = f"{verb} on {dataset}" if isinstance(dataset, str) and dataset else verb
    settings: dict = record["settings"] if isinstance(record.get("settings"), dict) else {}
    metrics: dict = record["metrics"] if isinstance(record.get("metrics"), dict) else {}
    details = []
    per_class = settings.get("per_class")
    if isinstance(per_class, int) and not isinstance(per_class, bool):
        if num_classes:
            details.append(f"{per_class * num_classes} images")
        else:
            details.append(f"{per_class} images per class")
    planned = settings.get("epochs")
    done = metrics.get("epochs_completed")
    if not isinstance(done, int):
        history = record.get("history")
        done = len(history) if isinstance(history, list) else None
    if isinstance(done, int):
        of = f" of {planned}" if isinstance(planned, int) and planned != done else ""
        details.append(f"{done}{of} epoch{'' if done == 1 and not of else 's'}")
    if not scratch and "freeze" in settings:
        details.append(_freeze_words(settings["freeze"]))
    return f"{words} ({', '.join(details)})" if details else words


def model_name(spec: Any, metadata: dict[str, Any] | None = None) -> str:
    """A model for titles and labels, telling two models apart: the weights file it was read
    from, else its name and where its weights came from; and how it was trained when its
    metadata records it. E.g. "Demo ViT (CIFAR-10)", "Demo ViT (CIFAR-10), fine-tuned on
    CIFAR-10 (500 images, 1 epoch, last 2 blocks)", "tuned.safetensors: Small ViT (3x48, /8),
    fine-tuned on CIFAR-10 (…)"."""
    display, weights = str(spec.display_name), str(spec.weights)
    if weights == DEMO_WEIGHTS and display.endswith("(CIFAR-10)"):
        return display  # the demo: its name says what it was trained on
    trained = training_words(metadata, len(getattr(spec, "class_names", ()) or ()) or None)
    if weights.startswith("file "):
        file = weights.removeprefix("file ")
        return f"{file}: {display}, {trained}" if trained else file
    if trained:
        return f"{display}, {trained}"
    return f"{display}, {weights}"


def weights_metadata(path: str | Path | None) -> dict[str, Any] | None:
    """The vitexplorer metadata of a safetensors weights file (its header only, no tensors),
    or None: no file, not safetensors, or unreadable."""
    if path is None:
        return None
    from vitexplorer.core.models.checkpoint import WeightsFileError, is_safetensors_file
    from vitexplorer.core.models.checkpoint import read_safetensors_header as read_header

    try:
        if not is_safetensors_file(path):
            return None
        meta = read_header(path)[1]
    except (WeightsFileError, OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
