"""Wall time of ``vitexplorer analyze`` over a folder of photos, as a user runs it.

    python benchmarks/analyze_throughput.py [FOLDER] [--model vit_b_16] [--device cpu]

FOLDER defaults to ../shared/data/images (the project's photographs) or the bundled sample.
Random weights: the time does not depend on the weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUFFIXES = {".png", ".jpg", ".jpeg"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    folder = Path(args.folder) if args.folder else root.parent / "shared" / "data" / "images"
    images = sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in SUFFIXES)
    if not images:
        images = [str(root / "vitexplorer" / "resources" / "sample.png")]
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "vitexplorer",
            "analyze",
            *images,
            "--model",
            args.model,
            "--weights",
            "none",
            "--device",
            args.device,
            "--out",
            out,
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        written = len(list(Path(out).glob("*.attention.npy")))
    print(f"vitexplorer analyze: {len(images)} images, {args.model}, {args.device}")
    print(
        f"wall time {seconds:.1f} s in all (process start, torch import and model build "
        f"included), {written} attention files written"
    )


if __name__ == "__main__":
    main()
