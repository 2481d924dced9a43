"""Attention rollout latency on ViT-L/16 at 384 px (577 tokens, 24 layers, 16 heads), CPU.

Two costs, as the explorer pays them:

- once per image and rollout option: ``rollout_layers`` (head fusion, discard, identity,
  row normalisation for every layer), for each head fusion and with a discard ratio;
- per click: ``rollout_row`` for the clicked token, propagated as one row vector through the
  cached layers, and the reshape to the patch grid. A click must redraw within 50 ms.

The attention is random logits softmaxed per row (float32, about 511 MB), built one layer at a
time; ``--attention capture`` instead captures it from torchvision's ViT-L/16 with random weights
at 384 px (slower to set up; the timings do not depend on the values).

    python benchmarks/rollout_latency.py [--clicks 500] [--repeats 5] [--attention random]
    python benchmarks/rollout_latency.py --quick   # 2 layers, 2 heads, 4x4 patches: a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vitexplorer.core.explain.rollout import rollout_layers, rollout_matrix, rollout_row

LAYERS, HEADS, GRID, PATCH, IMAGE_SIZE = 24, 16, (24, 24), 16, 384
NUM_PREFIX = 1
TOKENS = NUM_PREFIX + GRID[0] * GRID[1]


def random_attention(seed: int = 0) -> np.ndarray:
    """(24, 16, 577, 577) float32 softmax of random logits, one layer at a time."""
    rng = np.random.default_rng(seed)
    attention = np.empty((LAYERS, HEADS, TOKENS, TOKENS), dtype=np.float32)
    for layer in range(LAYERS):
        logits = rng.standard_normal((HEADS, TOKENS, TOKENS), dtype=np.float32) * 3.0
        logits -= logits.max(-1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(-1, keepdims=True)
        attention[layer] = logits
    return attention


def captured_attention() -> np.ndarray:
    """The attention of torchvision's ViT-L/16 at 384 px, random weights, on a random image."""
    import torch
    import torchvision

    from vitexplorer.core.models.capture import forward_with_attention

    torch.manual_seed(0)
    model = torchvision.models.vit_l_16(weights=None, image_size=IMAGE_SIZE).eval()
    _, attention = forward_with_attention(model, torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return attention[0].numpy()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attention", choices=("random", "capture"), default="random")
    parser.add_argument("--discard-ratio", type=float, default=0.9)
    parser.add_argument("--quick", action="store_true", help="tiny maps (the tests' smoke run)")
    args = parser.parse_args()
    if args.quick:
        global LAYERS, HEADS, GRID, PATCH, IMAGE_SIZE, TOKENS
        LAYERS, HEADS, GRID, PATCH, IMAGE_SIZE = 2, 2, (4, 4), 8, 32
        TOKENS = NUM_PREFIX + GRID[0] * GRID[1]

    start = time.perf_counter()
    attention = random_attention() if args.attention == "random" else captured_attention()
    built = time.perf_counter() - start
    print(
        f"attention {attention.shape} {attention.dtype}, {attention.nbytes / 2**20:.0f} MiB, "
        f"{args.attention} ({built:.1f} s to build)"
    )

    print(
        f"\nonce per image and option: rollout_layers over {LAYERS} layers "
        f"(median of {args.repeats})"
    )
    options = [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", args.discard_ratio)]
    cached = {}
    for fusion, discard in options:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            layers = rollout_layers(attention, fusion, discard, 0, NUM_PREFIX)
            times.append(time.perf_counter() - start)
        cached[fusion, discard] = layers
        print(
            f"  fusion {fusion:4s} discard {discard:.1f}   {statistics.median(times) * 1e3:8.1f} ms"
        )

    layers = cached["mean", 0.0]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        rollout_matrix(layers)
        times.append(time.perf_counter() - start)
    matrix_ms = statistics.median(times) * 1e3
    print(f"  full rollout matrix, for the attention-matrix view   {matrix_ms:8.1f} ms")

    rng = np.random.default_rng(1)
    tokens = rng.integers(0, TOKENS, args.clicks)
    print(
        f"\nper click: rollout_row + reshape to the {GRID[0]}x{GRID[1]} grid "
        f"({args.clicks} random tokens)"
    )
    for (fusion, discard), layers in cached.items():
        times = []
        for token in tokens[:10]:  # warm the caches as the first clicks do
            rollout_row(layers, int(token))
        for token in tokens:
            start = time.perf_counter()
            row = rollout_row(layers, int(token))
            np.ascontiguousarray(row[NUM_PREFIX:].reshape(GRID), dtype=np.float32)
            times.append(time.perf_counter() - start)
        median_ms = statistics.median(times) * 1e3
        p95_ms = percentile(times, 95) * 1e3
        print(
            f"  fusion {fusion:4s} discard {discard:.1f}   median {median_ms:6.2f} ms   "
            f"p95 {p95_ms:6.2f} ms   max {max(times) * 1e3:6.2f} ms"
        )
    print("\ntarget: a click redraws within 50 ms")


if __name__ == "__main__":
    main()
