"""Cost of attention capture: captured forward time / plain forward time.

torchvision ViT-B/16 with random weights (the cost does not depend on the weights), batch 1, on
the CPU by default. Runs alternate between the two so that both see the same machine state;
the figure is the ratio of medians, measured in one process.

    python benchmarks/capture_overhead.py [--model vit_b_16] [--runs 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitexplorer.core.capture import forward_with_attention
from vitexplorer.core.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = load_model(args.model, weights="none", device=args.device)
    size = model.spec.image_size
    images = torch.randn(1, 3, size, size, device=model.device)

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    def plain() -> None:
        with torch.inference_mode():
            model.module(images)
        sync()

    def captured() -> None:
        logits, attention = forward_with_attention(model.module, images)
        attention.cpu().numpy()  # the app keeps the maps on the CPU as numpy
        sync()

    for _ in range(3):
        plain()
        captured()
    times: dict[str, list[float]] = {"plain": [], "capture": []}
    for _ in range(args.runs):
        for name, fn in (("plain", plain), ("capture", captured)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    plain_ms = statistics.median(times["plain"]) * 1e3
    capture_ms = statistics.median(times["capture"]) * 1e3
    print(f"model {args.model}, device {model.device}, batch 1, {args.runs} runs each")
    print(f"plain forward   median {plain_ms:8.1f} ms")
    print(f"with capture    median {capture_ms:8.1f} ms")
    print(f"ratio           {capture_ms / plain_ms:8.3f}")


if __name__ == "__main__":
    main()
