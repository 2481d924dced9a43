"""How long it takes to load a class-balanced subset from an image folder, decoding in one
thread against the default thread pool (threads, not processes: the GUI holds a QApplication,
which must never be forked).

    python benchmarks/subset_loading.py [--data ../shared/data/cifar10] [--per-class 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vitexplorer.core.training import datasets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
    parser.add_argument("--data", default=str(default))
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"no dataset folder at {args.data}", file=sys.stderr)
        return 1
    splits = datasets.open_dataset(args.data)
    n = (args.per_class + args.test_per_class) * splits.num_classes
    print(f"{splits.name}: {n} images, {args.per_class} + {args.test_per_class} per class")
    default_threads = datasets.DECODE_THREADS

    def load(seed: int) -> None:
        datasets.load_subsets(
            splits, per_class=args.per_class, test_per_class=args.test_per_class,
            val_fraction=0.1, seed=seed, image_size=224,
        )  # fmt: skip

    for seed in range(args.repeats):  # read every file once, so both settings find them cached
        load(seed)
    for threads in (1, default_threads):
        datasets.DECODE_THREADS = threads
        times = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            load(repeat)
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"{threads} thread(s): best {best:.2f} s of {args.repeats} ({n / best:.0f} images/s)")
    return 0


if __name__ == "__main__":
    status = main() or 0
    # The figures are printed; Python's teardown of the Qt objects this script drove without
    # an event loop of its own crashed such scripts now and then (SIGSEGV after the last line),
    # so it ends here, as the app does when a thread is left (see gui_latency.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
