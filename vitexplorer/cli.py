"""The ``vitexplorer`` command: the app, ``analyze`` to write attention maps without a window, or
``finetune`` to give a ViT a new head for a dataset and save it as a checkpoint.

Nothing heavy is imported at module level (no torch, no Qt), so ``vitexplorer --help`` is instant;
the commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vitexplorer import __version__

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.analysis import ImageAnalysis
    from vitexplorer.core.models import LoadedModel

PROG = "vitexplorer"
COMMANDS = ("analyze", "finetune")
# The same names as vitexplorer.core.models.MODEL_NAMES (a test keeps them equal); repeated here
# so that the help texts need not import torch.
MODEL_NAMES = ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "small_vit")
_GUI_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph")


class _Failed(Exception):
    """A problem already worth one line on stderr; carries the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "analyze":
            return _analyze(_analyze_parser().parse_args(args[1:]))
        if args and args[0] == "finetune":
            return _finetune(_finetune_parser().parse_args(args[1:]))
        options = _gui_parser().parse_args(args)
        return _run_gui(options.images)
    except SystemExit as exc:  # argparse after --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except _Failed as exc:
        _error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    """One line on stderr, however many lines the underlying message had."""
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr, flush=True)


# --- argument parsing ----------------------------------------------------------------------------


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] [IMAGE ...]\n"
        f"       {PROG} analyze IMAGE ... --model NAME --out DIR [options]\n"
        f"       {PROG} finetune --model NAME --data cifar10|DIR --out MODEL.safetensors "
        f"[options]",
        description="See inside Vision Transformers: predictions and every layer's and head's\n"
        "attention, patch by patch. Without a command, opens the app with the given images.",
        epilog=f"commands:\n  analyze     write attention maps and predictions for images "
        f"without opening a window\n              (see '{PROG} analyze -h')\n"
        f"  finetune    train a new head (and optionally the last blocks) on a dataset and save "
        f"the model\n              (see '{PROG} finetune -h')",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images to open in the app")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _analyze_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} analyze",
        description="Run a ViT on each image and write, per image, into DIR: <stem>.attention.npy "
        "(float32, layers x heads x tokens x tokens), <stem>.json (model facts and the top-5 "
        "predictions) and <stem>.cls.png (the last layer's CLS attention, mean over heads, over "
        "the crop the model saw).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to analyse")
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help=f"one of {', '.join(MODEL_NAMES)}, or a vitexplorer checkpoint (.safetensors)",
    )
    parser.add_argument(
        "--weights",
        default="default",
        metavar="default|none|PATH",
        help="'default': ImageNet weights for torchvision ViTs (downloaded once into the torch "
        "hub cache), random for small_vit; 'none': random weights; or a local weights file "
        "(.pth or .safetensors). Not used with a checkpoint --model. (default: default)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=_device_choice,
        metavar="auto|cpu|cuda|mps",
        help="where the model runs; auto picks CUDA, then MPS, then the CPU (default: auto)",
    )
    return parser


def _device_choice(value: str) -> str:
    if value in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not auto, cpu, cuda, cuda:N or mps")


# FinetuneConfig's defaults, repeated so that the help text needs no torch (a test keeps them equal)
FINETUNE_DEFAULTS: dict[str, Any] = {
    "per_class": 100,
    "test_per_class": 50,
    "val_fraction": 0.1,
    "freeze": "head",
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "batch_size": 64,
    "epochs": 5,
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "augment": False,
    "mixed_precision": True,
    "seed": 0,
}


def _finetune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} finetune",
        description="Fine-tune a ViT on a class-balanced subset of a dataset: a new head for the "
        "dataset's classes, and whatever the freeze policy leaves trainable. Prints one JSON line "
        "per epoch to stdout (epoch, train_loss, train_acc, val_loss, val_acc, seconds), then one "
        "with the test results (test_acc, per_class_acc, class_names, confusion, steps, seconds, "
        "checkpoint, cancelled), and writes the model as a checkpoint that 'analyze' and the app "
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
        metavar="cifar10|DIR",
        help="'cifar10' (downloaded, 170 MB, into --data-root when missing) or a folder holding "
        "one subfolder of images per class, optionally inside train/ and test/ (without them the "
        "test images are set aside from each class); write ./cifar10 for a folder of that name",
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
        type=_device_choice,
        metavar="auto|cpu|cuda|mps",
        help="where the model trains; auto picks CUDA, then MPS, then the CPU (default: auto)",
    )
    d = FINETUNE_DEFAULTS
    data = parser.add_argument_group("the subsets")
    data.add_argument(
        "--per-class",
        type=_positive_int,
        default=d["per_class"],
        metavar="N",
        help="training images per class, validation images included (default: %(default)s)",
    )
    data.add_argument(
        "--test-per-class",
        type=_positive_int,
        default=d["test_per_class"],
        metavar="M",
        help="test images per class (default: %(default)s)",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=d["val_fraction"],
        metavar="F",
        help="share of each class's training images held out for validation (default: %(default)s)",
    )
    data.add_argument(
        "--augment",
        action="store_true",
        help="random horizontal flips (the frozen part then runs every epoch, not once)",
    )
    train = parser.add_argument_group("training")
    train.add_argument(
        "--freeze",
        default=d["freeze"],
        metavar="head|last:K|none",
        help="train the new head only, the last K blocks too, or everything (default: %(default)s)",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=d["epochs"],
        metavar="E",
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--lr",
        type=float,
        default=d["lr"],
        metavar="X",
        help="peak learning rate (default: %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=d["batch_size"],
        metavar="B",
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--optimizer",
        choices=("adamw", "sgd"),
        default=d["optimizer"],
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--momentum",
        type=float,
        default=d["momentum"],
        metavar="X",
        help="for SGD (default: %(default)s)",
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        default=d["weight_decay"],
        metavar="X",
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default=d["schedule"],
        help="the learning rate after any warm-up (default: %(default)s)",
    )
    train.add_argument(
        "--warmup-epochs",
        type=float,
        default=d["warmup_epochs"],
        metavar="E",
        help="linear warm-up, in epochs, fractions allowed (default: %(default)s)",
    )
    train.add_argument(
        "--label-smoothing",
        type=float,
        default=d["label_smoothing"],
        metavar="X",
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--no-mixed-precision",
        dest="mixed_precision",
        action="store_false",
        help="train in float32 throughout; by default the forward passes run in bfloat16 (or "
        "float16) on a GPU, and in bfloat16 on a CPU with AMX, where it is several times faster",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=d["seed"],
        metavar="S",
        help="decides the images chosen, their order and any random weights (default: %(default)s)",
    )
    return parser


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


# --- the app -------------------------------------------------------------------------------------


def _run_gui(images: list[str]) -> int:
    if images and images[0] not in ("-", "") and _looks_like_a_command(images[0]):
        raise _Failed(
            f"{images[0]!r} is neither a command ({', '.join(COMMANDS)}) nor an existing file; "
            f"see '{PROG} --help'",
            2,
        )
    try:
        from vitexplorer.gui.app import run_gui
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _GUI_PACKAGES:
            raise
        raise _Failed(
            f"the app cannot start: {exc}. Install PySide6-Essentials and pyqtgraph, or use "
            f"'{PROG} analyze', which needs no window",
            1,
        ) from exc
    return run_gui(images)


def _looks_like_a_command(arg: str) -> bool:
    """A bare word such as ``analyse`` that is no file: almost certainly a mistyped command."""
    path = Path(arg)
    return not path.suffix and os.sep not in arg and "/" not in arg and not path.exists()


# --- analyze -------------------------------------------------------------------------------------


def _analyze(options: argparse.Namespace) -> int:
    """``vitexplorer analyze``: 0 when every image was written, 1 when some failed."""
    out_dir: Path = options.out
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Failed(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}", 2
        ) from exc
    model = _load_model(options)

    from vitexplorer.core.analysis import analyze_image, failure_message
    from vitexplorer.core.data import ImageLoadError, load_image

    lut = _colour_table()
    mode = _file_mode()
    failures = 0
    for source, stem in zip(options.images, unique_stems(options.images), strict=True):
        try:
            image = load_image(source)
        except ImageLoadError as exc:
            _error(str(exc))
            failures += 1
            continue
        try:
            analysis = analyze_image(model, image)
        except (RuntimeError, ValueError) as exc:  # e.g. the GPU ran out of memory
            _error(f"{Path(source).name}: {failure_message(exc)}")
            failures += 1
            continue
        try:
            write_outputs(out_dir, stem, source, analysis, lut, mode)
        except OSError as exc:
            _error(f"{Path(source).name}: cannot write to {out_dir}: {exc.strerror or exc}")
            failures += 1
            continue
        top = analysis.predictions[0]
        print(f"{stem}: {top.name} {top.probability:.1%}", flush=True)
    return 1 if failures else 0


def _load_model(options: argparse.Namespace) -> LoadedModel:
    """The model, loaded once, or a :class:`_Failed` with status 2 that says why not."""
    from vitexplorer.core import models
    from vitexplorer.core.checkpoint import WeightsFileError

    name, weights = options.model, options.weights
    if models.is_weights_path(name) and weights != "default":
        _error(f"note: --weights {weights} is ignored, {Path(name).name} carries its own weights")
    bar: ProgressBar | None = None
    if name in models.TORCHVISION_VITS and weights == "default":
        download = models.default_weights_download(name)
        if not download.cached:
            print(
                f"Downloading the {download.description}, {download.size_mb:.0f} MB, "
                f"to {download.path}",
                file=sys.stderr,
                flush=True,
            )
            bar = ProgressBar(sys.stderr)
    try:
        return models.load_model(name, weights, options.device, progress=bar)
    except (models.WeightsUnavailableError, models.DownloadCancelled) as exc:
        raise _Failed(str(exc), 2) from exc
    except (WeightsFileError, ValueError) as exc:  # unknown model, bad file, device not present
        raise _Failed(str(exc), 2) from exc
    except OSError as exc:  # e.g. the torch hub cache is not writable
        raise _Failed(f"cannot load the model: {exc}", 2) from exc
    finally:
        if bar is not None:
            bar.close()


class ProgressBar:
    """A one-line download progress bar, redrawn in place with ``\\r``."""

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.shown: tuple[int, float] | None = None  # (percent, time) last drawn

    def __call__(self, done: int, total: int) -> None:
        fraction = min(done / total, 1.0) if total > 0 else 0.0
        percent = int(fraction * 100)
        now = time.monotonic()
        if self.shown is not None and (
            percent == self.shown[0] or (now - self.shown[1] < 0.1 and percent < 100)
        ):
            return
        self.shown = (percent, now)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done / 1e6:7.1f} / {total / 1e6:.1f} MB {percent:3d}%")
        self.stream.flush()

    def close(self) -> None:
        """End the line, if anything was drawn."""
        if self.shown is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = None


def unique_stems(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One output name per input: its file stem, with ``-2``, ``-3``... for repeated stems.

    The first input with a stem keeps it; later ones get the lowest free suffix that no input's
    own stem uses. Compared case-insensitively, for case-insensitive file systems.
    """
    natural = [Path(p).stem or "image" for p in paths]
    taken = {stem.casefold() for stem in natural}
    seen: set[str] = set()
    stems = []
    for stem in natural:
        if stem.casefold() not in seen:
            seen.add(stem.casefold())
            stems.append(stem)
            continue
        n = 2
        while f"{stem}-{n}".casefold() in taken:
            n += 1
        taken.add(f"{stem}-{n}".casefold())
        stems.append(f"{stem}-{n}")
    return stems


def write_outputs(
    out_dir: Path,
    stem: str,
    source: str | os.PathLike[str],
    analysis: ImageAnalysis,
    lut: np.ndarray,
    mode: int = 0o644,
) -> list[Path]:
    """Write ``<stem>.attention.npy``, ``<stem>.json`` and ``<stem>.cls.png``; returns them."""
    import json

    import numpy as np
    from PIL import Image

    from vitexplorer.core.explain import attention_map
    from vitexplorer.core.overlay import render_overlay

    spec = analysis.spec
    facts = {
        **spec.describe(),
        "image": str(source),
        "predictions": [
            {"index": p.index, "name": p.name, "probability": p.probability}
            for p in analysis.predictions
        ],
        "forward_seconds": analysis.seconds,
    }
    cls_map = attention_map(
        analysis.attention,
        layer=spec.num_layers - 1,
        head=None,
        token=0,
        grid=spec.grid,
        num_prefix=spec.num_prefix_tokens,
    )
    picture = Image.fromarray(render_overlay(analysis.display, cls_map, lut))
    attention = np.ascontiguousarray(analysis.attention, dtype=np.float32)
    paths = [
        out_dir / f"{stem}.attention.npy",
        out_dir / f"{stem}.json",
        out_dir / f"{stem}.cls.png",
    ]
    writers: list[Callable[[IO[bytes]], Any]] = [
        lambda f: np.save(f, attention, allow_pickle=False),
        lambda f: f.write((json.dumps(facts, indent=2) + "\n").encode("utf-8")),
        lambda f: picture.save(f, format="PNG"),
    ]
    for path, write in zip(paths, writers, strict=True):
        write_atomic(path, write, mode)
    return paths


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any], mode: int = 0o644) -> None:
    """Write ``path`` through a temporary file beside it, so it is never seen half written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, mode)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# pyqtgraph's inferno at 0, 32, ..., 224 and 255, for machines where Qt cannot be imported
_INFERNO_ANCHORS = (
    (0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84),
    (228, 90, 49), (249, 142, 9), (249, 203, 53), (252, 255, 164),
)  # fmt: skip


def _colour_table() -> np.ndarray:
    """pyqtgraph's inferno as a (256, 3) uint8 table (a close approximation without Qt)."""
    import numpy as np

    try:
        import pyqtgraph as pg
    except ImportError:  # e.g. a server without the system libraries that Qt needs
        positions = [*range(0, 256, 32), 255]
        anchors = np.array(_INFERNO_ANCHORS, dtype=np.float64)
        steps = np.arange(256)
        channels = [np.interp(steps, positions, anchors[:, c]) for c in range(3)]
        return np.rint(np.stack(channels, axis=1)).astype(np.uint8)
    return pg.colormap.get("inferno").getLookupTable(nPts=256, alpha=False)


# --- finetune ------------------------------------------------------------------------------------


def _finetune(options: argparse.Namespace) -> int:
    """``vitexplorer finetune``: JSON lines on stdout, the checkpoint at ``--out``; 0, 2 or 130.

    Everything cheap is checked before anything heavy (downloads, decoding, training), and the
    checkpoint is written only after the last test batch, atomically.
    """
    out = _checked_checkpoint_path(options.out.expanduser())
    from dataclasses import replace

    from vitexplorer.core import training
    from vitexplorer.core.analysis import failure_message
    from vitexplorer.core.datasets import DatasetError
    from vitexplorer.core.models import save_checkpoint

    config = training.FinetuneConfig(**{key: getattr(options, key) for key in FINETUNE_DEFAULTS})
    try:
        replace(config, freeze="head").check(1)  # the freeze policy needs the model: see below
    except ValueError as exc:
        raise _Failed(str(exc), 2) from exc
    _check_model_source(options.model, options.weights)
    dataset = _open_dataset(options.data, options.data_root, config)

    import torch

    torch.manual_seed(config.seed)  # random weights (--weights none) follow --seed too
    model = _load_model(options)
    try:
        config.check(model.spec.num_layers)
    except ValueError as exc:
        raise _Failed(str(exc), 2) from exc

    report = FinetuneReport(sys.stdout, sys.stderr)
    result = None
    with CtrlCCancels(report) as cancel:
        try:
            for event in training.finetune(model, dataset, config, cancelled=cancel):
                report.show(event)
                if isinstance(event, training.Finished):
                    result = event.result
        except (training.TrainingError, DatasetError, ValueError) as exc:
            report.clear()
            raise _Failed(str(exc), 2) from exc
        except RuntimeError as exc:  # anything else torch raises: one line, not a traceback
            report.clear()
            raise _Failed(f"training failed: {failure_message(exc)}", 2) from exc
    if result is None:  # the engine always ends with Finished; never save without it
        raise _Failed("training ended without a result; nothing was saved", 2)
    if result.cancelled:
        report.result(result, None)
        raise _Failed("interrupted; nothing was saved", 130)
    try:
        save_checkpoint(out, result.model, result.metadata())
    except OSError as exc:
        raise _Failed(f"cannot write {out}: {exc.strerror or exc}", 2) from exc
    report.result(result, out)
    return 0


def _checked_checkpoint_path(out: Path) -> Path:
    """``--out`` as it will be written, or a :class:`_Failed` saying why it cannot be."""
    if out.suffix != ".safetensors":
        raise _Failed(f"--out {out}: a checkpoint's name must end in .safetensors", 2)
    if out.is_dir():
        raise _Failed(f"--out {out} is a folder; give the checkpoint's file name", 2)
    folder = out.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise _Failed(f"--out {out}: the folder {folder} {what}; create it first", 2)
    try:  # the one sure test of writability, for any user (root too) and file system
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _Failed(f"--out {out}: cannot write to {folder}: {exc.strerror or exc}", 2) from exc
    return out


def _check_model_source(name: str, weights: str) -> None:
    """Fail now, not after a dataset download, on a model or weights file that is not there."""
    from vitexplorer.core import models

    if models.is_weights_path(name):
        if not Path(name).is_file():
            raise _Failed(f"weights file not found: {name}", 2)
    elif name not in models.MODEL_NAMES:
        choices = ", ".join(models.MODEL_NAMES)
        raise _Failed(f"unknown model {name!r}; choose one of {choices} or a checkpoint path", 2)
    elif weights not in ("default", "none") and not Path(weights).is_file():
        raise _Failed(f"weights file not found: {weights}", 2)


def _open_dataset(source: str, root: Path | None, config: Any) -> Any:
    """The dataset (CIFAR-10 downloaded with progress when missing), checked to hold enough
    images of every class for the subsets ``config`` asks for."""
    from torchvision.datasets import CIFAR10

    from vitexplorer.core import datasets

    root = root.expanduser() if root else datasets.default_data_root()
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
        raise _Failed(str(exc), 2) from exc
    except OSError as exc:  # e.g. a folder that cannot be listed
        raise _Failed(f"cannot read the dataset {source}: {exc.strerror or exc}", 2) from exc
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
        self.tty = _is_terminal(err)
        self.drawn = 0  # length of the in-place line on the terminal, 0 when none
        self.drawn_at = 0.0
        self.since = time.monotonic()  # when the current stage began
        self.stage: str | None = None
        self.steps = 0  # steps per epoch, epochs
        self.epochs = 0

    def show(self, event: Any) -> None:
        from vitexplorer.core import training

        if isinstance(event, training.Stage):
            self._stage(event)
        elif isinstance(event, training.Step):
            if self.tty:
                step = (event.step - 1) % max(1, self.steps) + 1
                self._draw(
                    f"epoch {event.epoch}/{self.epochs}: step {step}/{self.steps}, "
                    f"loss {event.loss:.4f}"
                )
        elif isinstance(event, training.Epoch):
            self.clear()
            self._json(event.to_dict())
            self.since = time.monotonic()
        elif isinstance(event, training.Started):
            self.steps, self.epochs = event.steps_per_epoch, event.epochs
            cached = "; the frozen part runs once" if event.cached else ""
            self.note(
                f"training on {event.num_train} images ({event.num_val} for validation, "
                f"{event.num_test} for testing) of {len(event.class_names)} classes on "
                f"{event.device}: {event.trainable_params:,} of {event.total_params:,} parameters "
                f"trainable, {event.epochs} epoch(s) of {event.steps_per_epoch} step(s){cached}"
            )
            self.since = time.monotonic()
        elif isinstance(event, training.Notice):
            self.note(f"note: {event.message}")
        elif isinstance(event, training.Finished):
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
            }
        )

    def note(self, message: str) -> None:
        """One permanent line on ``err``."""
        self.clear()
        print(message, file=self.err, flush=True)

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
        import json

        print(json.dumps(_finite(record), allow_nan=False), file=self.out, flush=True)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: strict JSON for any reader."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class CtrlCCancels:
    """While entered, the first Ctrl-C asks the engine to stop after the current batch (so it
    ends cleanly and nothing is saved); a second one stops at once. Callable: the cancel check.
    """

    def __init__(self, report: FinetuneReport) -> None:
        self.report = report
        self.requested = False
        self.previous: Any = None
        self.installed = False

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> CtrlCCancels:
        import signal
        import threading

        # only over Python's own handler: a parent that ignores SIGINT, or an embedding program
        # with its own handler, keeps its way
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._interrupted)
            self.installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False

    def _interrupted(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.report.note("stopping after the current batch; Ctrl-C again to stop at once")
