"""``vitexplorer analyze``: attention maps and predictions for images, without a window."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vitexplorer.cli.common import (
    MODEL_NAMES,
    PROG,
    Failed,
    colour_table,
    device_choice,
    error,
    file_mode,
    load_model_for,
    unique_stems,
    write_atomic,
)

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.analysis import ImageAnalysis


def analyze_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} analyze",
        description="Run a ViT on each image and write, per image, into DIR: <stem>.attention.npy "
        "(float32, layers x heads x tokens x tokens), <stem>.json (model facts and the top-5 "
        "predictions) and <stem>.cls.png (the last layer's CLS attention, mean over heads, over "
        "the crop the model saw).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to analyse")
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help=f"one of {', '.join(MODEL_NAMES)}, or a vitexplorer checkpoint (.safetensors)",
    )
    parser.add_argument(
        "--weights",
        default="default",
        metavar="default|none|PATH",
        help="'default': ImageNet weights for torchvision ViTs (downloaded once into the torch "
        "hub cache), random for small_vit; 'none': random weights; or a local weights file "
        "(.pth or .safetensors). Not used with a checkpoint --model. (default: default)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=device_choice,
        metavar="auto|cpu|cuda|mps",
        help="where the model runs; auto picks CUDA, then MPS, then the CPU (default: auto)",
    )
    return parser


def run_analyze(options: argparse.Namespace) -> int:
    """``vitexplorer analyze``: 0 when every image was written, 1 when some failed."""
    out_dir: Path = options.out
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}", 2
        ) from exc
    model = load_model_for(options)

    from vitexplorer.core.analysis import analyze_image, failure_message
    from vitexplorer.core.data import ImageLoadError, load_image

    lut = colour_table()
    mode = file_mode()
    failures = 0
    for source, stem in zip(options.images, unique_stems(options.images), strict=True):
        try:
            image = load_image(source)
        except ImageLoadError as exc:
            error(str(exc))
            failures += 1
            continue
        try:
            analysis = analyze_image(model, image)
        except (RuntimeError, ValueError) as exc:  # e.g. the GPU ran out of memory
            error(f"{Path(source).name}: {failure_message(exc)}")
            failures += 1
            continue
        try:
            write_outputs(out_dir, stem, source, analysis, lut, mode)
        except OSError as exc:
            error(f"{Path(source).name}: cannot write to {out_dir}: {exc.strerror or exc}")
            failures += 1
            continue
        top = analysis.predictions[0]
        print(f"{stem}: {top.name} {top.probability:.1%}", flush=True)
    return 1 if failures else 0


def write_outputs(
    out_dir: Path,
    stem: str,
    source: str | os.PathLike[str],
    analysis: ImageAnalysis,
    lut: np.ndarray,
    mode: int = 0o644,
) -> list[Path]:
    """Write ``<stem>.attention.npy``, ``<stem>.json`` and ``<stem>.cls.png``; returns them."""
    import json

    import numpy as np
    from PIL import Image

    from vitexplorer.core.explain import attention_map
    from vitexplorer.core.overlay import render_overlay

    spec = analysis.spec
    facts = {
        **spec.describe(),
        "image": str(source),
        "predictions": [
            {"index": p.index, "name": p.name, "probability": p.probability}
            for p in analysis.predictions
        ],
        "forward_seconds": analysis.seconds,
    }
    cls_map = attention_map(
        analysis.attention,
        layer=spec.num_layers - 1,
        head=None,
        token=0,
        grid=spec.grid,
        num_prefix=spec.num_prefix_tokens,
    )
    picture = Image.fromarray(render_overlay(analysis.display, cls_map, lut))
    attention = np.ascontiguousarray(analysis.attention, dtype=np.float32)
    paths = [
        out_dir / f"{stem}.attention.npy",
        out_dir / f"{stem}.json",
        out_dir / f"{stem}.cls.png",
    ]
    writers: list[Callable[[IO[bytes]], Any]] = [
        lambda f: np.save(f, attention, allow_pickle=False),
        lambda f: f.write((json.dumps(facts, indent=2) + "\n").encode("utf-8")),
        lambda f: picture.save(f, format="PNG"),
    ]
    for path, write in zip(paths, writers, strict=True):
        write_atomic(path, write, mode)
    return paths
