"""The ``vitexplorer`` command: the app, ``analyze`` to write attention maps without a window, or
``finetune`` to give a ViT a new head for a dataset and save it as a checkpoint.

Nothing heavy is imported at module level (no torch, no Qt), so ``vitexplorer --help`` is instant;
the commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vitexplorer import __version__
from vitexplorer.cli.analyze import analyze_parser, run_analyze, write_outputs
from vitexplorer.cli.common import (
    MODEL_NAMES,
    PROG,
    Failed,
    ProgressBar,
    colour_table,
    error,
    unique_stems,
    write_atomic,
)
from vitexplorer.cli.finetune import (
    FINETUNE_DEFAULTS,
    FinetuneReport,
    finetune_parser,
    run_finetune,
)
from vitexplorer.cli.stats import run_stats, stats_parser

__all__ = [
    "FINETUNE_DEFAULTS",
    "MODEL_NAMES",
    "FinetuneReport",
    "ProgressBar",
    "analyze_parser",
    "colour_table",
    "finetune_parser",
    "main",
    "unique_stems",
    "write_atomic",
    "write_outputs",
]

COMMANDS = ("analyze", "finetune", "stats")
_GUI_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "analyze":
            return run_analyze(analyze_parser().parse_args(args[1:]))
        if args and args[0] == "finetune":
            return run_finetune(finetune_parser().parse_args(args[1:]))
        if args and args[0] == "stats":
            return run_stats(stats_parser().parse_args(args[1:]))
        options = _gui_parser().parse_args(args)
        return _run_gui(options.images)
    except SystemExit as exc:  # argparse after --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Failed as exc:
        error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        error("interrupted")
        return 130


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
