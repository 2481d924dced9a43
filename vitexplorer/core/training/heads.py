"""Which classifier a fine-tune starts from: the model's own, when it fits the dataset, or a new
one. Torch-free, so that the settings form, the command line and the engine say the same."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HEAD_CHOICES = ("keep", "new")


@dataclass(frozen=True)
class HeadChoice:
    """``keep``: the run starts from the model's own classifier; ``reason``: why, in words."""

    keep: bool
    reason: str


def _names(names: Sequence[str], shown: int = 4) -> str:
    more = f", … ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def choose_head(
    wanted: str,
    model_classes: Sequence[str] | None,
    dataset_classes: Sequence[str],
    head_outputs: int | None = None,
) -> HeadChoice:
    """The head a fine-tune with ``wanted`` (``keep`` or ``new``) starts from.

    ``model_classes``: the model's class names (None or empty: it has no classifier);
    ``head_outputs``: its classifier's outputs, where known. The model's head is kept only when
    ``wanted`` is ``keep`` and its classes are the dataset's, same names in the same order.
    """
    dataset_classes = tuple(dataset_classes)
    n = len(dataset_classes)
    new = f"a new head (zero-initialised) for the dataset's {n} classes"
    if wanted == "new":
        return HeadChoice(False, f"{new}, as asked")
    model = tuple(model_classes or ())
    if not model or head_outputs == 0:
        return HeadChoice(False, f"{new}: the model has no classifier of its own")
    if head_outputs is not None and head_outputs != len(model):
        return HeadChoice(
            False, f"{new}: the model's classifier has {head_outputs} outputs, not one per class"
        )
    if model == dataset_classes:
        return HeadChoice(
            True,
            f"the model's own head, kept: its {n} classes are the dataset's, in the same order",
        )
    if sorted(model) == sorted(dataset_classes):
        return HeadChoice(
            False, f"{new}: they are the model's classes in another order ({_names(model)})"
        )
    return HeadChoice(
        False,
        f"{new}: they are not the model's (dataset: {_names(dataset_classes)}; "
        f"model: {_names(model)})",
    )
