"""The training rows of ``benchmarks/gpu_check.py``: one epoch of the engine
(``core.training.finetune``, which the command line and the Train tab run) against a minimal
hand-written PyTorch loop on the same images, from the same weights, at the same batch size and
precision; the memory estimate the Train tab and ``vitexplorer train`` check before training
against ``torch.cuda.max_memory_allocated``; and a real out-of-memory error with the line the
user then reads. Each function returns a row's (text, values); the caller guards it.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


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


def training_images(per_class: int, test_per_class: int, quick: bool) -> tuple[object, str]:
    """A DatasetSplits held in memory (10 classes, 32 px), and where its images came from: the
    repository's sample first for a quick run (the same everywhere), the shared CIFAR-10 first
    for a full one."""
    from PIL import Image

    from vitexplorer.core.training.datasets import DatasetSplits, LabelledImages

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
        where = f"{folder.parent.name}/{folder.name}"
        if distinct >= need:
            return splits, where
        return splits, f"{where} ({distinct} a class, repeated: test images are training images)"
    n = per_class + test_per_class
    data = rng.integers(0, 256, (10 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), n)
    names = tuple(f"class {i}" for i in range(10))
    return DatasetSplits("random", "", names, LabelledImages(labels, arrays=data), None), "random"


def run_engine(base: object, s: Setting, config: object) -> tuple[object, float, float, int]:
    """The engine to its end: (result, its whole run's seconds, the epoch's seconds, the peak of
    CUDA memory allocated from the start of the run, 0 on the CPU)."""
    from vitexplorer.core.training.engine import finetune
    from vitexplorer.core.training.events import Epoch, Finished

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
    from vitexplorer.core.training.engine import autocast_dtype

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
        from vitexplorer.core.models.architecture import ARCH_DEFAULTS
        from vitexplorer.core.models.vit import SmallViTConfig

        if self.quick:
            return SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2)
        return SmallViTConfig(num_classes=10, **ARCH_DEFAULTS)

    def same_images(self, config: object, size: int) -> object:
        """The subsets the engine picks for ``config``, for the plain loop."""
        from vitexplorer.core.training.datasets import load_subsets

        return load_subsets(self.dataset, per_class=config.per_class, seed=config.seed,
                            test_per_class=config.test_per_class,
                            val_fraction=config.val_fraction, image_size=size)  # fmt: skip


def finetune_row(s: Setting, model: str) -> tuple[str, dict[str, float]]:
    """One head-only epoch of ``model`` (random weights): the engine against a plain loop."""
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.training.config import FinetuneConfig

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
    from vitexplorer.core.models.architecture import default_warmup
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.training.config import TrainConfig

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
    from vitexplorer.core.models.architecture import default_warmup, size_text, training_bytes
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.training.config import TrainConfig

    shape = s.shape()
    config = TrainConfig(per_class=s.per_class, test_per_class=s.test_per_class, epochs=1,
                         probes=0, batch_size=batch, mixed_precision=mixed,
                         warmup_epochs=default_warmup(1))  # fmt: skip
    activations, weights = training_bytes(shape, batch)
    release()
    before = torch.cuda.memory_allocated(s.device) if s.cuda else 0  # left by earlier rows
    torch.manual_seed(0)
    base = load_model("small_vit", "none", s.device, small_config=shape)
    _, _, _, peak = run_engine(base, s, config)
    measured, estimate = peak - before, activations + weights
    text = (f"estimate {size_text(estimate)} ({size_text(activations)} of activations, "
            f"{size_text(weights)} of weights, gradients, AdamW and the best copy) against "
            f"max_memory_allocated {size_text(measured)} (the model's weights included): "
            f"measured / estimate {measured / estimate:.2f}")  # fmt: skip
    return text, {"estimate": estimate, "measured": measured}


def oom_row(
    device: torch.device, model: str = "vit_b_16", n: int = 1000
) -> tuple[str, dict[str, float]]:
    """A batch no GPU holds (``n`` random images a class, all the training images in one batch
    of 224 px ones), through the engine; the line the command line prints for it."""
    from vitexplorer.cli.common import PROG
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.training.config import FinetuneConfig
    from vitexplorer.core.training.datasets import DatasetSplits, LabelledImages
    from vitexplorer.core.training.engine import finetune
    from vitexplorer.core.training.events import Started, TrainingError

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
