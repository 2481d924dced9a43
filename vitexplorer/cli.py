"""The ``vitexplorer`` command: the app, or ``analyze`` to write attention maps without a window.

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
COMMANDS = ("analyze",)
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
        if args and args[0] in COMMANDS:
            options = _analyze_parser().parse_args(args[1:])
            return _analyze(options)
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
        f"       {PROG} analyze IMAGE ... --model NAME --out DIR [options]",
        description="See inside Vision Transformers: predictions and every layer's and head's\n"
        "attention, patch by patch. Without a command, opens the app with the given images.",
        epilog=f"commands:\n  analyze     write attention maps and predictions for images "
        f"without opening a window\n              (see '{PROG} analyze -h')",
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
