"""Which model, in words and as a request (no widgets): the names a model comparison gives the
two models, the request that loads a built-in model or a fine-tuned model's base, and whether
two requests load the same model. Used by :mod:`vitexplorer.gui.model_compare_view`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitexplorer.core.models.families.registry import SMALL_VIT, TORCHVISION_VITS
from vitexplorer.core.models.spec import DEMO, DEMO_LABEL
from vitexplorer.gui.workers import ModelInfo, ModelRequest


def model_label(spec: Any, metadata: dict | None = None) -> str:
    """A model for titles: the file it was read from, else its name and where its weights came
    from, and how it was trained when known
    (:func:`~vitexplorer.core.explain.provenance.model_name`)."""
    from vitexplorer.core.explain.provenance import model_name

    return model_name(spec, metadata)


def info_label(info: ModelInfo | None, adopted: Any = None) -> str:
    """:func:`model_label` of a loaded model, with how it was trained: a model fine-tuned in
    this session from the run the Train tab adopted (``adopted``, a FinetuneResult), a checkpoint
    from its file's metadata."""
    if info is None:
        return ""
    from vitexplorer.core.explain.provenance import weights_metadata

    metadata = None
    if info.fine_tuned:
        result = adopted
        model = getattr(result, "model", None)
        if model is not None and getattr(model, "spec", None) is info.spec:
            metadata = result.metadata()
    else:  # a model saved in this session keeps no weights_file: its request names the file
        metadata = weights_metadata(info.weights_file or info.request.name)
    return model_label(info.spec, metadata)


def request_label(request: ModelRequest) -> str:
    """What a request loads, in a few words, before it is loaded."""
    if request.name == DEMO and request.weights in ("default", "none"):
        return DEMO_LABEL if request.weights == "default" else f"{DEMO_LABEL}, random weights"
    if request.weights not in ("default", "none"):
        return Path(request.weights).name
    if request.name in TORCHVISION_VITS:
        shown = TORCHVISION_VITS[request.name]
        return f"{shown}, random weights" if request.weights == "none" else shown
    if request.name == SMALL_VIT:
        return "Small ViT, random weights"
    return Path(request.name).name or request.name


def built_in(name: str, device: str = "auto") -> ModelRequest:
    """A model of the model box by name: its pretrained weights, random for the small ViT
    (which has none)."""
    return ModelRequest(name, "none" if name == SMALL_VIT else "default", device)


def same_model(first: ModelRequest | None, second: ModelRequest | None) -> bool:
    """Whether two requests load the same model (on whichever device)."""
    if first is None or second is None:
        return False
    return (first.name, first.weights) == (second.name, second.weights)


def base_request(info: ModelInfo) -> tuple[ModelRequest | None, str]:
    """The explorer's model before fine-tuning: a request that loads it and a label, or None
    and why there is none. A model fine-tuned in this session remembers the request it started
    from; a checkpoint names its base in its metadata ("finetune", as
    :meth:`~vitexplorer.core.training.engine.FinetuneResult.metadata` writes it), which is looked up
    among the built-in models and beside the checkpoint. Reads the checkpoint's header only,
    never its tensors."""
    if info.fine_tuned:
        if info.request.weights == "none":
            return None, "it was trained from scratch: no model came before it"
        return info.request, request_label(info.request)
    from vitexplorer.core.models.base_record import BaseRecordError, loadable_base, read_record
    from vitexplorer.core.models.checkpoint import WeightsFileError, is_safetensors_file
    from vitexplorer.core.models.checkpoint import read_safetensors_header as read_header

    # a model saved in this session keeps no weights_file: its request names the file
    saved_here = (
        info.weights_file is None
        and info.request.weights == "default"
        and is_safetensors_file(info.request.name)
    )
    if info.weights_file is None and not saved_here:
        return None, "it was not fine-tuned from another model"
    path = Path(info.weights_file or info.request.name)
    if not is_safetensors_file(path):
        return None, "its weights file records no model it was fine-tuned from"
    try:
        meta = read_header(path)[1] or {}
    except (WeightsFileError, OSError, ValueError) as exc:
        return None, f"its weights file cannot be read again ({exc})"
    if "train" in meta:
        return None, "it was trained from scratch: no model came before it"
    record = meta.get("finetune")
    recorded = read_record(record)  # how the base loads again (family, name, weights, hash)
    if recorded is not None:
        try:
            found = loadable_base(recorded, path)
        except BaseRecordError as exc:
            return None, str(exc)
        request = ModelRequest(found.name, found.weights, info.request.device)
        return request, request_label(request)
    base = record.get("base") if isinstance(record, dict) else None
    if not isinstance(base, str):
        return None, "its weights file records no model it was fine-tuned from"
    by_label = request_for_base(base, path.parent, info.request.device)
    if by_label is None:
        return None, (
            f"its checkpoint names its base as {base!r}, which is not a built-in model nor a "
            f"file beside it: open the base with 'Weights or checkpoint file…'"
        )
    return by_label, request_label(by_label)


def request_for_base(label: str, folder: Path, device: str = "auto") -> ModelRequest | None:
    """The request that loads the base a checkpoint names (its "display name, weights"): the
    demo model, a torchvision ViT's pretrained weights, or a file of that name in ``folder``
    (the checkpoint's); None when it is none of those (random weights cannot be had again)."""
    from vitexplorer.core.models.spec import RANDOM

    if label.startswith(f"{DEMO_LABEL}, "):
        return ModelRequest(DEMO, "default", device)
    architecture = next(
        (name for name, shown in TORCHVISION_VITS.items() if label.startswith(f"{shown}, ")),
        None,
    )
    if label.endswith(f", {RANDOM}"):
        return None
    _, marker, file_name = label.rpartition(", file ")
    if marker:
        path = folder / file_name
        if not path.is_file():
            return None
        if architecture is not None:  # a torchvision state dict needs its architecture
            return ModelRequest(architecture, str(path), device)
        return ModelRequest(str(path), "default", device)
    if architecture is not None:
        return ModelRequest(architecture, "default", device)
    return None


def top_class(analysis: Any) -> str:
    """The model's most probable class on the image, in parentheses ("" without a classifier)."""
    if not analysis.predictions:
        return ""
    top = analysis.predictions[0]
    return f" ({top.name} {100 * top.probability:.0f}%)"
