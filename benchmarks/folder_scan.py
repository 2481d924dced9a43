"""Listing a class-folder dataset's images: the one scanner (``core.folders``, an ``os.scandir``
per folder, no ``stat`` per plain file) against what ``datasets._scan`` did before (``rglob``,
then the suffix, ``is_file`` and the name of every path), interleaved in one process (issue 14).

    python benchmarks/folder_scan.py [--files 60000] [--classes 10] [--repeats 7] [FOLDER]

Without FOLDER, a temporary folder gets ``--classes`` class folders holding ``--files`` empty
``.png`` files in all (the scan never opens a file, so empty ones serve). Both ways run the
dataset reader's scan (every class folder, its files sorted as text, the labels); the result is
checked to be the same list. One untimed pass of each first: every figure is with the folder's
entries in the kernel's cache (warm), as on any scan after the first; a first scan after a
reboot reads the disk and takes longer both ways. The figure is the median of the repeats
(old and new alternating, each going first in turn) and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vitexplorer.core.io.folders import IMAGE_SUFFIXES, subfolders
from vitexplorer.core.training.datasets import DatasetError, LabelledImages, _scan


def old_scan(path: Path, class_names: list[str]) -> LabelledImages:
    """``datasets._scan`` before the one scanner."""
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(class_names):
        folder = path / name
        files = sorted(
            str(f)
            for f in (folder.rglob("*") if folder.is_dir() else [])
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
        )
        if not files:
            empty.append(name)
        paths += files
        labels += [label] * len(files)
    if empty:
        raise DatasetError(f"{path}: no images in the class folder(s) {', '.join(empty)}")
    return LabelledImages(np.asarray(labels, dtype=np.int64), paths=paths)


def make_tree(root: Path, files: int, classes: int) -> None:
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(c, files, classes):
            (folder / f"img{i:06d}.png").write_bytes(b"")


def timed(scan, root: Path, classes: list[str]) -> tuple[float, LabelledImages]:
    started = time.perf_counter()
    result = scan(root, classes)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--files", type=int, default=60_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.folder) if args.folder else Path(tmp)
        if not args.folder:
            make_tree(root, args.files, args.classes)
        classes = [p.name for p in subfolders(root)]
        ways = {"before": old_scan, "now": lambda path, names: _scan(path, names, str(path))}
        results = {name: scan(root, classes) for name, scan in ways.items()}  # warms the cache
        assert results["before"].paths == results["now"].paths, "the two ways disagree"
        assert np.array_equal(results["before"].labels, results["now"].labels)
        times: dict[str, list[float]] = {name: [] for name in ways}
        for repeat in range(args.repeats):
            order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
            for name in order:
                times[name].append(timed(ways[name], root, classes)[0])
        before, now = (statistics.median(times[k]) for k in ways)
        count = len(results["now"].paths)
        print(f"{count:,} files in {len(classes)} class folders (warm cache, median of "
              f"{args.repeats}): rglob + is_file {before:.3f} s, os.scandir {now:.3f} s: "
              f"{before / now:.1f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
