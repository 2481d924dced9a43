"""What the commands share: one-line errors, argument types, loading the model with a download
bar, atomic writes, the colour table of the PNG overlays, Ctrl-C as a cancel."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vitexplorer.core.io.folders import image_files
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.spec import model_choices_help

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.models.loading import LoadedModel

PROG = "vitexplorer"


class Failed(Exception):
    """A problem already worth one line on stderr; carries the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def error(message: str) -> None:
    """One line on stderr, however many lines the underlying message had."""
    print(f"{PROG}: {terminal_text(' '.join(message.split()))}", file=sys.stderr, flush=True)


def terminal_text(text: str) -> str:
    """``text`` safe to print: what does not print (an escape sequence's ESC and BEL, a line
    break, bytes that were not UTF-8) as backslash escapes, as file names are shown."""
    if text.isprintable():
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def device_choice(value: str) -> str:
    if value in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not auto, cpu, cuda, cuda:N or mps")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def load_model_for(options: argparse.Namespace) -> LoadedModel:
    """The model, loaded once, or a :class:`Failed` with status 2 that says why not."""
    from vitexplorer.core.models import loading as models
    from vitexplorer.core.models.checkpoint import WeightsFileError
    from vitexplorer.core.models.download import DownloadCancelled, WeightsUnavailableError

    name, weights = options.model, options.weights
    bar: ProgressBar | None = None
    download = models.default_download(name, weights)
    if download is not None and not download.cached:
        size = f", {download.size_mb:.0f} MB," if download.size_mb > 0 else ""
        # said once the first bytes arrive: a download refused at once (no network) is one line
        header = f"Downloading the {download.description}{size} to {download.path}"
        bar = ProgressBar(sys.stderr, header=header)
    try:
        model = models.load_model(name, weights, options.device, progress=bar)
    except (WeightsUnavailableError, DownloadCancelled) as exc:
        raise Failed(str(exc), 2) from exc
    except (WeightsFileError, ValueError) as exc:  # unknown model, bad file, device not present
        raise Failed(str(exc), 2) from exc
    except OSError as exc:  # e.g. the torch hub cache is not writable
        raise Failed(f"cannot load the model: {exc}", 2) from exc
    except (RuntimeError, MemoryError) as exc:  # e.g. no memory left on the GPU for it
        from vitexplorer.core.explain.analysis import failure_message

        raise Failed(f"cannot load the model: {failure_message(exc)}", 2) from exc
    finally:
        if bar is not None:
            bar.close()
    for note in model.spec.notes:  # random weights, a model's missing preprocessing config
        error(f"warning: {note}")
    return model


class ProgressBar:
    """A one-line download progress bar, redrawn in place with ``\\r``, under ``header``
    (written on a line of its own when the first progress arrives)."""

    def __init__(self, stream: IO[str], width: int = 30, header: str = "") -> None:
        self.stream = stream
        self.width = width
        self.header = header
        self.shown: tuple[int, float] | None = None  # (percent, time) last drawn

    def __call__(self, done: int, total: int) -> None:
        if self.header:
            self.stream.write(self.header + "\n")
            self.header = ""
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
    natural = [_fitting_stem(Path(p).stem) or "image" for p in paths]
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


# the longest name an output adds to a stem (".attention_all.npy", ".relevance.json", a "-12"
# for a repeated stem) must still fit in a file name (255 bytes on common file systems)
STEM_BYTES = 255 - 32


def _fitting_stem(stem: str) -> str:
    """``stem`` cut to :data:`STEM_BYTES` bytes (as the file system counts them), so that every
    output name made from it can be created (bytes that are not UTF-8 kept as they are)."""
    raw = stem.encode("utf-8", "surrogateescape")
    if len(raw) <= STEM_BYTES:
        return stem
    return raw[:STEM_BYTES].decode("utf-8", "surrogateescape")


DIVERGING = "CET-D1"  # the table for differences (core.colour_tables.DIVERGING)


def colour_table(name: str = "inferno") -> np.ndarray:
    """pyqtgraph's colour map ``name`` (inferno, or :data:`DIVERGING` for differences) as a
    (256, 3) uint8 table: exact constants (:mod:`vitexplorer.core.render.colour_tables`), so the
    command line never imports Qt."""
    from vitexplorer.core.render.colour_tables import colour_table as table

    return table(name)


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class CtrlCCancels:
    """While entered, the first Ctrl-C asks the engine to stop after the current batch (or
    ``unit``), so it ends cleanly; a second one stops at once. Callable: the cancel check.
    """

    def __init__(self, report: Any, unit: str = "batch") -> None:
        self.report = report  # anything with a note(text) method
        self.unit = unit  # what the engine finishes before it stops
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
            # after a Ctrl-C, the save and the way out (libraries' exit hooks too) must not be
            # cut short by another one: ignored from now on (main() puts the handler back when
            # it is called as a function rather than as the program)
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.requested else self.previous)
            self.installed = False

    def _interrupted(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.report.note(f"stopping after the current {self.unit}; Ctrl-C again to stop at once")


def expand_images(inputs: Sequence[str], allow_empty: bool = False) -> list[Path]:
    """Image files from files and folders (a folder: every image file under it, sorted; one
    without any is refused in a line unless ``allow_empty``).

    A path that exists but is no folder is kept as given, whatever it is (a pipe, a device, a
    looping link): the image reader refuses it with its reason, and the other inputs go on."""
    found: list[Path] = []
    for text in inputs:
        path = expand_user(text)
        if path.is_dir():
            try:
                inside = image_files(path, recursive=True)
            except OSError as exc:
                raise Failed(f"cannot list the folder {path}: {exc.strerror or exc}", 2) from exc
            if not inside and not allow_empty:
                raise Failed(f"{path} holds no image files", 2)
            found.extend(inside)
        elif os.path.lexists(path):
            found.append(path)
        else:
            raise Failed(f"{path}: no such file or folder", 2)
    return found


class CountProgress:
    """``label done/total`` on stderr: redrawn in place on a terminal, else every tenth."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.live = is_terminal(self.stream)
        self.shown = -1

    def __call__(self, done: int) -> None:
        step = done * 10 // max(self.total, 1)
        if self.live:
            self.stream.write(f"\r{self.label} {done}/{self.total}")
        elif step != self.shown or done == self.total:
            self.stream.write(f"{self.label} {done}/{self.total}\n")
        self.shown = step
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def add_model_arguments(parser: argparse.ArgumentParser, pair: bool = False) -> None:
    """--model, --weights, --device and --out DIR, as every command that reads images has them.
    With ``pair`` (``compare``) --model is given twice, model A then model B, and --weights
    once (for both) or twice (A's, then B's): both come back as lists."""
    weights_help = (
        "'default': ImageNet weights for torchvision ViTs (downloaded once into the torch "
        "hub cache), the trained ones for demo and a checkpoint --model, random for "
        "small_vit; 'none': random weights, for every model (demo and a checkpoint: the same "
        "architecture, untrained); or a local weights file (.pth or .safetensors)."
    )
    if pair:
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="NAME",
            help=f"given twice: model A (the base, to compare a fine-tune with it), then model "
            f"B; each "
            f"{model_choices_help()} (.safetensors)",
        )
        parser.add_argument(
            "--weights",
            action="append",
            default=[],
            metavar="default|none|PATH",
            help=f"{weights_help} Once: for both models; twice: A's, then B's. (default: default)",
        )
    else:
        parser.add_argument(
            "--model",
            required=True,
            metavar="NAME",
            help=f"{model_choices_help()} (.safetensors)",
        )
        parser.add_argument(
            "--weights",
            default="default",
            metavar="default|none|PATH",
            help=f"{weights_help} (default: default)",
        )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=device_choice,
        metavar="auto|cpu|cuda|mps",
        help="where the model runs; auto picks CUDA, then MPS, then the CPU (default: auto)",
    )


def add_aspect_argument(parser: argparse.ArgumentParser) -> None:
    """--aspect crop|keep, for the commands that analyse images."""
    parser.add_argument(
        "--aspect",
        choices=("crop", "keep"),
        default="crop",
        help="crop: the model's own preprocessing (resize, centre crop); keep: the whole image at "
        "its own aspect ratio, resized to a patch grid of about as many patches in its "
        "proportions (the position embeddings are resized to that grid) (default: crop)",
    )


def output_folder(path: Path) -> Path:
    """``path`` created if missing, or Failed (status 2) saying why it cannot be."""
    path = expand_user(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(f"cannot create the output folder {path}: {exc.strerror or exc}", 2) from exc
    return path


Named = Sequence[tuple[str, "str | os.PathLike[str] | None"]]  # (what the user called it, path)


def check_outputs(outputs: Named, inputs: Named = (), datasets: Named = ()) -> None:
    """Failed (status 2), before any work, when an output names an input, another output of the
    run, or a place inside a dataset folder being read, links resolved. A character device
    (``/dev/null``) is written as a stream and may be named more than once."""
    given = [(label, expand_user(p)) for label, p in outputs if p is not None]
    read = [(label, expand_user(p)) for label, p in inputs if p is not None]
    read = [(label, path) for label, path in read if os.path.lexists(path)]  # names, not files
    for index, (label, path) in enumerate(given):
        if _is_stream_device(path):
            continue
        for other_label, other in given[:index] + read:
            if _same_file(path, other):
                raise Failed(
                    f"{label} {path} is the same file as {other_label} {other}; "
                    f"it would be overwritten: choose another name",
                    2,
                )
        for data_label, folder in datasets:
            if folder is None or not expand_user(folder).is_dir():
                continue
            inside = os.path.realpath(expand_user(folder))
            where = os.path.realpath(path)
            if where == inside or where.startswith(inside.rstrip(os.sep) + os.sep):
                raise Failed(
                    f"{label} {path} is inside {data_label} {folder}, which this run reads; "
                    f"write it elsewhere",
                    2,
                )


def check_output_folder(
    out: Path, inputs: Sequence[str], names: Sequence[str] = (), models: Named = ()
) -> None:
    """:func:`check_outputs` for a command writing the files ``names`` (and more) into the
    folder ``out`` from the image files and folders ``inputs`` and the model files ``models``:
    ``out`` may not be an input folder or lie inside one (the next run would read its outputs
    as images), and no named output may be an input."""
    outputs = [("--out", out)] + [("--out", expand_user(out) / name) for name in names]
    folders = [("the input folder", Path(p)) for p in inputs if expand_user(p).is_dir()]
    files = [("the input", Path(p)) for p in inputs if not expand_user(p).is_dir()]
    check_outputs(outputs, [*files, *models], folders)


def check_stem_outputs(out: Path, sources: Sequence[str | os.PathLike[str]]) -> None:
    """Failed (status 2), before any work, when an input lies in the folder ``out`` under a
    name that the outputs named after another input (``STEM.*``, :func:`unique_stems`) could
    take: ``cat.attention.png`` beside ``cat.png``, analysed into their own folder."""
    folder = os.path.realpath(expand_user(out))
    inside = [p for p in sources if os.path.realpath(expand_user(p).parent) == folder]
    if not inside:
        return
    stems = unique_stems(sources)
    for path in inside:
        name = Path(path).name.casefold()
        for source, stem in zip(sources, stems, strict=True):
            if name.startswith(stem.casefold() + ".") and not _same_file(
                expand_user(path), expand_user(source)
            ):
                raise Failed(
                    f"the input {path} lies in --out {out}, where the outputs named after "
                    f"{source} ({stem}.*) could replace it; move it or choose another --out",
                    2,
                )


def model_inputs(options: argparse.Namespace) -> list[tuple[str, Any]]:
    """``--model`` and ``--weights`` as inputs for :func:`check_outputs` (files when they are
    paths; names such as 'default' are skipped there, as no file)."""
    return [("--model", options.model), ("--weights", getattr(options, "weights", None))]


def dataset_folders(source: str, root: Path | None) -> list[tuple[str, Path]]:
    """The folders a training command reads its images from: ``--data`` when it is a folder,
    the unpacked CIFAR-10 inside ``--data-root`` (or its default) for ``cifar10``."""
    if source != "cifar10":
        return [("the dataset --data", expand_user(source))]
    if root is None:
        from vitexplorer.core.models.download import default_data_root

        root = default_data_root()
    return [("the dataset CIFAR-10 in", expand_user(root) / "cifar-10-batches-py")]


def _is_stream_device(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once links are resolved, or (both
    existing) the same inode, as hard links and case-insensitive file systems give."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
