"""``vitexplorer finetune`` run in-process: JSON lines, the checkpoint, errors, Ctrl-C, progress."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from vitexplorer.cli import main
from vitexplorer.cli.finetune import FinetuneReport, finetune_parser
from vitexplorer.cli.settings import config_values
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.vit import SmallViTConfig
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.config import FinetuneConfig
from vitexplorer.core.training.datasets import load_subsets, open_dataset, to_model_input
from vitexplorer.core.training.events import Epoch, Stage

TINY = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=10)
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
CLASSES = ["blue", "green", "red"]  # sorted folder names
EPOCH_KEYS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
# a small run: 8 training images per class (one held out for validation), 4 test images per class
SMALL = ["--per-class", "8", "--test-per-class", "4", "--batch-size", "8", "--lr", "0.01"]


def _write_colours(root: Path, per_class: int = 12, size: int = 16) -> Path:
    """One folder per class, each class a noisy colour: easy, and real files."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_colours(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def finetuned(base: Path, colours: Path, tmp_path_factory: pytest.TempPathFactory):
    """One CLI run: (exit code, stdout, stderr, checkpoint path)."""
    out = tmp_path_factory.mktemp("out") / "colours.safetensors"
    capture_out, capture_err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = capture_out, capture_err
    try:
        code = _finetune(base, colours, out, *SMALL, "--epochs", "3")
    finally:
        sys.stdout, sys.stderr = saved
    return code, capture_out.getvalue(), capture_err.getvalue(), out


def _finetune(model: Path | str, data: Path | str, out: Path | str, *options: str) -> int:
    args = ["--model", str(model), "--data", str(data), "--out", str(out), *options]
    return main(["finetune", *args, "--device", "cpu"])


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_defaults_are_the_engines():
    required = ["--model", "small_vit", "--data", "d", "--out", "m.safetensors"]
    parsed = finetune_parser().parse_args(required)
    given = config_values(parsed, FinetuneConfig)
    assert FinetuneConfig(**given) == FinetuneConfig()
    assert set(given) == set(FinetuneConfig().to_dict())  # every setting is an option
    flags = ["--augment", "--no-mixed-precision", "--freeze", "last:1", "--lr", "0.5"]
    options = vars(finetune_parser().parse_args([*required, *flags]))
    assert (options["augment"], options["mixed_precision"]) == (True, False)
    assert (options["freeze"], options["lr"]) == ("last:1", 0.5)


@pytest.mark.slow
def test_json_lines_per_epoch_then_the_results(finetuned):
    code, out, err, path = finetuned
    assert code == 0, err
    lines = _json_lines(out)  # stdout is nothing but JSON lines
    assert len(lines) == 4
    for number, record in enumerate(lines[:3], start=1):
        assert list(record) == EPOCH_KEYS
        assert record["epoch"] == number
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["val_acc"] <= 1
        assert record["train_loss"] > 0 and record["seconds"] > 0
    final = lines[3]
    assert final["class_names"] == CLASSES
    assert final["checkpoint"] == str(path) and final["cancelled"] is False
    assert final["steps"] == 3 * 3  # 21 training images in batches of 8, three epochs
    assert final["epochs_completed"] == 3
    confusion = np.array(final["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum(1).tolist() == [4, 4, 4]
    assert final["test_acc"] == pytest.approx(np.trace(confusion) / 12)
    assert final["per_class_acc"] == pytest.approx((confusion.diagonal() / 4).tolist())
    assert final["test_acc"] > 0.5  # three colours are easy, even for a random tiny backbone
    # stderr: a few lines for people, none per batch (it is not a terminal here)
    progress = _lines(err)
    assert 3 <= len(progress) <= 6 and "\r" not in err
    assert progress[0].startswith("loading images: 36 images")
    assert progress[-1].startswith("testing: 12 images")


@pytest.mark.slow
def test_the_checkpoint_is_the_fine_tuned_model(finetuned, base: Path, colours: Path):
    path = finetuned[3]
    model = load_model(str(path), device="cpu")
    assert model.spec.class_names == tuple(CLASSES)
    assert model.spec.image_size == 32 and model.spec.num_layers == 2
    meta = read_weights(path)[1]["finetune"]
    assert meta["settings"]["epochs"] == 3 and meta["settings"]["per_class"] == 8
    assert meta["dataset"] == "colours" and meta["freeze_policy"] == "head"
    assert [e["epoch"] for e in meta["history"]] == [1, 2, 3]
    assert meta["metrics"]["test_acc"] == _json_lines(finetuned[1])[-1]["test_acc"]

    # the engine run directly with the same settings gives the same model, logit for logit
    config = FinetuneConfig(per_class=8, test_per_class=4, batch_size=8, lr=0.01, epochs=3, seed=0)
    dataset = open_dataset(colours)
    events = list(training.finetune(load_model(str(base), device="cpu"), dataset, config))
    expected = events[-1].result.model
    test = load_subsets(
        dataset, per_class=8, test_per_class=4, val_fraction=0.1, seed=0, image_size=32
    ).test
    spec = model.spec
    x = to_model_input(test.images, spec.image_size, spec.mean, spec.std)
    with torch.no_grad():
        logits = model.module(x)
        torch.testing.assert_close(logits, expected.module(x), rtol=0, atol=1e-6)
    assert (logits.argmax(1) == test.labels).float().mean().item() == pytest.approx(
        _json_lines(finetuned[1])[-1]["test_acc"]
    )


@pytest.mark.slow
def test_analyze_names_the_datasets_classes(finetuned, tmp_path: Path, capsys):
    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), COLOURS["red"]).save(image)
    out = tmp_path / "maps"
    assert main(["analyze", str(image), "--model", str(finetuned[3]), "--out", str(out)]) == 0
    facts = json.loads((out / "red.json").read_text())
    assert facts["weights"] == "file colours.safetensors"
    names = [p["name"] for p in facts["predictions"]]
    assert sorted(names) == CLASSES  # all three classes, no ImageNet or "class 7" names
    assert names[0] == "red"
    assert capsys.readouterr().out.startswith("red: red ")


@pytest.mark.slow
def test_a_fine_tuned_checkpoint_fine_tunes_again(finetuned, colours: Path, tmp_path: Path, capsys):
    out = tmp_path / "again.safetensors"
    code = _finetune(finetuned[3], colours, out, *SMALL, "--epochs", "1", "--freeze", "last:1")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(_json_lines(captured.out)) == 2
    meta = read_weights(out)[1]["finetune"]
    assert meta["base"].endswith("file colours.safetensors")
    assert meta["freeze_policy"] == "last:1"
    assert load_model(str(out)).spec.class_names == tuple(CLASSES)


def _no_class_images(data: Path) -> None:
    (data / "purple").mkdir()


def _unwritable_out(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere chmod allows; /proc refuses everyone
        if not Path("/proc").is_dir():
            pytest.skip("needs /proc or a user other than root")
        return Path("/proc/model.safetensors")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    return folder / "model.safetensors"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing data", "nowhere does not exist; give a folder of class subfolders"),
        ("empty class", "no images in the class folder(s) purple"),
        ("too few images", "not enough images for 30 training and 2 test images per class"),
        ("wrong suffix", "a checkpoint's name must end in .safetensors"),
        ("missing out folder", "the folder"),
        ("out is a folder", "is a folder; give the checkpoint's file name"),
        ("unwritable out", "cannot write to"),
        ("huge lr", "the learning rate must be a positive number no greater than 10"),
        ("bad freeze", "K must be a whole number from 1 to 2"),
        ("bad lr", "the learning rate must be a positive number"),
        ("unknown model", "unknown model 'vit_z_99'"),
        ("missing model", "nope.safetensors does not exist; give a checkpoint file"),
        ("cifar10 unreachable", "could not download CIFAR-10"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_no_file(
    case: str, message: str, base: Path, tmp_path: Path, monkeypatch, capsys
):
    data = _write_colours(tmp_path / "data", per_class=6)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.safetensors"
    model: Path | str = base
    options = ["--per-class", "4", "--test-per-class", "2", "--epochs", "1"]
    if case == "missing data":
        data = tmp_path / "nowhere"
    elif case == "empty class":
        _no_class_images(data)
    elif case == "too few images":
        options = ["--per-class", "30", "--test-per-class", "2"]
    elif case == "wrong suffix":
        out = out_dir / "model.pt"
    elif case == "missing out folder":
        out = tmp_path / "missing" / "model.safetensors"
    elif case == "out is a folder":
        out = out_dir / "taken.safetensors"
        out.mkdir()
    elif case == "unwritable out":
        out = _unwritable_out(tmp_path)
    elif case == "huge lr":  # once trained to a NaN loss; now refused before any work
        options += ["--batch-size", "2", "--lr", "1e30"]
    elif case == "bad freeze":
        options += ["--freeze", "last:5"]
    elif case == "bad lr":
        options += ["--lr", "0"]
    elif case == "unknown model":
        model = "vit_z_99"
    elif case == "missing model":
        model = tmp_path / "nope.safetensors"
    elif case == "cifar10 unreachable":
        monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
        data = "cifar10"
        options += ["--data-root", str(tmp_path / "cache")]
    assert _finetune(model, data, out, *options) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = [line for line in _lines(captured.err) if line.startswith("vitexplorer:")]
    assert len(errors) == 1 and errors[0] == _lines(captured.err)[-1]
    assert message in errors[0]
    assert captured.out == ""  # no epoch finished, and never a result line
    assert not (out.is_file() or out.with_suffix(".safetensors").is_file())
    assert [p.name for p in out_dir.iterdir()] in ([], ["taken.safetensors"])  # no temp files


def _interrupt_after_first_epoch(monkeypatch, times: int) -> None:
    """Press Ctrl-C ``times`` times when the engine reports its first epoch."""
    real = training.finetune

    def pressed(*args, **kwargs):
        for event in real(*args, **kwargs):
            yield event
            if isinstance(event, Epoch) and event.epoch == 1:
                for _ in range(times):
                    signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(training, "finetune", pressed)


def test_ctrl_c_stops_after_the_batch_and_saves_nothing(
    base: Path, colours: Path, tmp_path: Path, monkeypatch, capsys
):
    _interrupt_after_first_epoch(monkeypatch, times=1)
    out = tmp_path / "model.safetensors"
    assert _finetune(base, colours, out, *SMALL, "--epochs", "50") == 130
    captured = capsys.readouterr()
    lines = _json_lines(captured.out)
    assert [line["epoch"] for line in lines[:-1]] == [1]
    assert lines[-1]["cancelled"] is True and lines[-1]["checkpoint"] is None
    assert lines[-1]["test_acc"] is None and lines[-1]["epochs_completed"] == 1
    assert _lines(captured.err)[-1] == "vitexplorer: interrupted; nothing was saved"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_second_ctrl_c_stops_at_once(
    base: Path, colours: Path, tmp_path: Path, monkeypatch, capsys
):
    _interrupt_after_first_epoch(monkeypatch, times=2)
    out = tmp_path / "model.safetensors"
    assert _finetune(base, colours, out, *SMALL, "--epochs", "50") == 130
    captured = capsys.readouterr()
    assert [line["epoch"] for line in _json_lines(captured.out)] == [1]
    assert _lines(captured.err)[-1] == "vitexplorer: interrupted"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _write_cifar_archive(path: Path) -> None:
    """A tiny archive in CIFAR-10's official format: 10 training and 3 test images per class."""
    rng = np.random.default_rng(0)

    def batch(n: int) -> bytes:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        return pickle.dumps({"data": data, "labels": [i % 10 for i in range(n)]})

    folder = path.parent / "source" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    for name, _ in CIFAR10.train_list:
        (folder / name).write_bytes(batch(20))
    (folder / "test_batch").write_bytes(batch(30))
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=CIFAR10.base_folder)


@pytest.mark.slow
def test_cifar10_is_downloaded_with_progress_on_stderr(base: Path, tmp_path: Path, monkeypatch):
    import torchvision.datasets.cifar

    archive = tmp_path / CIFAR10.filename
    _write_cifar_archive(archive)
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    # test files cannot match the official batch files' md5 sums
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    root = tmp_path / "cache"
    out = tmp_path / "cifar.safetensors"
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    options = ["--data-root", str(root), "--per-class", "4", "--test-per-class", "2"]
    assert _finetune(base, "cifar10", out, *options, "--epochs", "1") == 0, stderr.getvalue()
    lines = _json_lines(stdout.getvalue())
    assert len(lines) == 2 and lines[-1]["class_names"][:2] == ["airplane", "automobile"]
    err = stderr.getvalue().split("\n")
    assert err[0] == f"Downloading CIFAR-10, 170 MB, to {root}"
    assert err[1].startswith("\r[") and err[1].endswith("100%")
    assert (root / CIFAR10.base_folder).is_dir()
    assert load_model(str(out)).spec.class_names[9] == "truck"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stage(name: str, done: int, total: int) -> Stage:
    return Stage(name, done, total, 0.0)


def test_progress_on_a_terminal_is_one_line_redrawn(monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr("vitexplorer.cli.finetune.time.monotonic", lambda: next(clock))
    out, err = io.StringIO(), _Terminal()
    report = FinetuneReport(out, err)
    for done in (64, 128, 200):
        report.show(_stage("loading", done, 200))
    assert (
        err.getvalue()
        == (
            "\rloading images: 64/200\rloading images: 128/200"  # redrawn in place
            "\r" + " " * 23 + "\r"  # wiped
            "loading images: 200 images, 5.0 s\n"  # and the stage's one lasting line
        )
    )
    assert out.getvalue() == ""


def test_progress_in_a_log_is_a_line_per_stage_and_per_interval(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 40.0, 41.0, 42.0])
    monkeypatch.setattr("vitexplorer.cli.finetune.time.monotonic", lambda: next(clock))
    err = io.StringIO()
    report = FinetuneReport(io.StringIO(), err, interval=30.0)
    for done in (10, 20, 30, 40):
        report.show(_stage("features", done, 40))
    assert err.getvalue() == (
        "computing the frozen part's outputs: 30/40\n"
        "computing the frozen part's outputs: 40 images, 41.0 s\n"
    )
