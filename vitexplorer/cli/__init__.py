"""The ``vitexplorer`` command: the app, ``analyze`` to write attention maps without a window,
``compare`` to put two models side by side, ``finetune`` to give a ViT a new head for a dataset
and save it as a checkpoint, ``train`` to train the small ViT from scratch, or ``timelapse`` to
write out the attention a run recorded through training.

Nothing heavy is imported at module level (no torch, no Qt), so ``vitexplorer --help`` is instant;
the commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitexplorer import __version__
from vitexplorer.cli.common import PROG, Failed, error
from vitexplorer.core.io.paths import UserPathError

_GUI_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph")
# each command: its module (imported only when the command runs) and its parser and runner
_COMMANDS = {
    "analyze": ("analyze", "analyze_parser", "run_analyze"),
    "finetune": ("finetune", "finetune_parser", "run_finetune"),
    "stats": ("stats", "stats_parser", "run_stats"),
    "sanity": ("sanity", "sanity_parser", "run_sanity"),
    "faithfulness": ("checks", "faithfulness_parser", "run_faithfulness"),
    "train": ("train", "train_parser", "run_train"),
    "compare": ("compare", "compare_parser", "run_compare"),
    "timelapse": ("timelapse", "timelapse_parser", "run_timelapse"),
    "methods": ("catalogue", "methods_parser", "run_methods"),
}
COMMANDS = tuple(_COMMANDS)


def _command(name: str) -> tuple[Any, Any]:
    """The parser factory and the runner of command ``name``, its module imported now."""
    module, parser, run = _COMMANDS[name]
    found = importlib.import_module(f"{__name__}.{module}")
    return getattr(found, parser), getattr(found, run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    _printable_streams()
    handler = _interrupt_handler()
    try:
        return _main(args)
    finally:
        # as the program (no argv), an interrupted run keeps further Ctrl-Cs ignored until the
        # process ends, so no exit hook dies half way; as a function, the caller's way is back
        if argv is not None and handler is not None:
            signal.signal(signal.SIGINT, handler)


def _interrupt_handler() -> Any:
    """The SIGINT handler now, or None off the main thread (where it cannot be changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


def _ignore_interrupts() -> None:
    """Further Ctrl-Cs ignored: the run is already stopping."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main(args: list[str]) -> int:
    try:
        if args and args[0] in _COMMANDS:
            factory, run = _command(args[0])
            parser = _with_dash_hint(factory(), args[1:])
            return run(parser.parse_args(args[1:]))
        options = _with_dash_hint(_gui_parser(), args).parse_args(args)
        return _run_gui(options.images)
    except SystemExit as exc:  # argparse after --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Failed as exc:
        error(str(exc))
        return exc.status
    except UserPathError as exc:  # '~nouser/...' in any path option or input
        error(str(exc))
        return 2
    except KeyboardInterrupt:
        _ignore_interrupts()
        sys.stderr.write("\n")
        error("interrupted")
        return 130
    except BrokenPipeError:  # the reader of stdout went away ('| head'): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit is quiet
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    except Exception as exc:
        if not _is_input_error(exc):
            raise
        error(str(exc))  # a bad model, dataset or file that a check did not catch: still 2
        return 2


# the exceptions that mean a bad input (a model, weights, dataset or image file, a setting),
# never a bug: exit 2 like every refusal. Looked up among the modules already imported, so
# that the command line imports no torch to tell them apart.
_INPUT_ERRORS = (
    ("vitexplorer.core.models.checkpoint", "WeightsFileError"),
    ("vitexplorer.core.models.families.base", "UnsupportedModel"),
    ("vitexplorer.core.models.loading", "WeightsUnavailableError"),
    ("vitexplorer.core.training.datasets", "DatasetError"),
    ("vitexplorer.core.training.pixel_csv", "PixelCSVError"),
    ("vitexplorer.core.io.images", "ImageLoadError"),
    ("vitexplorer.core.training.timelapse", "TimeLapseError"),
    ("vitexplorer.core.training.config", "FreezePolicyError"),
)


def _is_input_error(exc: BaseException) -> bool:
    for module, name in _INPUT_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


def _with_dash_hint(parser: argparse.ArgumentParser, args: Sequence[str]) -> Any:
    """``parser``, whose usage error also says how to pass a file whose name starts with '-'
    when one of ``args`` is such a file (argparse takes ``-x.png`` for an option)."""
    named = [a for a in args if len(a) > 1 and a.startswith("-") and os.path.lexists(a)]
    if not named:
        return parser
    report = parser.error

    positional = any(not action.option_strings for action in parser._actions)

    def error(message: str) -> Any:
        name = named[0]
        option = re.match(r"argument (--[\w-]+)", message)
        if option and "expected one argument" in message:
            how = f"write {option[1]} ./{name} or {option[1]}={name}"
        elif positional:
            how = f"put -- before it or write ./{name}"
        else:
            how = f"write it as ./{name} after the option it is for"
        return report(
            f"{message}; {name} is a file: to pass a file whose name starts with '-', {how}"
        )

    parser.error = error  # type: ignore[method-assign]
    return parser


def _printable_streams() -> None:
    """File names that are not valid in the locale's encoding (bytes that are not UTF-8, kept by
    Python as surrogates) are printed as escapes instead of stopping the command."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change now: leave it
                pass


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] [IMAGE ...]\n"
        f"       {PROG} analyze IMAGE_OR_FOLDER ... --model NAME --out DIR [--method M ...] "
        f"[options]\n"
        f"       {PROG} compare IMAGE_OR_FOLDER ... --model A --model B --out DIR [--method M ...] "
        f"[options]\n"
        f"       {PROG} stats IMAGE_OR_FOLDER ... --model NAME --out DIR [options]\n"
        f"       {PROG} sanity IMAGE_OR_FOLDER ... --model NAME --method M --out DIR [options]\n"
        f"       {PROG} faithfulness IMAGE_OR_FOLDER ... --model NAME --method M --out DIR\n"
        f"       {PROG} finetune --model NAME --data cifar10|DIR --out MODEL.safetensors "
        f"[options]\n"
        f"       {PROG} train --data cifar10|DIR --out MODEL.safetensors [options]\n"
        f"       {PROG} timelapse MODEL.safetensors --out DIR [options]\n"
        f"       {PROG} methods [--json]",
        description="See inside Vision Transformers: predictions and every layer's and head's\n"
        "attention, patch by patch. Without a command, opens the app with the given images.",
        epilog="commands (each has its own -h):\n"
        "  analyze       attention maps, predictions and explanation maps (attention, rollout,\n"
        "                relevance) for images, without opening a window\n"
        "  compare       two models side by side (before and after fine-tuning, say): both\n"
        "                maps, their difference and how each head changed\n"
        "  stats         per-head mean attention distance, entropy and prefix share over images,\n"
        "                with the distance-against-depth plot of the ViT paper\n"
        "  sanity        does a method's map change when the model's weights are randomised?\n"
        "  faithfulness  does removing the patches a method calls relevant change the prediction?\n"
        "  finetune      train a new head (and optionally the last blocks) on a dataset and save\n"
        "                the model\n"
        "  train         train vitexplorer's small ViT from scratch at the images' size (32 px\n"
        "                for CIFAR-10) and save it\n"
        "  timelapse     the probe images' attention at every epoch of the run that saved a\n"
        "                checkpoint: GIFs, PNGs, .npy maps and the heads' statistics\n"
        "  methods       the explanation methods: paper, what each explains, its cost and\n"
        "                whether it needs a classifier (--json for scripts)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images to open in the app")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


# --- the app -------------------------------------------------------------------------------------


def _run_gui(images: list[str]) -> int:
    if images and images[0] not in ("-", "") and _looks_like_a_command(images[0]):
        raise Failed(
            f"{images[0]!r} is neither a command ({', '.join(COMMANDS)}) nor an existing file; "
            f"see '{PROG} --help'",
            2,
        )
    try:
        from vitexplorer.gui.app import run_gui
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _GUI_PACKAGES:
            raise
        raise Failed(
            f"the app cannot start: {exc}. Install PySide6-Essentials and pyqtgraph, or use "
            f"'{PROG} analyze', which needs no window",
            1,
        ) from exc
    return run_gui(images)


def _looks_like_a_command(arg: str) -> bool:
    """A bare word such as ``analyse`` that is no file: almost certainly a mistyped command."""
    path = Path(arg)
    return not path.suffix and os.sep not in arg and "/" not in arg and not path.exists()
