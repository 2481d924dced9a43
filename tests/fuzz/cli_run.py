"""One hostile input through the command line, as the fuzz suite runs it: ``main(args)`` in
this process, with what it printed and whether it crashed."""

from __future__ import annotations

import traceback
from typing import NamedTuple

from vitexplorer.cli import main


class CliRun(NamedTuple):
    status: int | None  # None when main() raised
    out: str
    lines: list[str]  # stderr's non-blank lines
    crashed: bool  # an exception out of main(), or a traceback on stderr


def run_cli(args: list[str], capsys, drop_notes: bool = False) -> CliRun:
    """``vitexplorer ARGS`` run once; ``drop_notes`` leaves out stderr's ``note:`` lines (a
    refusal is then the one line left)."""
    try:
        status = main(args)
    except BaseException:  # what the suite looks for
        traceback.print_exc()
        captured = capsys.readouterr()
        return CliRun(None, captured.out, captured.err.splitlines(), True)
    captured = capsys.readouterr()
    lines = [
        line
        for line in captured.err.splitlines()
        if line.strip() and not (drop_notes and "note:" in line)
    ]
    return CliRun(status, captured.out, lines, "Traceback" in captured.err)
