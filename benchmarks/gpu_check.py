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
tiny data) is what the test suite smoke-runs on the CPU.

    python benchmarks/gpu_check.py [--quick] [--budget 420] [--device auto|cuda|cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import math
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's vitexplorer, installed or not
    sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
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
        except Exception as exc:  # noqa: BLE001  (every failure is a row, never the end)
            first = (str(exc) or type(exc).__name__).strip().splitlines()[0][:300]
            row = Row(section, what, "error", f"{type(exc).__name__}: {first}")
            del exc
            release()
        else:
            row = Row(section, what, "ok", text, values)
        row.seconds = time.perf_counter() - start
        return self.add(row)


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Models of each family, random weights (but the demo's)


def family_models(quick: bool, tmp: str) -> Iterator[tuple[str, str, int, Callable[[], nn.Module]]]:
    """(family, label, input size, build) per family; ``build`` makes the module on the CPU."""
    from vitexplorer.core.models import load_model

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
    from vitexplorer.core.capture import forward_with_attention

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


# ---------------------------------------------------------------------------------------------
# Training data: the same uint8 images for the engine and the plain loops


def training_images(per_class: int, test_per_class: int, quick: bool) -> tuple[object, str]:
    """A DatasetSplits held in memory (10 classes, 32 px), and where its images came from: the
    repository's sample first for a quick run (the same everywhere), the shared CIFAR-10 first
    for a full one."""
    from PIL import Image

    from vitexplorer.core.datasets import DatasetSplits, LabelledImages

    rng = np.random.default_rng(0)
    folders = [SHARED / "cifar10" / "test", ROOT / "tests" / "data" / "cifar10-test-sample"]
    for folder in folders[::-1] if quick else folders:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if len(classes) < 2:
            continue
        need = per_class + test_per_class
        arrays, labels = [], []
        for label, name in enumerate(classes):
            files = sorted((folder / name).glob("*.png"))[:need]
            images = [np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for f in files]
            arrays += (images * math.ceil(need / max(1, len(images))))[:need]
            labels += [label] * need
        data, labels_np = np.stack(arrays), np.asarray(labels, dtype=np.int64)
        test = np.concatenate([np.arange(i * need + per_class, (i + 1) * need)
                               for i in range(len(classes))])  # fmt: skip
        train = np.setdiff1d(np.arange(len(labels_np)), test)
        splits = DatasetSplits(folder.name, str(folder), tuple(classes),
                               LabelledImages(labels_np[train], arrays=data[train]),
                               LabelledImages(labels_np[test], arrays=data[test]))  # fmt: skip
        distinct = min(len(list((folder / c).glob("*.png"))) for c in classes)
        return splits, f"{folder.parent.name}/{folder.name} ({distinct}+ a class, repeated)"
    n = per_class + test_per_class
    data = rng.integers(0, 256, (10 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), n)
    names = tuple(f"class {i}" for i in range(10))
    return DatasetSplits("random", "", names, LabelledImages(labels, arrays=data), None), "random"


def run_engine(base: object, s: Setting, config: object) -> tuple[object, float, float, int]:
    """The engine to its end: (result, its whole run's seconds, the epoch's seconds, the peak of
    CUDA memory allocated from the start of the run, 0 on the CPU)."""
    from vitexplorer.core.training import Epoch, Finished, finetune

    if s.cuda:
        torch.cuda.reset_peak_memory_stats(s.device)
    result, epoch_seconds = None, 0.0
    for event in finetune(base, s.dataset, config):
        if isinstance(event, Epoch):
            epoch_seconds += event.seconds
        elif isinstance(event, Finished):
            result = event.result
    peak = torch.cuda.max_memory_allocated(s.device) if s.cuda else 0
    return result, result.seconds, epoch_seconds, peak


def model_input(images: torch.Tensor, spec: object, device: torch.device) -> torch.Tensor:
    """What a hand-written loop does: to the device, to [0, 1], resize, normalise."""
    x = images.to(device, non_blocking=True).float().div_(255)
    size = spec.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(spec.mean, device=device)[:, None, None]
    std = torch.tensor(spec.std, device=device)[:, None, None]
    return (x - mean) / std


def plain_loop(model: nn.Module, trainable: list[nn.Parameter], data: object, spec: object,
               device: torch.device, *, lr: float, weight_decay: float, batch: int,
               smoothing: float = 0.0, clip: float = 0.0, warmup: int = 0,
               crop_flip: bool = False) -> tuple[float, float]:  # fmt: skip
    """One epoch (AdamW, warm-up then cosine per step), a validation pass and a test pass, as a
    tutorial writes them, in the engine's precision: (seconds, test accuracy)."""
    from vitexplorer.core.training import autocast_dtype

    dtype = autocast_dtype(device, True) or torch.float32
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    steps = math.ceil(len(data.train) / batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))  # fmt: skip
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    model.train()
    for index in torch.randperm(len(data.train), generator=generator).split(batch):
        images, labels = data.train.images[index], data.train.labels[index].to(device)
        if crop_flip:  # pad by 4 px, cut back at a random place, flip half
            padded = F.pad(images, (4, 4, 4, 4))
            at = torch.randint(0, 9, (len(index), 2), generator=generator).tolist()
            images = torch.stack(
                [p[:, i : i + 32, j : j + 32] for p, (i, j) in zip(padded, at, strict=True)]
            )
            flip = torch.rand(len(index), generator=generator) < 0.5
            images[flip] = images[flip].flip(-1)
        with autocast(device, dtype):
            loss = loss_fn(model(model_input(images, spec, device)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(trainable, clip)
        optimizer.step()
        schedule.step()
    model.eval()
    right = 0
    with torch.no_grad(), autocast(device, dtype):
        for split in (data.val, data.test):
            for index in torch.arange(len(split)).split(256):
                logits = model(model_input(split.images[index], spec, device)).float()
                if split is data.test:
                    right += int((logits.argmax(1).cpu() == split.labels[index]).sum())
    sync(device)
    return time.perf_counter() - start, right / max(1, len(data.test))


@dataclass
class Setting:
    """What the training rows share: the device, the images, the models' sizes."""

    device: torch.device
    quick: bool
    dataset: object
    source: str  # where the images came from, in words
    per_class: int
    test_per_class: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def shape(self) -> object:
        """The from-scratch architecture: the demo's (the Train tab's defaults), or a tiny one."""
        from vitexplorer.core.architecture import ARCH_DEFAULTS
        from vitexplorer.core.vit import SmallViTConfig

        if self.quick:
            return SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2)
        return SmallViTConfig(num_classes=10, **ARCH_DEFAULTS)

    def same_images(self, config: object, size: int) -> object:
        """The subsets the engine picks for ``config``, for the plain loop."""
        from vitexplorer.core.datasets import load_subsets

        return load_subsets(self.dataset, per_class=config.per_class, seed=config.seed,
                            test_per_class=config.test_per_class,
                            val_fraction=config.val_fraction, image_size=size)  # fmt: skip


def finetune_row(s: Setting, model: str) -> tuple[str, dict[str, float]]:
    """One head-only epoch of ``model`` (random weights): the engine against a plain loop."""
    from vitexplorer.core.models import load_model
    from vitexplorer.core.training import FinetuneConfig

    torch.manual_seed(0)
    tiny = s.shape() if model == "small_vit" else None
    base = load_model(model, "none", s.device, small_config=tiny)
    plain = copy.deepcopy(base.module)  # before the engine takes ``base`` over
    config = FinetuneConfig(per_class=s.per_class, test_per_class=s.test_per_class, epochs=1,
                            freeze="head", probes=0)  # fmt: skip
    result, whole, epoch, _ = run_engine(base, s, config)
    for p in plain.parameters():
        p.requires_grad_(False)
    owner = plain.heads if hasattr(plain, "heads") else plain  # torchvision's, or the small ViT's
    owner.head = nn.Linear(owner.head.in_features, s.dataset.num_classes, device=s.device)
    nn.init.zeros_(owner.head.weight)  # as the engine's new head
    nn.init.zeros_(owner.head.bias)
    data = s.same_images(config, base.spec.image_size)
    seconds, acc = plain_loop(plain, list(owner.head.parameters()), data, base.spec, s.device,
                              lr=config.lr, weight_decay=config.weight_decay,
                              batch=config.batch_size)  # fmt: skip
    cached = "frozen part cached" if result.cached else "uncached"
    text = (
        f"{base.spec.display_name}, head only, {s.source}: engine {whole:.2f} s (its epoch "
        f"{epoch:.2f} s, {cached}) against the plain loop {seconds:.2f} s: engine / plain "
        f"{whole / seconds:.2f}; test accuracy {result.test_acc:.1%} against {acc:.1%}"
    )
    return text, {"engine_s": whole, "plain_s": seconds, "ratio": whole / seconds}


def scratch_row(s: Setting) -> tuple[str, dict[str, float]]:
    """One epoch from scratch with the Train tab's recipe: the engine against a plain loop."""
    from vitexplorer.core.architecture import default_warmup
    from vitexplorer.core.models import load_model
    from vitexplorer.core.training import TrainConfig

    config = TrainConfig(per_class=s.per_class, test_per_class=s.test_per_class, epochs=1,
                         probes=0, warmup_epochs=default_warmup(1))  # fmt: skip
    shape = s.shape()
    torch.manual_seed(0)
    base = load_model("small_vit", "none", s.device, small_config=shape)
    result, whole, epoch, _ = run_engine(base, s, config)
    torch.manual_seed(0)  # the same first weights
    loaded = load_model("small_vit", "none", s.device, small_config=shape)
    plain, data = loaded.module, s.same_images(config, shape.image_size)
    steps = math.ceil(len(data.train) / config.batch_size)
    seconds, acc = plain_loop(plain, list(plain.parameters()), data, loaded.spec, s.device,
                              lr=config.lr, weight_decay=config.weight_decay,
                              batch=config.batch_size, smoothing=config.label_smoothing,
                              clip=config.clip_grad, crop_flip=True,
                              warmup=round(config.warmup_epochs * steps))  # fmt: skip
    text = (
        f"small ViT {shape.depth}x{shape.width}, crop-flip, {s.source}: engine {whole:.2f} s "
        f"(its epoch {epoch:.2f} s) against the plain loop {seconds:.2f} s: engine / plain "
        f"{whole / seconds:.2f}; test accuracy {result.test_acc:.1%} against {acc:.1%}"
    )
    return text, {"engine_s": whole, "plain_s": seconds, "ratio": whole / seconds}


def memory_row(s: Setting, batch: int, mixed: bool) -> tuple[str, dict[str, float]]:
    """The estimate the Train tab and ``train`` check against the peak of a real run (its first
    steps: the training set holds a few batches)."""
    from vitexplorer.core.architecture import default_warmup, size_text, training_bytes
    from vitexplorer.core.models import load_model
    from vitexplorer.core.training import TrainConfig

    shape = s.shape()
    config = TrainConfig(per_class=s.per_class, test_per_class=s.test_per_class, epochs=1,
                         probes=0, batch_size=batch, mixed_precision=mixed,
                         warmup_epochs=default_warmup(1))  # fmt: skip
    activations, weights = training_bytes(shape, batch)
    torch.manual_seed(0)
    _, _, _, peak = run_engine(load_model("small_vit", "none", s.device, small_config=shape), s,
                               config)  # fmt: skip
    estimate = activations + weights
    text = (f"estimate {size_text(estimate)} ({size_text(activations)} of activations) against "
            f"max_memory_allocated {size_text(peak)}: measured / estimate "
            f"{peak / estimate:.2f}")  # fmt: skip
    return text, {"estimate": estimate, "measured": peak}


def oom_row(device: torch.device, model: str = "vit_b_16") -> tuple[str, dict[str, float]]:
    """A batch no GPU holds, through the engine; the line the command line prints for it."""
    from vitexplorer.cli.common import PROG
    from vitexplorer.core.datasets import DatasetSplits, LabelledImages
    from vitexplorer.core.models import load_model
    from vitexplorer.core.training import FinetuneConfig, Started, TrainingError, finetune

    n = 1000  # a class: 9,000 training images of 224 px in one batch
    data = np.random.default_rng(0).integers(0, 256, (10 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), n)
    dataset = DatasetSplits("random", "", tuple(f"class {i}" for i in range(10)),
                            LabelledImages(labels, arrays=data), None)  # fmt: skip
    release()
    base = load_model(model, "none", device)
    config = FinetuneConfig(per_class=n - 50, test_per_class=50, freeze="none", epochs=1,
                            batch_size=65536, probes=0)  # fmt: skip
    message, images = None, 0
    try:
        for event in finetune(base, dataset, config):
            if isinstance(event, Started):
                images = min(event.num_train, config.batch_size)
    except TrainingError as exc:
        message = f"{PROG}: {' '.join(str(exc).split())}"
    del base
    release()
    left = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    if message is None:
        raise RuntimeError("no out-of-memory error: the batch fitted")
    text = (f"{message!r} (the batch held {images:,} images; afterwards {left:.0f} MiB still "
            f"allocated)")  # fmt: skip
    return text, {"left_mib": left, "batch_images": images}


def training_rows(table: Table, device: torch.device, quick: bool) -> None:
    per_class, test_per_class = TRAINING_SIZES[quick]
    dataset, source = training_images(per_class, test_per_class, quick)
    s = Setting(device, quick, dataset, source, per_class, test_per_class)
    model = "small_vit" if quick else "vit_b_16"
    table.run("fine-tune", "1 epoch: engine against a plain loop", lambda: finetune_row(s, model))
    table.run("scratch", "1 epoch: engine against a plain loop", lambda: scratch_row(s))
    for batch in (128, 1024):
        for mixed in (False, True):
            what = f"train estimate, batch {batch}, {'bfloat16' if mixed else 'float32'}"
            if s.cuda:
                table.run("memory", what, lambda b=batch, m=mixed: memory_row(s, b, m))
            else:
                table.skip("memory", what, no_cuda(device))


# ---------------------------------------------------------------------------------------------
# The maps on CUDA against the CPU's


def maps_on(name: str, weights: str, device: torch.device) -> dict[str, np.ndarray]:
    from PIL import Image

    from vitexplorer.core.analysis import analyze_image
    from vitexplorer.core.data import preprocess
    from vitexplorer.core.methods import MethodOptions, explanation_map
    from vitexplorer.core.models import load_model

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
    from vitexplorer.core.models import resolve_device

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
    try:
        options = parse(argv)
        table = run(options, lambda line: print(line, flush=True))
    except ValueError as exc:  # an unknown device
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    return 1 if any(row.status == "error" for row in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
