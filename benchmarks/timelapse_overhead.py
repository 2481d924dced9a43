"""What the time-lapse costs a training run: the same run with and without probes, same seed, in
one process, interleaved (without, with, without, with...), so that a noisy machine slows both
alike.

    python benchmarks/timelapse_overhead.py [--data ../shared/data/cifar10] [--repeats 2]
                                            [--runs scratch,head]
    python benchmarks/timelapse_overhead.py --quick --runs scratch   # the tests' smoke run

Two runs on CIFAR-10 (a folder of class subfolders with train/ and test/ inside):

- from scratch: the demo's architecture (32 px, 4 px patches, width 192, 6 blocks, 3 heads),
  200 images per class, 3 epochs, batch 128; every block trains, so each frame runs the whole
  model on the probes;
- fine-tune, head only: torchvision's ViT-B/32 (random weights: none can be downloaded here) at
  224 px, 50 images per class, 3 epochs; its frozen part's outputs are cached, which makes an
  epoch cost almost nothing, the case where a frame's cost would show most. The probes' frozen
  part runs once, for the first frame.

The time is that of the run from its Started event (the images loaded) to its Finished event:
training, validation, the frames and the test pass. Two figures: the ratio of the medians, with
10 probes (the default) against none, which on a shared machine carries the machine's noise; and
the frames' own share, the seconds spent capturing them (timed around each capture) over the
whole run's, which does not. The goal is at most 5% (1.05x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.vit import SmallViTConfig
from vitexplorer.core.training import timelapse
from vitexplorer.core.training.config import FinetuneConfig, TrainConfig
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.engine import finetune
from vitexplorer.core.training.events import Snapshot, Started

DEMO_SHAPE = SmallViTConfig(
    image_size=32, patch_size=4, width=192, depth=6, heads=3, mlp_ratio=2.0, num_classes=10,
    drop_path=0.1,
)  # fmt: skip


QUICK = [False]  # --quick: a tiny model, 4 images per class, 1 epoch (a smoke run)
TINY_SHAPE = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=10)


def scratch(probes: int) -> tuple[object, object]:
    torch.manual_seed(0)
    shape = TINY_SHAPE if QUICK[0] else DEMO_SHAPE
    model = load_model("small_vit", "none", "cpu", small_config=shape)
    sizes = (4, 2, 1) if QUICK[0] else (200, 50, 3)  # per class, test per class, epochs
    per_class, test_per_class, epochs = sizes
    config = TrainConfig(per_class=per_class, test_per_class=test_per_class, epochs=epochs,
                         warmup_epochs=0.3, mixed_precision=False, probes=probes)  # fmt: skip
    return model, config


def head_only(probes: int) -> tuple[object, object]:
    torch.manual_seed(0)
    model = load_model("vit_b_32", "none", "cpu")
    config = FinetuneConfig(per_class=50, test_per_class=20, epochs=3, freeze="head",
                            mixed_precision=False, probes=probes)  # fmt: skip
    return model, config


CAPTURING = [0.0]  # seconds spent in ProbeRecorder.capture during the present run
_capture = timelapse.ProbeRecorder.capture


def _timed_capture(self, epoch):
    started = time.perf_counter()
    try:
        return _capture(self, epoch)
    finally:
        CAPTURING[0] += time.perf_counter() - started


timelapse.ProbeRecorder.capture = _timed_capture


def timed(build, probes: int, data: Path) -> tuple[float, int]:
    """Seconds from Started to Finished, and the frames captured."""
    CAPTURING[0] = 0.0
    model, config = build(probes)
    dataset = open_dataset(data)
    started = None
    frames = 0
    for event in finetune(model, dataset, config):
        if isinstance(event, Started):
            started = time.perf_counter()
        elif isinstance(event, Snapshot):
            frames += 1
    assert started is not None
    return time.perf_counter() - started, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", default="scratch,head", help="which: scratch, head or both")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the tests' smoke run)")
    args = parser.parse_args()
    QUICK[0] = args.quick
    runs = {"scratch": ("from scratch", scratch), "head": ("fine-tune, head only", head_only)}
    for name, build in (runs[r] for r in args.runs.split(",")):
        times: dict[int, list[float]] = {0: [], 10: []}
        shares = []
        for _ in range(args.repeats):
            for probes in (0, 10):
                seconds, frames = timed(build, probes, args.data)
                times[probes].append(seconds)
                if probes:
                    shares.append(CAPTURING[0] / (seconds - CAPTURING[0]))
                print(f"  {name}: {probes:2d} probes, {frames} frames: {seconds:.2f} s "
                      f"({CAPTURING[0]:.2f} s capturing them)", flush=True)  # fmt: skip
        without, with_ = statistics.median(times[0]), statistics.median(times[10])
        share = 100 * statistics.median(shares)
        print(f"{name}: {without:.2f} s without probes, {with_:.2f} s with 10: "
              f"{with_ / without:.3f}x; the frames' own time {share:.2f}% of the rest of the "
              f"run", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
