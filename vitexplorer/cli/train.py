"""``vitexplorer train``: the project's small ViT trained from scratch on a dataset, at the
images' own size (32 px for CIFAR-10), saved as a checkpoint; JSON lines on stdout.

It runs the fine-tune engine (:func:`vitexplorer.core.training.engine.finetune`) with every weight
trainable and :class:`~vitexplorer.core.training.engine.TrainConfig`'s from-scratch settings.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from vitexplorer.cli.common import (
    PROG,
    Failed,
    check_outputs,
    dataset_folders,
    device_choice,
)
from vitexplorer.cli.finetune import (
    _check_room,
    _checked_checkpoint_path,
    _open_dataset,
    run_engine,
)
from vitexplorer.cli.inputs import check_training_inputs
from vitexplorer.cli.settings import add_config_options, config_values
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.architecture import (
    ARCH_DEFAULTS,
    architecture_problem,
    available_bytes,
    default_warmup,
    memory_problem,
)
from vitexplorer.core.training.config import TrainConfig

# the order of the options in the help (any other setting follows, in the field order)
TRAIN_OPTIONS = (
    "per_class", "test_per_class", "val_fraction", "epochs", "lr", "batch_size", "weight_decay",
    "schedule", "label_smoothing", "augment_policy", "warmup_epochs", "clip_grad", "head_init",
    "mixed_precision", "seed", "probes", "probe_files",
)  # fmt: skip
ARCH_ARGUMENTS = (
    ("--image-size", int, "PX", "input size; images are resized to it"),
    ("--patch-size", int, "PX", "the side of each square patch; must divide the image size"),
    ("--width", int, "D", "token width"),
    ("--depth", int, "L", "encoder blocks"),
    ("--heads", int, "H", "attention heads; must divide the width"),
    ("--mlp-ratio", float, "R", "MLP width over token width"),
    ("--dropout", float, "P", "after the attention projection and in the MLP"),
    ("--drop-path", float, "P", "stochastic depth at the last block, rising linearly from 0 at "
     "the first"),
)  # fmt: skip


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} train",
        description="Train vitexplorer's small ViT from scratch on a dataset, at the images' own "
        "size (32 px for CIFAR-10: no upscaling), and save it as a checkpoint that 'analyze' and "
        "the app open. Prints the number of trainable parameters, then one JSON line per epoch "
        "(epoch, train_loss, train_acc, val_loss, val_acc, seconds) and one with the test results "
        "of the best epoch's weights (by validation accuracy), which are the ones saved. Ctrl-C "
        "stops after the current batch and saves the best epoch so far; a diverging run (NaN "
        "loss or weights) stops and keeps it too. Exit status: 0 saved, 2 a problem with the "
        "architecture, data, settings or training (nothing saved), 130 interrupted.",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="cifar10|DIR",
        help="'cifar10' (downloaded, 170 MB, into --data-root when missing) or a folder holding "
        "one subfolder of images per class, optionally inside train/ and test/",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where CIFAR-10 is kept (as for 'finetune')",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL.safetensors",
        help="the checkpoint to write (its folder must exist)",
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="also write one CSV row per test image: its file (or 'test #i' for CIFAR-10), its "
        "class, the class predicted and that prediction's probability",
    )
    parser.add_argument(
        "--test-csv",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="an unlabelled pixel CSV (pixel0,...,pixelN, with or without an id or ImageId "
        "column) to predict with the saved model: --predictions then holds one row per image, "
        "its id (the file's own, else its row number from 1) and the predicted class, as a "
        "submission needs",
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=device_choice,
        metavar="auto|cpu|cuda|mps",
        help="(default: auto)",
    )
    a = ARCH_DEFAULTS
    arch = parser.add_argument_group(
        "the architecture",
        "The defaults follow the compact ViTs for 32 px images (ViT-Lite, Hassani et al. 2021, "
        "'Escaping the Big Data Paradigm with Compact Transformers'): 4 px patches, so a CIFAR "
        "image is an 8x8 grid of 64 tokens instead of 4 (at /16), and an MLP twice the width "
        "rather than four times, which halves the MLP's parameters (1.8M in all instead of "
        "2.7M) for a dataset of 50,000 images, where the larger MLP overfits without gaining "
        "accuracy; plus a little stochastic depth.",
    )
    for flag, kind, metavar, help_text in ARCH_ARGUMENTS:
        arch.add_argument(
            flag,
            type=kind,
            default=a[flag[2:].replace("-", "_")],
            metavar=metavar,
            help=f"{help_text} (default: %(default)s)",
        )
    groups = {
        "subsets": parser.add_argument_group("the subsets"),
        "training": parser.add_argument_group("training (AdamW)"),
    }
    groups["time-lapse"] = parser.add_argument_group("time-lapse")
    add_config_options(groups, TrainConfig, TRAIN_OPTIONS)
    return parser


def architecture(options: argparse.Namespace, num_classes: int = 10) -> Any:
    """The :class:`SmallViTConfig` the options ask for, or a one-line :class:`Failed` (2) naming
    the option to mend (the rules are
    :func:`~vitexplorer.core.models.architecture.architecture_problem`'s, as in the app)."""
    from vitexplorer.core.models.vit import SmallViTConfig

    shape = {name: getattr(options, name) for name in ARCH_DEFAULTS}
    found = architecture_problem(shape)
    if found is not None:
        field, message = found
        raise Failed(f"--{field.replace('_', '-')}: {message}", 2)
    try:
        return SmallViTConfig(num_classes=num_classes, **shape)
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc


def check_memory(config: Any, batch_size: int, device: str) -> None:
    """A one-line :class:`Failed` (2) when training would not fit in the device's free memory."""
    advice = "lower --batch-size, --width or --depth, or raise --patch-size"
    problem = memory_problem(config, batch_size, available_bytes(device), advice)
    if problem is not None:
        raise Failed(problem, 2)


def train_config(options: argparse.Namespace) -> TrainConfig:
    """The run's settings; the warm-up, when not given, follows the epochs."""
    settings = config_values(options, TrainConfig)
    if options.warmup_epochs is None:
        settings["warmup_epochs"] = default_warmup(options.epochs)
    return TrainConfig(**settings)


def run_train(options: argparse.Namespace) -> int:
    """``vitexplorer train``: the checkpoint at ``--out``; 0, 2 or 130.

    The architecture and settings are checked, and the memory training needs estimated, before
    anything is loaded or allocated."""
    out = _checked_checkpoint_path(expand_user(options.out))
    predictions = _checked_predictions_path(options.predictions)
    check_outputs(
        [("--out", out), ("curves", curves_path(out)), ("--predictions", predictions)],
        [("--data", options.data), ("--test-csv", options.test_csv)],
        dataset_folders(options.data, options.data_root),
    )
    shape = architecture(options)
    config = train_config(options)
    try:
        config.check(shape.depth)
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc
    try:
        check_memory(shape, config.batch_size, options.device)
    except (RuntimeError, ValueError) as exc:  # a device that is not there
        raise Failed(str(exc), 2) from exc
    check_training_inputs(options)  # every file read: there, a file, readable, before any work
    unlabelled = _read_test_csv(options.test_csv, predictions)  # refused now, not after training
    dataset = _open_dataset(options.data, options.data_root, config)
    shape = architecture(options, dataset.num_classes)

    import torch

    from vitexplorer.core.explain.analysis import failure_message
    from vitexplorer.core.models import loading as models
    from vitexplorer.core.models.families.registry import SMALL_VIT
    from vitexplorer.core.training import engine as training
    from vitexplorer.core.training.events import TrainingError
    from vitexplorer.core.training.timelapse import timelapse_bytes

    torch.manual_seed(config.seed)
    try:
        model = models.load_model(SMALL_VIT, "none", options.device, small_config=shape)
    except (ValueError, RuntimeError) as exc:
        raise Failed(f"cannot build the model: {failure_message(exc)}", 2) from exc
    count = sum(p.numel() for p in model.module.parameters())
    print(
        f"{count:,} trainable parameters: {shape.depth} blocks of width {shape.width}, "
        f"{shape.heads} heads, MLP x{shape.mlp_ratio:g}, {shape.image_size} px images in "
        f"{shape.patch_size} px patches",
        file=sys.stderr,
        flush=True,
    )
    _check_room(out, 4 * count + 256 * 1024 + timelapse_bytes(model.spec, config))

    report, result = run_engine(model, dataset, config)
    if result.cancelled and result.best_epoch is None:
        report.result(result, None)
        raise Failed("interrupted before the first epoch ended; nothing was saved", 130)
    if result.best_epoch is not None:
        report.note(_best_line(result))
    try:
        training.check_savable(result.model)
        models.save_checkpoint(out, result.model, result.metadata(), result.timelapse)
    except TrainingError as exc:
        raise Failed(str(exc), 2) from exc
    except OSError as exc:
        raise Failed(f"cannot write {out}: {exc.strerror or exc}; nothing was saved", 2) from exc
    curves = curves_path(out)
    try:
        from vitexplorer.core.render.curves import save_curves

        if result.history:
            save_curves(curves, result.history, result.best_epoch)
            report.note(f"curves: {curves}")
        if predictions is not None and unlabelled is not None:
            count = write_csv_predictions(predictions, result.model, unlabelled)
            report.note(f"predictions: {predictions} ({count} images of {options.test_csv})")
        elif predictions is not None and result.test_predicted is not None:
            write_predictions(predictions, result)
            report.note(f"predictions: {predictions} ({len(result.test_sources)} test images)")
    except OSError as exc:
        report.result(result, out)
        raise Failed(f"the model was saved to {out}, but {exc}", 2) from exc
    report.result(result, out)
    if result.cancelled:
        report.note(f"interrupted; the best epoch so far was saved to {out}")
        return 130
    return 0


def curves_path(out: Path) -> Path:
    """Where the curves of the checkpoint ``out`` go: ``NAME.curves.png`` beside it."""
    return out.with_name(out.name.removesuffix(".safetensors") + ".curves.png")


def _checked_predictions_path(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = expand_user(path)
    if path.is_dir():
        raise Failed(f"--predictions {path} is a folder; give the CSV file's name", 2)
    if not path.parent.is_dir():
        raise Failed(f"--predictions {path}: the folder {path.parent} does not exist", 2)
    return path


def write_predictions(path: Path, result: Any) -> None:
    """One CSV row per test image: source, true class, predicted class, its probability."""
    import csv

    from vitexplorer.core.io.files import write_atomic

    names = result.model.spec.class_names
    rows = zip(
        result.test_sources,
        result.test_true.tolist(),
        result.test_predicted.tolist(),
        result.test_confidence.tolist(),
        strict=True,
    )

    def write(handle: Any) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
        table = csv.writer(text)
        table.writerow(["source", "true", "predicted", "probability"])
        for source, true, predicted, probability in rows:
            table.writerow([source, names[true], names[predicted], f"{probability:.6f}"])
        text.flush()
        text.detach()

    write_atomic(path, write)


def _read_test_csv(path: Path | None, predictions: Path | None) -> Any:
    """The unlabelled pixel CSV to predict (a ``PixelCSV``), read and checked before training;
    None without one."""
    if path is None:
        return None
    if predictions is None:
        raise Failed("--test-csv needs --predictions FILE.csv, where the predictions go", 2)
    from vitexplorer.core.training.pixel_csv import PixelCSVError, read_pixel_csv

    try:
        return read_pixel_csv(expand_user(path), labelled=False)
    except PixelCSVError as exc:
        raise Failed(str(exc), 2) from exc


def write_csv_predictions(path: Path, model: Any, test: Any, batch_size: int = 256) -> int:
    """The model's class for each image of the unlabelled pixel CSV ``test``: a CSV of its id
    (under the file's own id column name, else ``ImageId``) and the predicted class's name
    (``Label``), in the file's order. Returns the number of rows."""
    import csv

    import torch

    from vitexplorer.core.io.files import write_atomic
    from vitexplorer.core.training.datasets import to_model_input

    spec = model.spec
    model.module.eval()
    predicted: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(test.images), batch_size):
            chunk = torch.from_numpy(test.images[start : start + batch_size]).permute(0, 3, 1, 2)
            x = to_model_input(chunk, spec.image_size, spec.mean, spec.std, spec.interpolation)
            predicted += model.module(x.to(model.device)).argmax(1).tolist()
    names = spec.class_names

    def write(handle: Any) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        table = csv.writer(text)
        table.writerow([test.id_column or "ImageId", "Label"])
        for ident, label in zip(test.ids.tolist(), predicted, strict=True):
            table.writerow([ident, names[label]])
        text.flush()
        text.detach()

    write_atomic(path, write)
    return len(predicted)


def _best_line(result: Any) -> str:
    done = len(result.history)
    of = f"{done}" if result.cancelled or result.diverged else f"{result.config.epochs}"
    line = f"best epoch {result.best_epoch} of {of}"
    if result.best_val_acc is not None and result.best_val_acc >= 0:
        line += f", validation accuracy {result.best_val_acc:.1%}"
    else:
        line += " (no validation split: the last epoch)"
    if result.test_acc is not None:
        line += f"; its test accuracy {result.test_acc:.1%}"
        if result.ties:
            tied = f"{result.ties} of {len(result.test_ties)} test images tie"
            line += f" ({tied}, counted by their argmax)"
    return line
