"""Cost of attention capture: captured forward time / plain forward time, per model family.

One ViT-B/16-sized model of each family with random weights (the cost does not depend on the
weights): torchvision ``vit_b_16``, the project's ``small_vit``, timm ``vit_base_patch16_224`` and
a Hugging Face ``ViTForImageClassification`` with the default ViTConfig (ViT-Base/16, 224 px),
saved into a temporary folder and loaded from it as ``hf:FOLDER`` (no network). The captured
forward is ``forward_with_attention`` with the maps moved to the CPU as numpy, as the app does;
the plain forward is ``model.module(images)`` under inference mode. For Hugging Face the plain
forward is vitexplorer's wrapper around the HF model (HF's default sdpa attention) and the HF
model's own ``hf_model(pixel_values=images)`` is timed as well, with a ratio of its own.

Every iteration runs each family once, round-robin (the starting family rotates), and within a
family its contenders back to back (their order alternates), so that all see the same machine
state; the figure is the ratio of medians, measured in one process. Torch threads at the default.

    python benchmarks/capture_overhead.py [--families torchvision small timm hf] [--runs 20]
                                          [--batch 1 8] [--device cpu]
    python benchmarks/capture_overhead.py --model vit_b_16 [--weights none]   # one model
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vitexplorer.core.capture import forward_with_attention
from vitexplorer.core.models import LoadedModel, load_model

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
    hf_model = getattr(module, "model", None) if family == "hf" else None
    if hf_model is not None:  # the HF model's own forward, without vitexplorer's wrapper

        def bare() -> None:
            with torch.inference_mode():
                hf_model(pixel_values=images)
            sync()

        entry.contenders["hf forward"] = bare
    entry.times = {key: [] for key in entry.contenders}
    return entry


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
            model = entry.model if key == "plain" else f"{entry.model} (bare HF forward)"
            row = f"{entry.family:<12} {model:<42} {plain:9.1f} {captured:12.1f}"
            print(f"{row} {captured / plain:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--model", help="measure this one model instead of the families")
    parser.add_argument("--weights", default="none", help="with --model (default: none)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

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
