"""``vitexplorer methods``: the method catalogue as a table (or JSON), generated from the
descriptions (:func:`~vitexplorer.core.explain.method.catalogue`), so a new method file shows up
here with no change. Torch-free: it reads the descriptions only."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import textwrap
from typing import Any

from vitexplorer.cli.common import PROG, terminal_text

HEADINGS = ("method", "paper", "explains", "cost", "classifier")


def methods_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} methods",
        description="List the explanation methods: each one's name (what --method takes), its "
        "paper (authors and year), what its map explains, its cost in forward passes beyond "
        "the analysis's one (a backward pass counts as one) and whether it needs a classifier "
        "(a model with a class score to explain). The table fits the terminal's width.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the catalogue as JSON instead (one object per method, with its full paper "
        "reference, its options and their flags), for scripts",
    )
    return parser


def run_methods(options: argparse.Namespace) -> int:
    from vitexplorer.core.explain.method import catalogue

    methods = catalogue()
    if options.json:
        print(json.dumps([method_facts(m) for m in methods], indent=2, ensure_ascii=False))
        return 0
    width = max(60, shutil.get_terminal_size((80, 24)).columns)
    print(terminal_table([table_row(m) for m in methods], width))
    return 0


def authors(paper: str, year: int | None = None, short: bool = False) -> str:
    """The authors and year of a paper reference ("Chefer, Gur and Wolf, Generic ..., ICCV
    2021" gives "Chefer, Gur and Wolf 2021"); "" when there is none. ``short``: more than two
    authors as the first "et al." ("Achtibat et al. 2024"), as a table cites them."""
    if not paper:
        return ""
    pieces = [piece.strip() for piece in paper.split(",")]
    names = pieces[:1]
    for index, piece in enumerate(pieces):  # up to the piece naming the last author
        if " and " in f" {piece} " or "et al" in piece:
            names = pieces[: index + 1]
            break
    if short and len(names) > 1 and not any("et al" in name for name in names):
        names = [f"{names[0]} et al."]
    found = re.findall(r"\b(?:19|20)\d\d\b", paper)
    when = str(year) if year is not None else (found[-1] if found else "")
    return " ".join(part for part in (", ".join(names), when) if part)


def explains(method: Any) -> str:
    """What the map explains: the description's own words, else words from what it is."""
    if method.explains:
        return str(method.explains)
    where = "per pixel" if method.pixels else "per patch"
    if method.class_specific:
        return f"a class score, {where}"
    if method.only_cls or not method.per_token:
        return f"the CLS token, {where}"
    return f"any token's attention, {where}"


def table_row(method: Any) -> tuple[str, ...]:
    classifier = "needed" if method.requires_classifier else "no"
    paper = authors(method.paper, method.year, short=True) or "-"
    return (method.name, paper, explains(method), method.cost_words(), classifier)


def method_facts(method: Any) -> dict[str, Any]:
    """One method for ``--json``: its description's words and flags, no functions."""
    from vitexplorer.core.explain.method import OPTION

    return {
        "name": method.name,
        "label": method.label,
        "summary": method.summary,
        "paper": method.paper or None,
        "authors": authors(method.paper, method.year) or None,
        "year": method.year,
        "explains": explains(method),
        "cost": method.cost_words(),
        "passes": method.cost,
        "passes_per": method.cost_per,
        "needs_classifier": method.requires_classifier,
        "needs_model": method.needs_model,
        "needs_backward": method.needs_backward,
        "class_specific": method.class_specific,
        "pixels": method.pixels,
        "signed": method.signed,  # drawn on a diverging scale symmetric around zero
        "options": [
            {"name": name, "flag": OPTION[name].flag, "default": OPTION[name].default}
            for name in method.options
            if OPTION[name].flag is not None
        ],
    }


def terminal_table(rows: list[tuple[str, ...]], width: int = 80) -> str:
    """``rows`` under :data:`HEADINGS`, each cell wrapped in its column so that no line is
    longer than ``width``: the name and classifier columns keep their words whole; the paper,
    explains and cost columns share what is left."""
    rows = [tuple(terminal_text(cell) for cell in row) for row in rows]
    gap = 2
    fixed = [
        max(len(HEADINGS[i]), *(len(row[i]) for row in rows)) if rows else len(HEADINGS[i])
        for i in (0, 4)
    ]
    left = width - sum(fixed) - gap * (len(HEADINGS) - 1)
    wanted = [
        max([len(HEADINGS[i])] + [len(row[i]) for row in rows]) for i in (1, 2, 3)
    ]  # the widest cell of each shared column
    shared = _share(wanted, max(left, 3 * 8))
    widths = [fixed[0], *shared, fixed[1]]
    lines = [_line(HEADINGS, widths, gap), _line(tuple("-" * w for w in widths), widths, gap)]
    for row in rows:
        cells = [
            textwrap.wrap(cell, w, break_on_hyphens=False) or [""]
            for cell, w in zip(row, widths, strict=True)
        ]
        for depth in range(max(len(cell) for cell in cells)):
            parts = tuple(cell[depth] if depth < len(cell) else "" for cell in cells)
            lines.append(_line(parts, widths, gap))
    return "\n".join(lines)


def _share(wanted: list[int], room: int) -> list[int]:
    """Column widths that fit ``room``: each its widest cell when all fit, else the room split
    so that narrow columns keep their width and the wide ones share the rest evenly."""
    if sum(wanted) <= room:
        return wanted
    widths = [0] * len(wanted)
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    for place, index in enumerate(order):
        even = room // (len(wanted) - place)
        widths[index] = min(wanted[index], even)
        room -= widths[index]
    return widths


def _line(cells: tuple[str, ...], widths: list[int], gap: int) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
    return (" " * gap).join(padded).rstrip()
