"""What a training run reports, as typed events (the engine yields them; the command line
prints them, the app's worker turns them into signals), its result, and its error.

``fraction`` is the share of the whole run done, for progress bars and time left. Torch-free:
the result holds the trained model, but only as an object this module never looks into.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vitexplorer.core.models.base_record import RECORD_KEY, BaseRequest
from vitexplorer.core.training.config import FinetuneConfig
from vitexplorer.core.training.verdict import verdict

if TYPE_CHECKING:
    from vitexplorer.core.models.loading import LoadedModel
    from vitexplorer.core.training.timelapse import TimeLapse
    from vitexplorer.core.training.timelapse_frames import Frame


class TrainingError(RuntimeError):
    """Training stopped on a problem (NaN loss, GPU memory); the message says what to do."""


@dataclass(frozen=True)
class Stage:
    """Work outside the training steps: ``loading`` images, caching ``features``, ``testing``."""

    name: str
    done: int
    total: int
    fraction: float


@dataclass(frozen=True)
class Started:
    class_names: tuple[str, ...]
    num_train: int
    num_val: int
    num_test: int
    trainable_params: int
    total_params: int
    cached: bool
    steps_per_epoch: int
    epochs: int
    device: str
    fraction: float
    precision: str = "float32"  # of the forward passes; weights and the loss stay float32
    head: str = ""  # what the classifier starts from, in words (see finetune_model.HeadChoice)


@dataclass(frozen=True)
class Step:
    step: int  # 1-based, over the whole run
    epoch: int  # 1-based
    loss: float
    lr: float
    fraction: float


@dataclass(frozen=True)
class Epoch:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None  # None without a validation split
    val_acc: float | None
    seconds: float
    fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "fraction"}


@dataclass(frozen=True)
class Notice:
    message: str


@dataclass(frozen=True)
class Snapshot:
    """A time-lapse frame, captured before the first step (epoch 0) or after an epoch;
    ``timelapse`` holds every frame so far (a copy of the list: the run goes on appending)."""

    frame: Frame
    timelapse: TimeLapse


@dataclass(frozen=True)
class TestSample:
    """One test image for the results gallery."""

    source: str  # a path, or "test #i" for CIFAR-10
    image: np.ndarray  # (h, w, 3) uint8, as stored for training
    true: int
    predicted: int  # the argmax: with tied top probabilities, the first of them
    confidence: float  # the top probability
    # the second-highest probability, to tell a tie (None: recorded by an older version, when
    # only the class count can tell one)
    runner_up: float | None = None

    def verdict(self, num_classes: int) -> str:
        """Right, wrong or tie (:func:`vitexplorer.core.training.verdict.verdict`): a tie is never
        right."""
        return verdict(self.true, self.predicted, self.confidence, self.runner_up, num_classes)


@dataclass
class FinetuneResult:
    model: LoadedModel  # eval mode; valid even when cancelled
    config: FinetuneConfig
    dataset: str
    base: str  # the base model's name and weights, for people and the checkpoint
    cancelled: bool
    steps: int  # optimiser steps taken; 0 when cancelled before training began
    trainable_params: int
    cached: bool
    seconds: float
    history: list[Epoch] = field(default_factory=list)
    test_acc: float | None = None
    confusion: np.ndarray | None = None  # (C, C) int64: rows true class, columns predicted
    per_class_acc: np.ndarray | None = None
    samples: list[TestSample] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights these are, when the best is kept
    best_val_acc: float | None = None
    diverged: str | None = None  # why training stopped early, when the best so far was kept
    # every test image: where it came from, its class, the class predicted and its probability
    test_sources: list[str] = field(default_factory=list)
    test_true: np.ndarray | None = None
    test_predicted: np.ndarray | None = None
    test_confidence: np.ndarray | None = None
    test_runner_up: np.ndarray | None = None  # the second-highest probability of each
    # whether each test image's top two probabilities tie (core.verdict.is_tie): the argmax then
    # picks the first of them by index, not because the model picked it
    test_ties: np.ndarray | None = None
    timelapse: TimeLapse | None = None  # the probes' attention through training
    head_kept: bool = False  # fine-tuning started from the base model's own classifier
    head_reason: str = ""  # why that head, in words
    # how the base model loads again, when known: set by whoever loaded it (the engine is
    # given the model, not how it was loaded)
    base_request: BaseRequest | None = None

    @property
    def ties(self) -> int | None:
        """How many test images tie (no class picked); None when not tested."""
        return None if self.test_ties is None else int(self.test_ties.sum())

    @property
    def right(self) -> int | None:
        """How many test images are right and not tied (a tie is never right); None when not
        tested. The test accuracy counts by argmax, ties included, as papers do."""
        if self.test_ties is None or self.test_true is None or self.test_predicted is None:
            return None
        return int(((self.test_true == self.test_predicted) & ~self.test_ties).sum())

    def tie_matrix(self) -> np.ndarray | None:
        """(C, C) int64: how many of each cell of :attr:`confusion` are ties."""
        if (
            self.confusion is None
            or self.test_ties is None
            or self.test_true is None
            or self.test_predicted is None
        ):
            return None
        n = len(self.confusion)
        cells = self.test_true[self.test_ties] * n + self.test_predicted[self.test_ties]
        return np.bincount(cells, minlength=n * n).reshape(n, n)

    def metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        best = {} if self.best_epoch is None else {
            "best_epoch": self.best_epoch, "best_val_acc": self.best_val_acc,
            "diverged": self.diverged,
        }  # fmt: skip
        return {
            **best,
            "test_acc": self.test_acc,
            "ties": self.ties,  # test images whose top two probabilities tie: never right
            "right": self.right,  # test images right and not tied
            "per_class_acc": None if self.per_class_acc is None else self.per_class_acc.tolist(),
            "val_acc": last.val_acc if last else None,
            "train_acc": last.train_acc if last else None,
            "epochs_completed": len(self.history),
            "steps": self.steps,
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 2),
        }

    def metadata(self) -> dict[str, Any]:
        """What the checkpoint records about this run (beside the model's own description):
        under "train" for a model trained from scratch (with its architecture), else under
        "finetune" (with its base model and freeze policy). No NaN goes into the JSON."""
        record: dict[str, Any] = {
            "dataset": self.dataset,
            "trainable_params": self.trainable_params,
            "settings": self.config.to_dict(),
            "history": [e.to_dict() for e in self.history],
        }
        metrics = self.metrics()
        if metrics.get("best_val_acc") is not None and metrics["best_val_acc"] < 0:
            metrics["best_val_acc"] = None  # no validation split: the last epoch was kept
        metrics = {k: v for k, v in metrics.items() if not _nan(v)}
        if self.config.from_scratch:
            shape: Any = getattr(self.model.module, "config", None)
            architecture = shape.to_dict() if hasattr(shape, "to_dict") else None
            return {"train": {"architecture": architecture, **record, "metrics": metrics}}
        return {
            "finetune": {
                "base": self.base,
                **({} if self.base_request is None else {RECORD_KEY: self.base_request.to_dict()}),
                "freeze_policy": self.config.freeze,
                "head": "kept" if self.head_kept else "new",
                "head_reason": self.head_reason,
                **record,
                "metrics": metrics,
            }
        }


def _nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


@dataclass(frozen=True)
class Finished:
    result: FinetuneResult


Event = Stage | Started | Step | Epoch | Notice | Snapshot | Finished
CancelCheck = Callable[[], bool]
