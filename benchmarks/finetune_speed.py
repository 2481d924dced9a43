"""Head-only fine-tuning of torchvision's ViT-B/32 on the CPU: vitexplorer's engine against a
plain PyTorch loop written the usual way, on the same images, from the same weights, in one run.

    python benchmarks/finetune_speed.py [--data DIR] [--weights none|PATH] [--quick]
                                        [--per-class 200] [--test-per-class 50] [--epochs 5]

The task (issue 3): a class-balanced subset of CIFAR-10, 200 images per class (2,000 in all, 10%
of each class held out for validation), 224 px, 5 epochs, only a new head trains. Target: the
engine at least 4x faster, with test accuracy within 1 point.

- Data: ../shared/data/cifar10, an image-folder copy of CIFAR-10 (class folders under train/ and
  test/). Both sides use exactly the same files: the engine's own seeded selection
  (``load_subsets``: training, validation and test images, as file paths) is made first, outside
  the timings, and the baseline's Dataset reads those paths.
- Model: ``vit_b_32`` with random weights by default (pretrained ones cannot be downloaded on the
  development machine); ``--weights PATH`` uses a local copy of real ones. The backbone is built
  once (seeded) and deep-copied for the baseline, so both start from the same weights, and both
  get a zero-initialised head, AdamW (lr 1e-3, weight decay 1e-4), a per-step cosine schedule,
  batch 64 and the same seed.
- The baseline, "the usual way": a Dataset that opens each file with PIL and applies
  Resize((224, 224)), ToTensor and Normalize per item; a DataLoader (batch 64, shuffled by a seeded
  generator, ``num_workers=2`` by default: what a typical user writes on a small machine;
  ``--workers`` changes it, and with 2 cores the workers compete with the model for them); the
  backbone frozen with requires_grad False; model.train(); the full forward every epoch; a
  validation pass every epoch and a test pass at the end.
- The engine: ``finetune`` with FinetuneConfig(per_class, test_per_class, freeze="head",
  epochs, seed), timed from opening the dataset folder (the scan of its 60,000 files included) to
  its Finished event. The baseline's time starts at building its Dataset. The engine runs twice
  where the CPU has AMX: in float32 (``mixed_precision=False``, the like-for-like comparison),
  and with its default settings, whose forward passes then run in bfloat16.
- "train phase": from the start to the end of the last epoch (validation included), i.e.
  everything but the final test pass.

Also measured: resizing 32x32 uint8 images to the model's normalised 224 px input one image at a
time with PIL (Resize, ToTensor, Normalize, as the baseline's Dataset does) against one batched
``to_model_input`` call over the same images, in images per second.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from vitexplorer.core.models.loading import LoadedModel, load_model
from vitexplorer.core.training.config import FinetuneConfig
from vitexplorer.core.training.datasets import load_subsets, open_dataset, to_model_input
from vitexplorer.core.training.engine import autocast_dtype, finetune
from vitexplorer.core.training.events import Epoch, Finished, Stage, Started

BATCH = 64


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--weights", default="none", help="none (random) or a local weights file")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="the baseline's DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="20 per class, 10 test per class, 2 epochs"
    )
    args = parser.parse_args()
    if args.quick:
        args.per_class, args.test_per_class, args.epochs = 20, 10, 2
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        sys.exit(
            f"CIFAR-10 as an image folder (train/ and test/ with one folder per class) was not "
            f"found at {args.data}; pass its location with --data"
        )

    config = FinetuneConfig(
        per_class=args.per_class,
        test_per_class=args.test_per_class,
        freeze="head",
        epochs=args.epochs,
        batch_size=BATCH,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    base = load_model("vit_b_32", args.weights, "cpu")
    baseline_backbone = copy.deepcopy(base.module)  # before the engine takes ``base`` over
    fp32_base = LoadedModel(copy.deepcopy(base.module), base.spec, base.device)
    spec = base.spec
    precision = autocast_dtype(base.device, config.mixed_precision)
    precision_name = str(precision or torch.float32).removeprefix("torch.")

    # the engine's own selection, made once here, outside both timings
    dataset = open_dataset(args.data)
    subsets = load_subsets(
        dataset,
        per_class=config.per_class,
        test_per_class=config.test_per_class,
        val_fraction=config.val_fraction,
        seed=config.seed,
        image_size=spec.image_size,
        interpolation=spec.interpolation,
    )
    splits = {"train": subsets.train, "val": subsets.val, "test": subsets.test}
    print(
        f"ViT-B/32 ({spec.weights}), CPU, {torch.get_num_threads()} threads; head only; "
        f"{config.per_class} images per class ({len(subsets.train)} training, "
        f"{len(subsets.val)} validation), test {config.test_per_class} per class "
        f"({len(subsets.test)} images from test/), {config.epochs} epochs, batch {BATCH}, "
        f"AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}, cosine, seed {config.seed}",
        flush=True,
    )
    print(f"data: {args.data}", flush=True)

    resize_comparison(subsets.train.images[:256], spec)

    print("\nengine (vitexplorer.core.training.engine.finetune), float32 ...", flush=True)
    engine_fp32 = run_engine(fp32_base, args.data, replace(config, mixed_precision=False), splits)
    engine = engine_fp32
    if precision is not None:
        print(f"\nengine, default settings: forward passes in {precision_name} ...", flush=True)
        engine = run_engine(base, args.data, config, splits)
    print(
        "\nbaseline (PIL resize per image in a Dataset, full forward every epoch) ...", flush=True
    )
    baseline = run_baseline(baseline_backbone, spec, splits, config, args.workers)

    print("\nresults")
    runs = {"engine, float32": engine_fp32, "baseline": baseline}
    if precision is not None:
        runs = {f"engine, {precision_name}": engine, **runs}
    for name, r in runs.items():
        print(
            f"  {name:17s}: wall {r['wall']:7.1f} s, train phase {r['train']:7.1f} s, "
            f"test pass {r['wall'] - r['train']:6.1f} s, test accuracy {100 * r['test_acc']:.2f}%"
        )
    for name, r in runs.items():
        if name == "baseline":
            continue
        ratio = baseline["wall"] / r["wall"]
        train_ratio = baseline["train"] / r["train"]
        diff = 100 * (r["test_acc"] - baseline["test_acc"])
        print(
            f"  {name}: {ratio:.2f}x the baseline's speed (target at least 4x), train phase "
            f"{train_ratio:.2f}x; test accuracy {diff:+.2f} points (target within 1 point)"
        )


def resize_comparison(images: torch.Tensor, spec) -> None:
    """Images per second: per-image PIL transforms against one batched tensor resize."""
    pil_images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    per_image = transforms.Compose(
        [
            transforms.Resize((spec.image_size, spec.image_size)),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    per_image(pil_images[0])
    to_model_input(images[:8], spec.image_size, spec.mean, spec.std, spec.interpolation)
    rates: dict[str, list[float]] = {"pil": [], "batched": []}
    for _ in range(3):
        start = time.perf_counter()
        from_pil = torch.stack([per_image(img) for img in pil_images])
        rates["pil"].append(len(images) / (time.perf_counter() - start))
        start = time.perf_counter()
        batched = to_model_input(images, spec.image_size, spec.mean, spec.std, spec.interpolation)
        rates["batched"].append(len(images) / (time.perf_counter() - start))
    pil, batch = (max(rates[k]) for k in ("pil", "batched"))
    print(
        f"resize {len(images)} images 32x32 -> {spec.image_size}, normalised, CPU, best of 3: "
        f"PIL per image {pil:,.0f} images/s; one batched to_model_input {batch:,.0f} images/s "
        f"({batch / pil:.2f}x PIL; largest difference from PIL "
        f"{float((from_pil - batched).abs().max()):.3f} in normalised units)",
        flush=True,
    )


def run_engine(base: LoadedModel, data: Path, config: FinetuneConfig, splits: dict) -> dict:
    start = time.perf_counter()
    dataset = open_dataset(data)
    scanned = time.perf_counter()
    marks: dict[str, float] = {}
    train_end = start
    result = None
    for event in finetune(base, dataset, config):
        now = time.perf_counter()
        if isinstance(event, Stage) and event.done >= event.total:
            marks[event.name] = now
        elif isinstance(event, Started):
            expected = (len(splits["train"]), len(splits["val"]), len(splits["test"]))
            assert (event.num_train, event.num_val, event.num_test) == expected, "not the same"
        elif isinstance(event, Epoch):
            train_end = now
            print(
                f"  epoch {event.epoch}: train loss {event.train_loss:.4f}, train acc "
                f"{event.train_acc:.3f}, val acc {event.val_acc:.3f}, {event.seconds:.2f} s",
                flush=True,
            )
        elif isinstance(event, Finished):
            result = event.result
    wall = time.perf_counter() - start
    assert result is not None and result.test_acc is not None
    test_sources = set(splits["test"].sources)
    assert all(sample.source in test_sources for sample in result.samples), "not the same"
    loaded = marks.get("loading", scanned)
    features = marks.get("features", loaded)
    print(
        f"  scan of the folder {scanned - start:.1f} s, decoding the subsets "
        f"{loaded - scanned:.1f} s, frozen features (once) {features - loaded:.1f} s, "
        f"epochs {train_end - features:.1f} s, test {start + wall - train_end:.1f} s; "
        f"wall {wall:.1f} s",
        flush=True,
    )
    return {"wall": wall, "train": train_end - start, "test_acc": result.test_acc}


class FileImages(Dataset):
    """Image files and labels, opened with PIL and transformed one at a time."""

    def __init__(self, paths: list[str], labels: list[int], transform) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), self.labels[i]


def run_baseline(
    backbone: nn.Module,
    spec,
    splits: dict,
    config: FinetuneConfig,
    workers: int,
) -> dict:
    start = time.perf_counter()
    transform = transforms.Compose(
        [
            transforms.Resize((spec.image_size, spec.image_size)),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )

    def loader(split: str, shuffle: bool) -> DataLoader:
        data = splits[split]
        files = FileImages(data.sources, data.labels.tolist(), transform)
        generator = torch.Generator().manual_seed(config.seed) if shuffle else None
        return DataLoader(
            files, batch_size=BATCH, shuffle=shuffle, generator=generator, num_workers=workers
        )

    train_loader, val_loader, test_loader = (
        loader("train", True),
        loader("val", False),
        loader("test", False),
    )
    model = backbone
    for p in model.parameters():
        p.requires_grad = False
    model.heads.head = nn.Linear(model.heads.head.in_features, 10)
    nn.init.zeros_(model.heads.head.weight)
    nn.init.zeros_(model.heads.head.bias)
    optimizer = torch.optim.AdamW(
        model.heads.head.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )
    criterion = nn.CrossEntropyLoss()

    def evaluate(data: DataLoader) -> tuple[float, float]:
        model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for x, y in data:
                logits = model(x)
                loss_sum += float(criterion(logits, y)) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                n += len(y)
        return loss_sum / n, correct / n

    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            logits = model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        _, val_acc = evaluate(val_loader)
        print(
            f"  epoch {epoch}: train loss {loss_sum / n:.4f}, train acc {correct / n:.3f}, "
            f"val acc {val_acc:.3f}, {time.perf_counter() - epoch_start:.2f} s",
            flush=True,
        )
    train_end = time.perf_counter()
    _, test_acc = evaluate(test_loader)
    wall = time.perf_counter() - start
    print(f"  test {wall - (train_end - start):.1f} s; wall {wall:.1f} s", flush=True)
    return {"wall": wall, "train": train_end - start, "test_acc": test_acc}


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
