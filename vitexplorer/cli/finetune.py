"""``vitexplorer finetune``: a head (the model's own when its classes are the dataset's, else a
new one; optionally the last blocks too) trained on a dataset, saved as a checkpoint; JSON lines
on stdout."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from vitexplorer.cli.common import (
    PROG,
    CtrlCCancels,
    Failed,
    ProgressBar,
    check_outputs,
    dataset_folders,
    device_choice,
    is_terminal,
    load_model_for,
    terminal_text,
)
from vitexplorer.cli.inputs import check_training_inputs
from vitexplorer.cli.settings import add_config_options, config_values
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.spec import MODEL_NAMES
from vitexplorer.core.training.config import FinetuneConfig

# the order of the options in the help (any other setting follows, in the field order)
FINETUNE_OPTIONS = (
    "freeze", "head", "per_class", "test_per_class", "val_fraction", "epochs", "lr",
    "batch_size", "weight_decay", "schedule", "label_smoothing", "augment", "optimizer",
    "momentum", "warmup_epochs", "mixed_precision", "seed", "probes", "probe_files",
)  # fmt: skip


def finetune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} finetune",
        description="Fine-tune a ViT on a class-balanced subset of a dataset: a head for the "
        "dataset's classes (the model's own when its classes are the dataset's, see --head), and "
        "whatever the freeze policy leaves trainable. Prints one JSON line "
        "per epoch to stdout (epoch, train_loss, train_acc, val_loss, val_acc, seconds), then one "
        "with the test results (test_acc, per_class_acc, class_names, confusion, ties, right, "
        "steps, seconds, checkpoint, cancelled; ties: test images whose top two probabilities are "
        "within a tenth of a point, never right, though test_acc counts them by their argmax), and "
        "writes the model as a checkpoint that 'analyze' and the app "
        "open. Progress goes to stderr. Exit status: 0 saved, 2 a problem with the model, data, "
        "settings or training (nothing saved), 130 interrupted (nothing saved).",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help=f"the model to start from: one of {', '.join(MODEL_NAMES)}, or a vitexplorer "
        f"checkpoint (.safetensors), e.g. one fine-tuned before",
    )
    parser.add_argument(
        "--weights",
        default="default",
        metavar="default|none|PATH",
        help="as for 'analyze': ImageNet weights for torchvision ViTs, random ones, or a local "
        "weights file; not used with a checkpoint --model (default: default)",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="cifar10|DIR|FILE.csv",
        help="'cifar10' (downloaded, 170 MB, into --data-root when missing), a folder holding "
        "one subfolder of images per class, optionally inside train/ and test/ (without them the "
        "test images are set aside from each class), or a pixel CSV of square grayscale images "
        "(header label,pixel0,pixel1,..., one image per row, MNIST-style; its test images are "
        "set aside too); write ./cifar10 for a folder of that name",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where CIFAR-10 is kept (default: 'datasets' in vitexplorer's cache folder, "
        "~/.cache/vitexplorer/datasets on Linux)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL.safetensors",
        help="the checkpoint to write (its folder must exist); written only when training ends",
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=device_choice,
        metavar="auto|cpu|cuda|mps",
        help="where the model trains; auto picks CUDA, then MPS, then the CPU (default: auto)",
    )
    groups = {
        "subsets": parser.add_argument_group("the subsets"),
        "training": parser.add_argument_group("training"),
    }
    groups["time-lapse"] = parser.add_argument_group("time-lapse")
    add_config_options(groups, FinetuneConfig, FINETUNE_OPTIONS)
    return parser


def run_finetune(options: argparse.Namespace) -> int:
    """``vitexplorer finetune``: JSON lines on stdout, the checkpoint at ``--out``; 0, 2 or 130.

    Everything cheap is checked before anything heavy (downloads, decoding, training): every
    setting, the output folder, then, once the model is loaded, that the folder has room for the
    checkpoint. The checkpoint is written only after the last test batch, atomically, and only
    when every weight is a finite number.
    """
    out = _checked_checkpoint_path(expand_user(options.out))
    check_outputs(
        [("--out", out)],
        [("--data", options.data), ("--model", options.model), ("--weights", options.weights)],
        dataset_folders(options.data, options.data_root),
    )
    from dataclasses import replace

    from safetensors import SafetensorError

    from vitexplorer.core.models.loading import save_checkpoint
    from vitexplorer.core.training import engine as training
    from vitexplorer.core.training.events import TrainingError
    from vitexplorer.core.training.timelapse import timelapse_bytes

    config = FinetuneConfig(**config_values(options, FinetuneConfig))
    try:
        replace(config, freeze="head").check(1)  # the freeze policy needs the model: see below
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc
    check_training_inputs(options)  # every file read: there, a file, readable, before any work
    _check_model_source(options.model, options.weights)
    dataset = _open_dataset(options.data, options.data_root, config)

    import torch

    torch.manual_seed(config.seed)  # random weights (--weights none) follow --seed too
    model = load_model_for(options)
    try:
        config.check(model.spec.num_layers)
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc
    base = _base_request(options, model)
    _check_room(
        out,
        training.finetuned_checkpoint_bytes(model, dataset.class_names)
        + timelapse_bytes(model.spec, config),
    )

    report, result = run_engine(model, dataset, config)
    result.base_request = base  # how the base loads again, for the checkpoint
    if result.cancelled:
        report.result(result, None)
        raise Failed("interrupted; nothing was saved", 130)
    try:
        training.check_savable(result.model)  # the engine checks too: never write NaN weights
    except TrainingError as exc:
        raise Failed(str(exc), 2) from exc
    try:
        save_checkpoint(out, result.model, result.metadata(), result.timelapse)
    except (OSError, SafetensorError) as exc:
        report.result(result, None)  # the test results are not lost with the model
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise Failed(
            f"cannot write {out}: {reason}; the trained model was not saved (its test results "
            f"are on stdout): mend that or choose another --out, and run again",
            2,
        ) from exc
    report.result(result, out)
    return 0


def _timelapse_summary(timelapse: Any) -> dict[str, Any] | None:
    """The final JSON line's word on the time-lapse saved in the checkpoint."""
    if timelapse is None:
        return None
    return {"epochs": timelapse.epochs, "probes": timelapse.sources}


def _head(result: Any) -> str:
    """The final JSON line's word on the classifier a fine-tune started from."""
    return "kept" if result.head_kept else "new"


def _base_request(options: argparse.Namespace, model: Any) -> Any:
    """How the base model loads again (its file's bytes hashed), for the checkpoint."""
    from vitexplorer.core.models.base_record import base_request

    try:
        return base_request(options.model, options.weights, model.spec.family)
    except OSError as exc:  # the file went, or became unreadable, since it was loaded
        raise Failed(f"cannot read the base model's file again: {exc.strerror or exc}", 2) from exc


def run_engine(model: Any, dataset: Any, config: Any) -> tuple[FinetuneReport, Any]:
    """Run the training engine on ``model``, its events reported on stdout and stderr; Ctrl-C
    cancels. The report and the engine's FinetuneResult, or a one-line :class:`Failed` (2)."""
    from vitexplorer.core.explain.analysis import failure_message
    from vitexplorer.core.training import engine as training
    from vitexplorer.core.training.datasets import DatasetError
    from vitexplorer.core.training.events import Finished, TrainingError

    report = FinetuneReport(sys.stdout, sys.stderr)
    result = None
    with CtrlCCancels(report) as cancel:
        try:
            for event in training.finetune(model, dataset, config, cancelled=cancel):
                report.show(event)
                if isinstance(event, Finished):
                    result = event.result
        except (TrainingError, DatasetError, ValueError) as exc:
            report.clear()
            raise Failed(str(exc), 2) from exc
        except RuntimeError as exc:  # anything else torch raises: one line, not a traceback
            report.clear()
            raise Failed(f"training failed: {failure_message(exc)}", 2) from exc
    if result is None:  # the engine always ends with Finished; never save without it
        raise Failed("training ended without a result; nothing was saved", 2)
    return report, result


def _check_room(out: Path, needed: int) -> None:
    """A :class:`Failed` unless ``out``'s folder has room for a checkpoint of ``needed`` bytes:
    found out now, not after the training."""
    from vitexplorer.core.io.files import free_space_problem

    problem = free_space_problem(out.parent, needed)
    if problem is not None:
        raise Failed(f"--out {out}: {problem}", 2)


def _checked_checkpoint_path(out: Path) -> Path:
    """``--out`` as it will be written, or a :class:`Failed` saying why it cannot be."""
    if out.suffix != ".safetensors":
        raise Failed(f"--out {out}: a checkpoint's name must end in .safetensors", 2)
    if out.is_dir():
        raise Failed(f"--out {out} is a folder; give the checkpoint's file name", 2)
    if out.exists() and not out.is_file():  # a FIFO or a device: the app could not read it back
        raise Failed(
            f"--out {out} is not a regular file (a FIFO or a device); a checkpoint must be a "
            f"file: give another name",
            2,
        )
    folder = out.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise Failed(f"--out {out}: the folder {folder} {what}; create it first", 2)
    try:  # the one sure test of writability, for any user (root too) and file system
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise Failed(f"--out {out}: cannot write to {folder}: {exc.strerror or exc}", 2) from exc
    return out


def _check_model_source(name: str, weights: str) -> None:
    """Fail now, not after a dataset download, on a model or weights file that would not load:
    an unknown name, a path that is not a file, a checkpoint whose metadata is unsound."""
    from vitexplorer.core.models import loading as models

    try:
        models.check_model_source(name, weights)
    except ValueError as exc:  # a WeightsFileError is one
        raise Failed(str(exc), 2) from exc


def _open_dataset(source: str, root: Path | None, config: Any) -> Any:
    """The dataset (CIFAR-10 downloaded with progress when missing), checked to hold enough
    images of every class for the subsets ``config`` asks for."""
    from torchvision.datasets import CIFAR10

    from vitexplorer.core.models.download import default_data_root
    from vitexplorer.core.training import datasets

    root = expand_user(root) if root else default_data_root()
    bar: ProgressBar | None = None
    if source == datasets.CIFAR10_NAME and not datasets.has_cifar10(root):
        if (root / CIFAR10.filename).is_file():
            print(f"Unpacking CIFAR-10 in {root}", file=sys.stderr, flush=True)
        else:
            size_mb = datasets.cifar10_download_size() / 1e6
            print(f"Downloading CIFAR-10, {size_mb:.0f} MB, to {root}", file=sys.stderr, flush=True)
            bar = ProgressBar(sys.stderr)
    try:
        dataset = datasets.open_dataset(source, root=root, download=True, progress=bar)
        datasets.plan_subsets(dataset, config.per_class, config.test_per_class, config.seed)
    except datasets.DatasetError as exc:
        raise Failed(str(exc), 2) from exc
    except OSError as exc:  # e.g. a folder that cannot be listed
        inner = exc.filename and os.fspath(exc.filename) != os.fspath(expand_user(source))
        where = f"{exc.filename}: " if inner else ""  # the folder inside it that failed
        raise Failed(
            f"cannot read the dataset {source}: {where}{exc.strerror or exc}; make it readable "
            f"or choose another --data",
            2,
        ) from exc
    finally:
        if bar is not None:
            bar.close()
    return dataset


STAGE_LABELS = {
    "loading": "loading images",
    "features": "computing the frozen part's outputs",
    "testing": "testing",
}


class FinetuneReport:
    """The fine-tune events for two readers: JSON lines on ``out`` for programs, progress for
    people on ``err``. On a terminal, progress is one line redrawn in place; otherwise (a log
    file, a pipe) a line when a stage ends and at most one every ``interval`` seconds within it.
    """

    def __init__(self, out: IO[str], err: IO[str], interval: float = 30.0) -> None:
        self.out, self.err, self.interval = out, err, interval
        self.tty = is_terminal(err)
        self.drawn = 0  # length of the in-place line on the terminal, 0 when none
        self.drawn_at = 0.0
        self.since = time.monotonic()  # when the current stage began
        self.stage: str | None = None
        self.steps = 0  # steps per epoch, epochs
        self.epochs = 0

    def show(self, event: Any) -> None:
        from vitexplorer.core.training.events import Epoch, Finished, Notice, Stage, Started, Step

        if isinstance(event, Stage):
            self._stage(event)
        elif isinstance(event, Step):
            if self.tty:
                step = (event.step - 1) % max(1, self.steps) + 1
                self._draw(
                    f"epoch {event.epoch}/{self.epochs}: step {step}/{self.steps}, "
                    f"loss {event.loss:.4f}"
                )
        elif isinstance(event, Epoch):
            self.clear()
            self._json(event.to_dict())
            self.since = time.monotonic()
        elif isinstance(event, Started):
            self.steps, self.epochs = event.steps_per_epoch, event.epochs
            cached = "; the frozen part runs once" if event.cached else ""
            self.note(
                f"training on {event.num_train} images ({event.num_val} for validation, "
                f"{event.num_test} for testing) of {len(event.class_names)} classes on "
                f"{event.device}: {event.trainable_params:,} of {event.total_params:,} parameters "
                f"trainable, {event.epochs} epoch(s) of {event.steps_per_epoch} step(s){cached}"
            )
            if event.head:
                self.note(f"head: {event.head}")
            self.since = time.monotonic()
        elif isinstance(event, Notice):
            self.note(f"note: {event.message}")
        elif isinstance(event, Finished):
            self.clear()

    def result(self, result: Any, checkpoint: Path | None) -> None:
        """The last JSON line: test metrics and where the model went."""
        confusion = result.confusion
        self._json(
            {
                **result.metrics(),
                "class_names": list(result.model.spec.class_names),
                "confusion": None if confusion is None else confusion.tolist(),
                "checkpoint": None if checkpoint is None else os.path.abspath(checkpoint),
                "timelapse": _timelapse_summary(result.timelapse),
                **({} if result.config.from_scratch else {"head": _head(result)}),
            }
        )
        if result.ties:
            self.note(ties_line(result))

    def note(self, message: str) -> None:
        """One permanent line on ``err``."""
        self.clear()
        print(terminal_text(message), file=self.err, flush=True)

    def clear(self) -> None:
        """Remove the in-place line, if one is drawn."""
        if self.drawn:
            self.err.write("\r" + " " * self.drawn + "\r")
            self.err.flush()
            self.drawn = 0

    def _stage(self, event: Any) -> None:
        now = time.monotonic()
        if event.name != self.stage:
            self.stage, self.drawn_at = event.name, now
        label = STAGE_LABELS.get(event.name, event.name)
        if event.done >= event.total:
            self.note(f"{label}: {event.total} images, {now - self.since:.1f} s")
            self.since, self.stage = now, None
        elif self.tty:
            self._draw(f"{label}: {event.done}/{event.total}")
        elif now - self.drawn_at >= self.interval:
            self.note(f"{label}: {event.done}/{event.total}")
            self.drawn_at = now

    def _draw(self, text: str) -> None:
        now = time.monotonic()
        if self.drawn and now - self.drawn_at < 0.1:
            return
        self.err.write("\r" + text.ljust(self.drawn))
        self.err.flush()
        self.drawn, self.drawn_at = max(len(text), 1), now

    def _json(self, record: dict[str, Any]) -> None:

        print(json.dumps(_finite(record), allow_nan=False), file=self.out, flush=True)


def ties_line(result: Any) -> str:
    """The test images that tie, for people: the accuracy counts them by their argmax."""
    total = len(result.test_ties)
    return (
        f"{result.right} of {total} test images right and {result.ties} ties (the top two "
        f"probabilities within a tenth of a point: no class picked); test_acc counts each tie "
        f"by its argmax"
    )


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: strict JSON for any reader."""

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
