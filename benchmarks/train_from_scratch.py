"""Training the small ViT from scratch: vitexplorer's engine against a plain PyTorch loop.

Both train the same architecture (the demo's: 32 px, 4 px patches, width 192, 6 blocks, 3 heads,
MLP x2) from the same seed on the same images of a folder of class subfolders with train/ and
test/ inside (CIFAR-10 as a folder: ``../shared/data/cifar10``), for the same epochs, with the
same recipe (AdamW 1e-3, weight decay 0.05, label smoothing 0.1, batch 128, warm-up then cosine,
gradient clipping 1.0, random 32 px crops of the 4 px padded image and flips, bfloat16 autocast
where the engine would use it). The plain loop is what a tutorial writes: torchvision's
``ImageFolder`` with PIL transforms and a ``DataLoader`` with worker processes.

Each contender runs in its own process, one after the other, so that its peak memory (the
process's maximum resident set) is its own; the figure is training images per second over the
epochs (loading the images before the first epoch not included, reported apart), the test
accuracy after the last epoch, and the peak memory.

    python benchmarks/train_from_scratch.py DATA_FOLDER [--epochs 1] [--per-class 4500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def run_engine(args: argparse.Namespace) -> dict:
    """``vitexplorer train`` with the recipe above; its JSON lines give the epochs' seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "vitexplorer", "train", "--data", args.data,
            "--out", os.path.join(tmp, "m.safetensors"), "--epochs", str(args.epochs),
            "--per-class", str(args.per_class + args.per_class // 9),
            "--test-per-class", str(args.test_per_class), "--seed", str(args.seed),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vitexplorer train failed: {done.stderr.strip()[-400:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    epochs = [line for line in lines if "epoch" in line and "seconds" in line]
    test = next((line for line in lines if "test_acc" in line), {})
    seconds = sum(line["seconds"] for line in epochs)
    return {
        "seconds": seconds,
        "images_per_s": args.per_class * 10 * len(epochs) / seconds,
        "test_acc": test.get("test_acc"),
        "wall": wall,
    }


def plain_loop(args: argparse.Namespace) -> dict:
    """The tutorial's loop, in this process (the parent measures its memory)."""
    import math

    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from vitexplorer.core.models.vit import SmallViT, SmallViTConfig
    from vitexplorer.core.training.engine import autocast_dtype

    torch.manual_seed(args.seed)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    train_tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    train_all = datasets.ImageFolder(os.path.join(args.data, "train"), train_tf)
    test_all = datasets.ImageFolder(os.path.join(args.data, "test"), test_tf)

    def per_class(dataset: datasets.ImageFolder, count: int) -> Subset:
        seen: dict[int, int] = {}
        keep = []
        for i, label in enumerate(dataset.targets):
            if seen.get(label, 0) < count:
                seen[label] = seen.get(label, 0) + 1
                keep.append(i)
        return Subset(dataset, keep)

    train = per_class(train_all, args.per_class)
    test = per_class(test_all, args.test_per_class)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=2, drop_last=True)
    config = SmallViTConfig(
        image_size=32, patch_size=4, width=192, depth=6, heads=3, mlp_ratio=2.0,
        num_classes=10, drop_path=0.1,
    )  # fmt: skip
    model = SmallViT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = args.epochs * len(loader)
    warmup = max(1, min(5 * len(loader), steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    dtype = autocast_dtype(torch.device("cpu"), True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    seconds = 0.0
    for _ in range(args.epochs):
        model.train()
        started = time.perf_counter()
        for images, labels in loader:
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        seconds += time.perf_counter() - started
    model.eval()
    right = total = 0
    with torch.no_grad():
        for images, labels in DataLoader(test, batch_size=256, num_workers=2):
            right += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    images_seen = args.epochs * len(loader) * 128
    return {"seconds": seconds, "images_per_s": images_seen / seconds, "test_acc": right / total}


def measured(name: str, args: argparse.Namespace) -> dict:
    """Run one contender in a child process; its result and its peak resident memory."""
    command = [sys.executable, __file__, args.data, "--child", name]
    command += ["--epochs", str(args.epochs), "--per-class", str(args.per_class)]
    command += ["--test-per-class", str(args.test_per_class), "--seed", str(args.seed)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{name} failed (status {status})")
    result = json.loads(out.strip().splitlines()[-1])
    # the engine's own peak is its grandchild's (vitexplorer train), reported by the child
    result["peak_mb"] = result.get("peak_mb") or usage.ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a folder with train/ and test/ class subfolders")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=4500, help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="both contenders' seed")
    parser.add_argument("--child", choices=["engine", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "engine":
        result = run_engine(args)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if args.child == "plain":
        print(json.dumps(plain_loop(args)))
        return
    results = {name: measured(name, args) for name in ("engine", "plain")}
    print(f"{args.epochs} epoch(s), {args.per_class} training images per class, CPU")
    for name, r in results.items():
        acc = "-" if r["test_acc"] is None else f"{100 * r['test_acc']:.1f}%"
        print(
            f"{name:<7} {r['images_per_s']:7.0f} images/s  {r['seconds']:7.1f} s training  "
            f"test accuracy {acc}  peak memory {r['peak_mb']:.0f} MB"
        )
    ratio = results["engine"]["images_per_s"] / results["plain"]["images_per_s"]
    print(f"engine / plain loop: {ratio:.2f}x images per second")


if __name__ == "__main__":
    main()
