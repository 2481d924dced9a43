"""One prepared check of vitexplorer on a GPU: every CUDA path the app and the command line take,
timed against the plain PyTorch that does the same work, in one table.

A GPU is lent only now and then, for minutes: this script is written to run in under eight
minutes on one H100 and to say everything in one go. Rows:

- capture: ``forward_with_attention`` (the maps moved to the CPU as numpy, as the app does)
  against the plain forward, per family (torchvision, timm, Hugging Face, the demo small ViT), in
  float32 and in bfloat16 (autocast, as training runs), with the captured logits' largest
  difference from the plain forward's;
- analyze: ``vitexplorer analyze`` (in this process) on a few photos, with rollout and relevance;
- fine-tune and from scratch: one epoch of the engine (``core.training.finetune``, the path the
  CLI and the Train tab run; no time-lapse probes) against a minimal hand-written loop on the
  same images, from the same weights, at the same batch size and precision;
- memory: the estimate the Train tab and ``vitexplorer train`` check before training
  (``core.architecture.training_bytes``) against ``torch.cuda.max_memory_allocated``;
- out of memory: an impossible batch through the engine, and the one line the user then reads;
- maps: attention, rollout, relevance and logits on CUDA against the CPU's (largest absolute
  difference); without CUDA a second CPU run (which must give the same numbers).

Random weights everywhere (no network), but the demo model, which ships in
vitexplorer/resources. Photos: vitexplorer/resources and ../shared/data/images where present.
Training images: ../shared/data/cifar10 or tests/data/cifar10-test-sample, repeated to the count
needed, else random ones. Every row is guarded: one that fails prints its error in one line and
the rest still run. Without CUDA the CUDA rows say "skipped: no CUDA"; ``--quick`` (tiny models,
tiny data) is what the test suite smoke-runs on the CPU. The training rows are in
gpu_check_training.py beside this file.

    python benchmarks/gpu_check.py [--quick] [--budget 420] [--device auto|cuda|cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's vitexplorer, installed or not
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_check_training import (  # noqa: E402
    SHARED,
    Setting,
    autocast,
    finetune_row,
    memory_row,
    oom_row,
    release,
    scratch_row,
    sync,
    training_images,
)

TRAINING_SIZES = {True: (8, 4), False: (400, 50)}  # quick or not: images a class, train and test


@dataclass
class Row:
    """One line of the table: ``status`` is ok, skipped or error; ``values`` holds its numbers."""

    section: str
    what: str
    status: str
    text: str
    values: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # what the row took


class Table:
    """Runs each row guarded and prints it as soon as it is known (a killed run keeps its rows)."""

    def __init__(self, budget: float, out: Callable[[str], None] = print) -> None:
        self.started = time.perf_counter()
        self.budget = budget
        self.rows: list[Row] = []
        self.out = out

    def header(self) -> None:
        self.out(f"{'section':<10} {'what':<40} {'took':>6}  result")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        text = row.text if row.status == "ok" else f"{row.status}: {row.text}"
        took = f"{row.seconds:5.1f}s" if row.status != "skipped" else "-"
        self.out(f"{row.section:<10} {row.what:<40} {took:>6}  {' '.join(text.split())}")
        return row

    def skip(self, section: str, what: str, why: str) -> Row:
        return self.add(Row(section, what, "skipped", why))

    def run(self, section: str, what: str, fn: Callable[[], tuple[str, dict[str, float]]]) -> Row:
        """``fn()`` -> (text, values) as a row; past the budget it is skipped, and an exception
        becomes an error row of one line (GPU memory released) while the table goes on."""
        if self.elapsed() > self.budget:
            return self.skip(section, what, f"the budget of {self.budget:g} s is spent")
        start = time.perf_counter()
        try:
            text, values = fn()
        except Exception as exc:  # every failure is a row, never the end
            first = (str(exc) or type(exc).__name__).strip().splitlines()[0][:300]
            row = Row(section, what, "error", f"{type(exc).__name__}: {first}")
            del exc
            release()
        else:
            row = Row(section, what, "ok", text, values)
        row.seconds = time.perf_counter() - start
        return self.add(row)


# ---------------------------------------------------------------------------------------------
# Models of each family, random weights (but the demo's)


def family_models(quick: bool, tmp: str) -> Iterator[tuple[str, str, int, Callable[[], nn.Module]]]:
    """(family, label, input size, build) per family; ``build`` makes the module on the CPU."""
    from vitexplorer.core.models.loading import load_model

    def torchvision_vit() -> nn.Module:
        if quick:
            from torchvision.models.vision_transformer import VisionTransformer

            module = VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10)
        else:
            module = load_model("vit_b_16", "none", "cpu").module
        nn.init.normal_(module.heads.head.weight, std=0.02)  # torchvision's head is all zeros
        return module.eval()

    def timm_vit() -> nn.Module:
        if quick:
            import timm

            return timm.create_model("test_vit", pretrained=False, img_size=32, num_classes=10)
        return load_model("timm:vit_base_patch16_224", "none", "cpu").module

    def hf_vit() -> nn.Module:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        tiny = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64)  # fmt: skip
        config = transformers.ViTConfig(**tiny) if quick else transformers.ViTConfig()
        folder = os.path.join(tmp, "hf-vit")
        transformers.ViTForImageClassification(config).save_pretrained(folder)
        return load_model(f"hf:{folder}", "default", "cpu").module  # the app's path for HF

    size = 32 if quick else 224
    yield "torchvision", "ViT 32px tiny" if quick else "vit_b_16", size, torchvision_vit
    yield "timm", "test_vit 32px" if quick else "vit_base_patch16_224", size, timm_vit
    yield "hf", "ViT 32px tiny" if quick else "ViT-Base (save_pretrained)", size, hf_vit
    yield "demo", "demo small ViT (shipped)", 32, lambda: load_model("demo", device="cpu").module


def capture_row(module: nn.Module, device: torch.device, dtype: torch.dtype, batch: int,
                runs: int, size: int) -> tuple[str, dict[str, float]]:  # fmt: skip
    """Median captured / plain forward time, interleaved; the logits' largest difference."""
    from vitexplorer.core.models.capture import forward_with_attention

    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)

    last: dict[str, object] = {}  # each contender's latest output

    def plain() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            last["plain"] = module(images)
        sync(device)

    def captured() -> None:
        with autocast(device, dtype):
            logits, attention = forward_with_attention(module, images)
        maps = attention.float().cpu().numpy()  # the app keeps the maps on the CPU as numpy
        sync(device)
        last["captured"] = logits, maps

    times: dict[str, list[float]] = {"plain": [], "captured": []}
    for _ in range(2 if runs > 1 else 1):  # warm up (CUDA kernels, autotuning)
        plain(), captured()
    for run in range(runs):
        order = [("plain", plain), ("captured", captured)]
        for key, fn in order[::-1] if run % 2 else order:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    logits, maps = last["captured"]
    diff = float((logits.float() - last["plain"].float()).abs().max())
    row_sums = float(np.abs(maps.sum(-1) - 1).max())
    p, c = (statistics.median(times[k]) * 1e3 for k in ("plain", "captured"))
    text = (f"batch {batch}: plain {p:.2f} ms, captured {c:.2f} ms, ratio {c / p:.3f}; "
            f"logits max |diff| {diff:.2g}; rows sum to 1 within {row_sums:.1g}")  # fmt: skip
    return text, {"plain_ms": p, "captured_ms": c, "ratio": c / p, "logits_diff": diff,
                  "row_sum_error": row_sums}  # fmt: skip


def capture_rows(table: Table, device: torch.device, quick: bool, tmp: str) -> None:
    batches, runs = ((2,), 1) if quick else ((1, 8), 20)
    for family, label, size, build in family_models(quick, tmp):
        built: list[nn.Module] = []

        def make(build: Callable = build, built: list = built) -> tuple[str, dict[str, float]]:
            built.append(build().to(device))
            return f"{sum(p.numel() for p in built[0].parameters()):,} parameters", {}

        if table.run("capture", f"{family}: {label}, build", make).status != "ok":
            continue
        for dtype in (torch.float32, torch.bfloat16):
            for batch in batches:
                name = str(dtype).removeprefix("torch.")
                job = (built[0], device, dtype, batch, runs, size)
                table.run(
                    "capture", f"{family} {name} batch {batch}", lambda j=job: capture_row(*j)
                )
        built.clear()
        release()


# ---------------------------------------------------------------------------------------------
# analyze on photos, through the command line's own entry point


def photos(count: int) -> list[str]:
    found = [str(ROOT / "vitexplorer" / "resources" / "sample.png")]
    images = SHARED / "images"
    if images.is_dir():
        found += sorted(str(p) for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    return (found * count)[:count]


def analyze_row(model: str, weights: str, device: torch.device, count: int) -> tuple[str, dict]:
    from vitexplorer.cli import main

    files = photos(count)
    with tempfile.TemporaryDirectory() as out:
        args = ["analyze", *files, "--model", model, "--device", str(device), "--out", out,
                "--method", "rollout", "--method", "relevance"]  # fmt: skip
        if weights:
            args += ["--weights", weights]
        said, errors = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(errors):
            status = main(args)
        seconds = time.perf_counter() - start
        written = len(os.listdir(out))
    lines = said.getvalue().splitlines()
    problems = [line for line in errors.getvalue().splitlines() if "warning" not in line]
    if status != 0:
        raise RuntimeError(f"exit status {status}: {' | '.join(problems)[:200]}")
    unique = len(set(files))
    text = (f"{len(files)} photos ({unique} different): {len(lines)} analysed, {written} files, "
            f"{seconds:.2f} s in all (model load included), exit status 0")  # fmt: skip
    return text, {"photos": len(files), "analysed": len(lines), "seconds": seconds}


def training_rows(table: Table, device: torch.device, quick: bool) -> None:
    per_class, test_per_class = TRAINING_SIZES[quick]
    found: list[Setting] = []

    def images() -> tuple[str, dict[str, float]]:
        dataset, source = training_images(per_class, test_per_class, quick)
        found.append(Setting(device, quick, dataset, source, per_class, test_per_class))
        return f"{per_class} + {test_per_class} a class from {source}", {}

    data = table.run("data", "training images, 32 px, in memory", images)
    s = found[0] if found else None
    missing = data.text if data.status == "skipped" else "no training images (see the data row)"
    model = "small_vit" if quick else "vit_b_16"
    epoch = "1 epoch: engine against a plain loop"
    rows = [("fine-tune", epoch, lambda: finetune_row(s, model)),
            ("scratch", epoch, lambda: scratch_row(s))]  # fmt: skip
    for batch in (128, 1024):
        for mixed in (False, True):
            what = f"train estimate, batch {batch}, {'bfloat16' if mixed else 'float32'}"
            rows.append(("memory", what, lambda b=batch, m=mixed: memory_row(s, b, m)))
    for section, what, fn in rows:
        if s is None:
            table.skip(section, what, missing)
        elif section == "memory" and device.type != "cuda":
            table.skip(section, what, no_cuda(device))
        else:
            table.run(section, what, fn)


# ---------------------------------------------------------------------------------------------
# The maps on CUDA against the CPU's


def maps_on(name: str, weights: str, device: torch.device) -> dict[str, np.ndarray]:
    from PIL import Image

    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.explain.maps import explanation_map
    from vitexplorer.core.explain.method import MethodOptions
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.models.preprocessing import preprocess

    torch.manual_seed(0)
    model = load_model(name, weights, "cpu")
    head = getattr(getattr(model.module, "heads", None), "head", None)
    if head is not None:  # torchvision's random head is zeros: nothing class-specific to show
        nn.init.normal_(head.weight, std=0.02)
    model.module.to(device)
    model.device = device
    image = Image.open(photos(1)[0]).convert("RGB")
    analysis = analyze_image(model, image)
    target = int(np.argmax(analysis.logits))
    batch = preprocess(image, model.spec)[None].to(device)
    return {
        "logits": analysis.logits,
        "attention": analysis.attention,
        "rollout": explanation_map("rollout", MethodOptions(), analysis=analysis),
        "relevance": explanation_map(
            "relevance", MethodOptions(target_class=target), model=model, batch=batch
        ),  # fmt: skip
    }


def maps_row(name: str, weights: str, device: torch.device) -> tuple[str, dict[str, float]]:
    cpu = maps_on(name, weights, torch.device("cpu"))
    other = maps_on(name, weights, device)
    diffs = {k: float(np.abs(cpu[k].astype(np.float64) - other[k]).max()) for k in cpu}
    same_top = int(np.argmax(cpu["logits"])) == int(np.argmax(other["logits"]))
    text = ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())
    return f"max |{device.type} - cpu|: {text}; same top class: {same_top}", diffs


# ---------------------------------------------------------------------------------------------


def no_cuda(device: torch.device) -> str:
    """Why the CUDA rows are skipped."""
    return "no CUDA" if not torch.cuda.is_available() else f"CUDA not used (--device {device})"


def describe(device: torch.device) -> list[str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        where = f"{name}, {total:.0f} GiB, CUDA {torch.version.cuda}"
        tf32 = (f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, "
                f"cuDNN {torch.backends.cudnn.allow_tf32}")  # fmt: skip
    else:
        cpu = platform.processor() or platform.machine()
        where, tf32 = f"{device.type.upper()} ({cpu}), {no_cuda(device)}", ""
    lines = [f"device: {where}; {os.cpu_count()} CPU cores",
             f"torch {torch.__version__}, Python {platform.python_version()}"]  # fmt: skip
    return lines + ([tf32] if tf32 else [])


def run(options: argparse.Namespace, out: Callable[[str], None] = print) -> Table:
    """Every row, in order; the table (its rows and numbers) for a test to read."""
    from vitexplorer.core.models.loading import resolve_device

    device = resolve_device(options.device)
    table = Table(options.budget, out)
    cuda = device.type == "cuda"
    mode = "quick: tiny models, tiny data" if options.quick else "full"
    for line in [*describe(device), f"mode: {mode}; budget {options.budget:g} s"]:
        out(line)
    table.header()
    with tempfile.TemporaryDirectory(prefix="vitexplorer-gpu-check-") as tmp:
        capture_rows(table, device, options.quick, tmp)
    count = 2 if options.quick else 10
    table.run("analyze", f"demo on {device.type}", lambda: analyze_row("demo", "", device, count))
    if not options.quick:
        table.run("analyze", f"vit_b_16 (random) on {device.type}",
                  lambda: analyze_row("vit_b_16", "none", device, count))  # fmt: skip
    training_rows(table, device, options.quick)
    if cuda:
        table.run("oom", "impossible batch through the engine", lambda: oom_row(device))
    else:
        table.skip("oom", "impossible batch through the engine", no_cuda(device))
    other = device if cuda else torch.device("cpu")
    models = [("demo", "default")] + ([] if options.quick else [("vit_b_16", "none")])
    for name, weights in models:
        table.run("maps", f"{name}: {other.type} against cpu",
                  lambda n=name, w=weights: maps_row(n, w, other))  # fmt: skip
    bad = sum(row.status == "error" for row in table.rows)
    out(f"total {table.elapsed():.1f} s, {len(table.rows)} rows, {bad} errors")
    return table


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and data (a smoke run)")
    parser.add_argument(
        "--budget", type=float, default=420.0, metavar="SECONDS",
        help="rows not started by then are skipped (default: %(default)g)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from vitexplorer.core.models.loading import resolve_device

    options = parse(argv)
    try:
        resolve_device(options.device)
    except ValueError as exc:  # an unknown device, or CUDA asked for where there is none
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    table = run(options, lambda line: print(line, flush=True))
    return 1 if any(row.status == "error" for row in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
