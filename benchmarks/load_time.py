"""Loading a checkpoint: built on the meta device and given the file's tensors (vitexplorer's
``models.build``), against building with random initialisation and copying the weights in (what
it did before), per model size, interleaved in one process.

    python benchmarks/load_time.py [--models vit_b_16,vit_l_16] [--repeats 3]

Each model is saved once with random weights as a vitexplorer checkpoint in a temporary folder;
both ways then read the same file (``read_weights``) and build from it; the figure is the median
of the repeats and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vitexplorer.core import models
from vitexplorer.core.checkpoint import read_weights, shapes_of


def old_build(plan, state, source):  # noqa: ANN001, ANN201
    """The way before: random initialisation, then the weights copied in."""
    models.check_plan(plan, state, source)
    module = plan.build()
    module.load_state_dict(state)
    return module, plan.spec(module)


def timed(path: Path, builder) -> float:  # noqa: ANN001
    started = time.perf_counter()
    state, meta = read_weights(path)
    plan = models._file_plan(path, shapes_of(state), meta, None)
    builder(plan, state, path.name)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_b_32,vit_b_16,vit_l_16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            path = Path(tmp) / f"{name}.safetensors"
            models.save_checkpoint(path, models.load_model(name, "none", "cpu"))
            times: dict[str, list[float]] = {"before": [], "now": []}
            for _ in range(args.repeats):
                times["before"].append(timed(path, old_build))
                times["now"].append(timed(path, models.build))
            before, now = (statistics.median(times[k]) for k in ("before", "now"))
            size = path.stat().st_size / 2**20
            print(f"{name} ({size:.0f} MB): random init then copy {before:.2f} s, meta device "
                  f"and assign {now:.2f} s: {before / now:.2f}x", flush=True)  # fmt: skip
            path.unlink()


if __name__ == "__main__":
    main()
