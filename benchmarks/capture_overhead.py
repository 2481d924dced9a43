"""Cost of attention capture: captured forward time / plain forward time, per model family.

One ViT-B/16-sized model of each family with random weights (the cost does not depend on the
weights): torchvision ``vit_b_16``, the project's ``small_vit``, timm ``vit_base_patch16_224`` and
a Hugging Face ``ViTForImageClassification`` with the default ViTConfig (ViT-Base/16, 224 px),
saved into a temporary folder and loaded from it as ``hf:FOLDER`` (no network). The captured
forward is ``forward_with_attention`` with the maps moved to the CPU as numpy, as the app does;
the plain forward is ``model.module(images)`` under inference mode. For Hugging Face the plain
forward is vitexplorer's wrapper around the HF model (HF's default sdpa attention) and the HF
model's own ``hf_model(pixel_values=images)`` is timed as well, with a ratio of its own. For
torchvision, the peer a script would write is timed too: each ``MultiheadAttention`` asked for
its per-head weights (``need_weights=True, average_attn_weights=False``), the layers' weights
stacked into one array at the end.

``--memory`` measures, in a fresh process per contender (torchvision ViT-B/16), the peak
resident memory one call adds over a plain forward's peak, as a multiple of the maps' own size
(capture writes each layer's scores straight into one preallocated array; the peer keeps each
layer's weights, then stacks them into a second array).

Every iteration runs each family once, round-robin (the starting family rotates), and within a
family its contenders back to back (their order alternates), so that all see the same machine
state; the figure is the ratio of medians, measured in one process. Torch threads at the default.

    python benchmarks/capture_overhead.py [--families torchvision small timm hf] [--runs 20]
                                          [--batch 1 8] [--device cpu]
    python benchmarks/capture_overhead.py --model vit_b_16 [--weights none]   # one model
    python benchmarks/capture_overhead.py --memory [--batch 1 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.loading import LoadedModel, load_model

FAMILIES: dict[str, str] = {
    "torchvision": "vit_b_16",
    "small": "small_vit",
    "timm": "timm:vit_base_patch16_224",
    "hf": "hf:",  # + a temporary folder holding a ViT-Base saved with save_pretrained
}


@dataclass
class Entry:
    """One model under test: its contenders (name -> one timed call) and their times (s)."""

    family: str
    model: str
    loaded: LoadedModel
    contenders: dict[str, Callable[[], None]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)


def save_hf_vit_base(folder: str) -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    transformers.ViTForImageClassification(transformers.ViTConfig()).save_pretrained(folder)


def make_entry(family: str, name: str, loaded: LoadedModel, batch: int) -> Entry:
    size = loaded.spec.image_size
    images = torch.randn(batch, 3, size, size, device=loaded.device)
    module = loaded.module

    def sync() -> None:
        if loaded.device.type == "cuda":
            torch.cuda.synchronize(loaded.device)

    def plain() -> None:
        with torch.inference_mode():
            module(images)
        sync()

    def captured() -> None:
        _, attention = forward_with_attention(module, images)
        attention.cpu().numpy()  # the app keeps the maps on the CPU as numpy
        sync()

    entry = Entry(family, name, loaded, {"plain": plain, "captured": captured})
    if family == "torchvision":
        entry.contenders["need_weights"] = need_weights_peer(module, images, sync)
    hf_model = getattr(module, "model", None) if family == "hf" else None
    if hf_model is not None:  # the HF model's own forward, without vitexplorer's wrapper

        def bare() -> None:
            with torch.inference_mode():
                hf_model(pixel_values=images)
            sync()

        entry.contenders["hf forward"] = bare
    entry.times = {key: [] for key in entry.contenders}
    return entry


def need_weights_peer(module: torch.nn.Module, images: torch.Tensor, sync: Callable) -> Callable:
    """torchvision's own per-head weights, as a script gets them: each layer's
    ``MultiheadAttention`` called with ``need_weights=True, average_attn_weights=False``, the
    weights kept and stacked into (batch, layers, heads, tokens, tokens) at the end."""
    maps: list[torch.Tensor] = []

    def asking(attention: torch.nn.MultiheadAttention) -> Callable:
        forward = type(attention).forward

        def run(query, key, value, **options):
            options.update(need_weights=True, average_attn_weights=False)
            out, weights = forward(attention, query, key, value, **options)
            maps.append(weights)
            return out, weights

        return run

    def peer() -> None:
        layers = [layer.self_attention for layer in module.encoder.layers]
        for attention in layers:
            attention.forward = asking(attention)
        try:
            with torch.inference_mode():
                module(images)
                torch.stack(maps, 1).cpu().numpy()
            sync()
        finally:
            maps.clear()
            for attention in layers:
                del attention.forward

    return peer


def measure(entries: list[Entry], runs: int, warmup: int = 3) -> None:
    for entry in entries:
        for _ in range(warmup):
            for fn in entry.contenders.values():
                fn()
    for run in range(runs):
        start_at = run % len(entries)
        for entry in entries[start_at:] + entries[:start_at]:
            order = list(entry.contenders.items())
            if run % 2:
                order.reverse()
            for key, fn in order:
                start = time.perf_counter()
                fn()
                entry.times[key].append(time.perf_counter() - start)


PEERS = {"hf forward": "bare HF forward", "need_weights": "need_weights + stack"}


def report(entries: list[Entry], batch: int, runs: int) -> None:
    device, threads = entries[0].loaded.device, torch.get_num_threads()
    print(f"\nbatch {batch}, device {device}, {runs} runs each, torch threads {threads}")
    print(f"{'family':<12} {'model':<42} {'plain ms':>9} {'captured ms':>12} {'ratio':>7}")
    for entry in entries:
        captured = statistics.median(entry.times["captured"]) * 1e3
        for key in entry.contenders:
            if key == "captured":
                continue
            plain = statistics.median(entry.times[key]) * 1e3
            model = entry.model if key == "plain" else f"{entry.model} ({PEERS[key]})"
            row = f"{entry.family:<12} {model:<42} {plain:9.1f} {captured:12.1f}"
            print(f"{row} {captured / plain:7.3f}")


MEMORY_PROBE = r"""
import resource, sys, torch
from benchmarks.capture_overhead import make_entry
from vitexplorer.core.models.loading import load_model
contender, batch = sys.argv[1], int(sys.argv[2])
loaded = load_model("vit_b_16", weights="none", device="cpu")
entry = make_entry("torchvision", "vit_b_16", loaded, batch)
for _ in range(2):
    entry.contenders["plain"]()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
entry.contenders[contender]()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def measure_memory(batches: list[int]) -> None:
    """Peak memory a captured forward adds over a plain one, per contender, fresh processes."""
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    spec = load_model("vit_b_16", weights="none", device="meta").spec
    for batch in batches:
        maps = batch * spec.num_layers * spec.num_heads * spec.num_tokens**2 * 4
        print(f"\nbatch {batch}, torchvision vit_b_16: the maps are {maps / 2**20:.0f} MiB")
        for contender in ("captured", "need_weights"):
            done = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, contender, str(batch)],
                capture_output=True, text=True, check=True, cwd=root,
            )  # fmt: skip
            extra = int(done.stdout.split()[-1])
            print(f"{contender:<13} peak +{extra / 2**20:7.0f} MiB = {extra / maps:.2f}x the maps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--model", help="measure this one model instead of the families")
    parser.add_argument("--weights", default="none", help="with --model (default: none)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="peak memory instead of time")
    args = parser.parse_args()
    if args.memory:
        measure_memory(args.batch)
        return

    with tempfile.TemporaryDirectory(prefix="vitexplorer-hf-vit-base-") as tmp:
        models: list[tuple[str, str, LoadedModel]] = []
        if args.model:
            loaded = load_model(args.model, weights=args.weights, device=args.device)
            models.append(("-", args.model, loaded))
        else:
            for family in args.families:
                name = FAMILIES[family]
                if family == "hf":
                    save_hf_vit_base(tmp)
                    loaded = load_model(name + tmp, weights="default", device=args.device)
                    name = "hf:ViT-Base (tmp folder)"
                    attn = loaded.module.model.config._attn_implementation
                    print(f"hf: ViTForImageClassification, attention implementation {attn}")
                else:
                    loaded = load_model(name, weights="none", device=args.device)
                models.append((family, name, loaded))
        for batch in args.batch:
            entries = [make_entry(family, name, loaded, batch) for family, name, loaded in models]
            measure(entries, args.runs)
            report(entries, batch, args.runs)


if __name__ == "__main__":
    main()
