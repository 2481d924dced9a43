"""Fitting a long title into a figure's width: ``core.figure.fit`` (bisection) against the old
linear cut (one character dropped and the text measured again, each time), interleaved in one
process (issue 22).

    python benchmarks/fit_title.py [--chars 10000] [--width 510] [--repeats 1]

The title is ``--chars`` characters of a probe-like name, fitted to ``--width`` pixels (a
figure's text width) in the title's face (18 px). Both ways must give the same text; the figure
is the median time of each (old and new alternating, each going first in turn) and their ratio;
the first line names the vitexplorer package measured (PYTHONPATH=. for a checkout).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from vitexplorer.core.render.figure import TITLE_SIZE, fit, font, text_width


def linear_fit(draw: Any, text: str, face: Any, width: int) -> str:
    """``core.figure.fit`` before issue 22."""
    if text_width(draw, text, face) <= width:
        return text
    while text and text_width(draw, text + "…", face) > width:
        text = text[:-1]
    return text + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=510)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    face = font(TITLE_SIZE)
    title = ("probe_cat_0042.png " * (args.chars // 19 + 1))[: args.chars].replace(" ", "_")
    times: dict[str, list[float]] = {"linear": [], "bisection": []}
    ways = {"linear": linear_fit, "bisection": fit}
    results = {}
    for repeat in range(args.repeats):
        order = ["linear", "bisection"] if repeat % 2 == 0 else ["bisection", "linear"]
        for name in order:
            start = time.perf_counter()
            results[name] = ways[name](draw, title, face, args.width)
            times[name].append(time.perf_counter() - start)
    if results["linear"] != results["bisection"]:
        raise SystemExit("the two ways gave different text")
    old, new = (statistics.median(times[k]) for k in ("linear", "bisection"))
    import vitexplorer

    print(f"vitexplorer from {Path(vitexplorer.__file__).parent}")
    print(
        f"{args.chars:,}-character title fitted to {args.width} px ({len(title)} -> "
        f"{len(results['bisection'])} characters), medians of {args.repeats}:"
    )
    print(f"  linear (old)   {old * 1e3:10.1f} ms")
    print(f"  bisection      {new * 1e3:10.3f} ms")
    print(f"  old / new      {old / new:10.0f}x")


if __name__ == "__main__":
    main()
