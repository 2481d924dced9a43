"""Wall time of ``vitexplorer analyze`` over photos, as a user runs it, against a minimal script
that does the same torchvision forward and saves the same attention array (issue 14).

    python benchmarks/analyze_throughput.py [FOLDER] [--models vit_b_32,vit_b_16,vit_l_16]
                                            [--counts 1,10,40] [--repeats 2] [--device cpu]

FOLDER defaults to ../shared/data/images (the project's photographs, repeated to make up a
count) or the bundled sample. Random weights: the time does not depend on the weights. Both
contenders are fresh processes (Python start, imports and the model's build included), run
interleaved (analyze, minimal, analyze, minimal...) so a noisy machine slows both alike; the
figure is the ratio of the medians. The minimal script: torchvision's ``get_model`` and its
weights' ``transforms()``, each ``MultiheadAttention`` asked for its per-head weights
(``need_weights=True, average_attn_weights=False``), one image at a time, the (layers, heads,
tokens, tokens) float32 array saved with ``np.save``; what ``analyze`` writes besides (the
overlay PNGs, the cards) is its own cost.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vitexplorer.core.io.folders import image_paths

MINIMAL = r"""
import sys
import numpy as np, torch
from PIL import Image
from torchvision.models import get_model, get_model_weights
name, out, images = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.set_grad_enabled(False)
model = get_model(name, weights=None).eval()
transform = get_model_weights(name).DEFAULT.transforms()
maps = []
def patched(mha):
    forward = mha.forward
    def run(q, k, v, **kw):
        kw.update(need_weights=True, average_attn_weights=False)
        out, weights = forward(q, k, v, **kw)
        maps.append(weights)
        return out, weights
    return run
for layer in model.encoder.layers:
    layer.self_attention.forward = patched(layer.self_attention)
for i, path in enumerate(images):
    x = transform(Image.open(path).convert("RGB")).unsqueeze(0)
    maps.clear()
    model(x)
    np.save(f"{out}/{i}.npy", torch.stack(maps, 1)[0].numpy())
"""


def run(command: list[str]) -> float:
    """The wall time of ``command``; its output is not shown (random weights make analyze warn
    about flat logits), unless it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{command[2]} failed: {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--models", default="vit_b_32,vit_b_16,vit_l_16")
    parser.add_argument("--counts", default="1,10,40")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    folder = Path(args.folder) if args.folder else root.parent / "shared" / "data" / "images"
    photos = image_paths(folder) if folder.is_dir() else []
    photos = photos or [str(root / "vitexplorer" / "resources" / "sample.png")]
    for model in args.models.split(","):
        for count in (int(c) for c in args.counts.split(",")):
            images = [photos[i % len(photos)] for i in range(count)]
            times: dict[str, list[float]] = {"analyze": [], "minimal": []}
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as out:
                    times["analyze"].append(run([
                        sys.executable, "-m", "vitexplorer", "analyze", *images, "--model",
                        model, "--weights", "none", "--device", args.device, "--out", out,
                    ]))  # fmt: skip
                with tempfile.TemporaryDirectory() as out:
                    times["minimal"].append(
                        run([sys.executable, "-c", MINIMAL, model, out, *images])
                    )
            analyze, minimal = (statistics.median(times[k]) for k in ("analyze", "minimal"))
            print(f"{model}, {count} photo(s): analyze {analyze:.2f} s, minimal script "
                  f"{minimal:.2f} s: {analyze / minimal:.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
