"""Hostile fine-tune settings and runs that go wrong: nothing unsafe is saved, nothing is a
traceback, and a model that cannot be written says why.

``HOSTILE_TRAINING_SETTINGS`` lists command-line fragments that ``FinetuneConfig.check`` must
refuse, for any later fuzz suite to reuse; ``NAMED`` says which words the refusal must contain.
"""

from __future__ import annotations

import errno
import io
import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_colour_dataset
from vitexplorer.cli import main
from vitexplorer.cli.finetune import finetune_parser
from vitexplorer.cli.settings import config_values
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.config import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_PER_CLASS,
    FinetuneConfig,
)
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.events import TrainingError
from vitexplorer.core.training.finetune_model import SplitViT

# (case id, command-line fragment): each must be refused before any model or data is read
HOSTILE_TRAINING_SETTINGS: list[tuple[str, list[str]]] = [
    ("seed-negative", ["--seed", "-1"]),
    ("seed-2**32", ["--seed", str(2**32)]),
    ("seed-2**70", ["--seed", str(2**70)]),
    ("warmup-inf", ["--warmup-epochs", "inf"]),
    ("warmup-nan", ["--warmup-epochs", "nan"]),
    ("warmup-negative", ["--warmup-epochs", "-1"]),
    ("warmup-longer-than-the-run", ["--warmup-epochs", "6", "--epochs", "5"]),
    ("momentum-nan", ["--momentum", "nan"]),
    ("momentum-1", ["--momentum", "1"]),
    ("momentum-negative", ["--momentum", "-0.5"]),
    ("momentum-inf", ["--momentum", "inf"]),
    ("lr-1e9", ["--lr", "1e9"]),
    ("lr-negative", ["--lr", "-1"]),
    ("lr-zero", ["--lr", "0"]),
    ("lr-nan", ["--lr", "nan"]),
    ("lr-inf", ["--lr", "inf"]),
    ("weight-decay-nan", ["--weight-decay", "nan"]),
    ("weight-decay-negative", ["--weight-decay=-1e-4"]),
    ("weight-decay-1e9", ["--weight-decay", "1e9"]),
    ("lr-times-weight-decay", ["--lr", "1", "--weight-decay", "2"]),
    ("label-smoothing-nan", ["--label-smoothing", "nan"]),
    ("label-smoothing-1", ["--label-smoothing", "1"]),
    ("val-fraction-nan", ["--val-fraction", "nan"]),
    ("val-fraction-1", ["--val-fraction", "1"]),
    ("val-fraction-negative", ["--val-fraction", "-0.1"]),
    ("val-fraction-inf", ["--val-fraction", "inf"]),
    ("batch-size-huge", ["--batch-size", "1000000"]),
    ("epochs-huge", ["--epochs", "100000"]),
    ("per-class-huge", ["--per-class", "10000000"]),
    ("test-per-class-huge", ["--test-per-class", str(2**64)]),
]
NAMED = {  # the words of the setting each refusal names
    "seed": "the seed",
    "warmup": "warm-up (warmup_epochs)",
    "momentum": "the momentum",
    "lr-times": "the learning rate times the weight decay",
    "lr": "the learning rate",
    "weight-decay": "the weight decay",
    "label-smoothing": "label smoothing",
    "val-fraction": "validation fraction (val_fraction)",
    "batch-size": "the batch size",
    "epochs": "the number of epochs",
    "per-class": "training images per class (per_class)",
    "test-per-class": "test images per class (test_per_class)",
}
REQUIRED = ["--model", "small_vit", "--data", "d", "--out", "m.safetensors"]
IDS = [case for case, _ in HOSTILE_TRAINING_SETTINGS]


def _named(case: str) -> str:
    return NAMED[max((key for key in NAMED if case.startswith(key)), key=len)]


def _config(fragment: list[str]) -> FinetuneConfig:
    """The engine's settings as the command line builds them from ``fragment``."""
    options = finetune_parser().parse_args([*REQUIRED, *fragment])
    return FinetuneConfig(**config_values(options, FinetuneConfig))


@pytest.mark.parametrize(("case", "fragment"), HOSTILE_TRAINING_SETTINGS, ids=IDS)
def test_check_refuses_every_hostile_setting(case: str, fragment: list[str]) -> None:
    with pytest.raises(ValueError) as refused:
        _config(fragment).check(2)
    message = str(refused.value)
    assert _named(case) in message
    assert "\n" not in message
    if "times" not in case:  # the value refused and the range allowed, in words
        assert "must be" in message and ", not " in message


def test_check_refuses_wrong_types() -> None:
    """What a program (or a settings file) might pass, not the command line."""
    bad = [
        ("seed", 1.5, "the seed must be a whole number"),
        ("epochs", True, "the number of epochs must be a whole number"),
        ("batch_size", "64", "the batch size must be a whole number"),
        ("lr", "0.1", "the learning rate must be a positive number"),
        ("momentum", None, "the momentum must be a number"),
        ("augment", "yes", "the augment setting must be true or false, not 'yes'"),
        ("mixed_precision", 1, "the mixed_precision setting must be true or false, not 1"),
        ("freeze", 3, "the freeze setting must be text, not 3"),
    ]
    for name, value, expected in bad:
        with pytest.raises(ValueError) as refused:
            FinetuneConfig(**{name: value}).check(2)
        assert str(refused.value).startswith(expected)


def test_check_accepts_the_edges() -> None:
    edges = [
        {"seed": 0}, {"seed": 2**32 - 1}, {"lr": MAX_LR}, {"lr": 1e-12},
        {"momentum": 0.0}, {"momentum": 0.999}, {"warmup_epochs": 5.0}, {"warmup_epochs": 0.5},
        {"val_fraction": 0.0}, {"label_smoothing": 0.99}, {"weight_decay": 0.0},
        {"batch_size": MAX_BATCH_SIZE}, {"epochs": MAX_EPOCHS},
        {"per_class": MAX_PER_CLASS}, {"lr": 0.5, "weight_decay": 1.9},
    ]  # fmt: skip
    for fields in edges:
        FinetuneConfig(**fields).check(2)


def _cli(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["finetune", *argv])
    return code, out.getvalue(), err.getvalue()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(("case", "fragment"), HOSTILE_TRAINING_SETTINGS, ids=IDS)
def test_the_command_line_refuses_them_before_reading_anything(
    case: str, fragment: list[str], tmp_path: Path, monkeypatch
) -> None:
    """Exit 2, one line, no traceback, no file: and before the model or the data are looked at
    (neither exists here, and the refusal is still the setting's)."""
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path / "nowhere")]
    code, stdout, stderr = _cli([*argv, "--out", str(out), *fragment], monkeypatch)
    assert code == 2
    assert "Traceback" not in stderr and stdout == ""
    assert len(_lines(stderr)) == 1 and stderr.startswith("vitexplorer: ")
    assert _named(case) in stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Runs that diverge: never a file with NaN weights


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("data") / "colours", 16, size=16)


# 12 images per class, 2 of them validate: 30 training images, one step per epoch; 4 test
ONE_STEP = FinetuneConfig(per_class=12, test_per_class=4, batch_size=64, epochs=3,
                          lr=1e-2, mixed_precision=False)  # fmt: skip
ONE_STEP_ARGS = ["--per-class", "12", "--test-per-class", "4", "--batch-size", "64",
                 "--epochs", "3", "--lr", "0.01", "--device", "cpu"]  # fmt: skip


def _poison_weights_after_step(monkeypatch, step: int = 1) -> None:
    """After optimiser step ``step``, one value of the new head becomes NaN: what a learning rate
    far too high does, without depending on how a given CPU rounds."""
    real = training._Run._optimizer

    def poisoned(self):
        optimizer, scheduler = real(self)

        def after_step(*_args) -> None:
            if self.steps + 1 == step:  # counted after the step
                with torch.no_grad():
                    self.split.head.weight[1, 2] = float("nan")

        optimizer.register_step_post_hook(after_step)
        return optimizer, scheduler

    monkeypatch.setattr(training._Run, "_optimizer", poisoned)


def _push_logits(monkeypatch, push: float) -> None:
    """Add ``push`` to every image's first logit: NaN, or a loss of about ``push``."""
    real = SplitViT.trainable

    def pushed(self, x):
        logits = real(self, x)
        return logits + torch.eye(logits.shape[1])[0] * push

    monkeypatch.setattr(SplitViT, "trainable", pushed)


def _engine(base: Path, colours: Path, config: FinetuneConfig = ONE_STEP) -> list:
    model = load_model(str(base), device="cpu")
    return list(training.finetune(model, open_dataset(colours), config))


def test_weights_that_become_nan_stop_training_at_the_epochs_end(
    base: Path, colours: Path, monkeypatch
) -> None:
    _poison_weights_after_step(monkeypatch)
    with pytest.raises(TrainingError) as stopped:
        _engine(base, colours)
    message = str(stopped.value)
    assert "the weights diverged (1 of 99 trainable values are NaN or infinite) in epoch 1" in (
        message
    )  # a head of 3 classes on 32 features: 99 values
    assert "lower the learning rate (now 0.01)" in message


def test_sgd_advice_names_the_momentum_too(base: Path, colours: Path, monkeypatch) -> None:
    _poison_weights_after_step(monkeypatch)
    config = FinetuneConfig(**{**ONE_STEP.to_dict(), "optimizer": "sgd", "momentum": 0.95})
    with pytest.raises(TrainingError, match=r"or the momentum \(now 0.95\)"):
        _engine(base, colours, config)


@pytest.mark.slow
@pytest.mark.parametrize(("push", "shown"), [(float("nan"), "nan"), (1e6, "6")])
def test_a_loss_that_explodes_or_is_nan_stops_with_advice(
    push: float, shown: str, base: Path, colours: Path, monkeypatch
) -> None:
    _push_logits(monkeypatch, push)
    with pytest.raises(TrainingError) as stopped:
        _engine(base, colours)
    message = str(stopped.value)
    # two classes in three are not the first: a mean loss of 2/3 of a million
    assert message.startswith(f"the loss became {shown}")
    assert "at step 1 (epoch 1): training diverged" in message and "try a tenth" in message


def test_a_base_model_with_nan_weights_is_refused(base: Path, colours: Path) -> None:
    model = load_model(str(base), device="cpu")
    with torch.no_grad():
        model.module.blocks[0].attn.qkv.weight[0, :3] = float("inf")
    with pytest.raises(TrainingError, match="the base model's weights hold 3 NaN or infinite"):
        list(training.finetune(model, open_dataset(colours), ONE_STEP))


def test_check_savable_counts_every_bad_value(base: Path) -> None:
    model = load_model(str(base), device="cpu")
    training.check_savable(model)
    with torch.no_grad():
        model.module.head.bias[:2] = float("nan")
    with pytest.raises(TrainingError, match="hold 2 NaN or infinite values .* not saved"):
        training.check_savable(model)


def test_cli_never_writes_a_model_whose_weights_diverged(
    base: Path, colours: Path, tmp_path: Path, monkeypatch
) -> None:
    _poison_weights_after_step(monkeypatch)
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(base), "--data", str(colours), "--out", str(out), *ONE_STEP_ARGS]
    code, stdout, stderr = _cli(argv, monkeypatch)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    errors = [line for line in _lines(stderr) if line.startswith("vitexplorer:")]
    assert len(errors) == 1 and errors[0] == _lines(stderr)[-1]
    assert "the weights diverged" in errors[0] and "in epoch 1" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_nan_loss_exits_2_and_writes_nothing(
    base: Path, colours: Path, tmp_path: Path, monkeypatch
) -> None:
    _push_logits(monkeypatch, float("nan"))
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(base), "--data", str(colours), "--out", str(out), *ONE_STEP_ARGS]
    code, stdout, stderr = _cli(argv, monkeypatch)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert _lines(stderr)[-1].startswith("vitexplorer: the loss became nan at step 1")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Room for the checkpoint, and a save that fails anyway


@pytest.mark.slow
def test_the_checkpoint_size_is_known_before_training(
    base: Path, colours: Path, tmp_path: Path
) -> None:
    model = load_model(str(base), device="cpu")
    dataset = open_dataset(colours)
    estimate = training.finetuned_checkpoint_bytes(model, dataset.class_names)
    result = _engine(base, colours)[-1].result
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, result.model, result.metadata())
    size = path.stat().st_size
    assert size <= estimate <= size + 200_000  # enough, and not wildly more


def test_a_full_disk_is_found_before_training(
    base: Path, colours: Path, tmp_path: Path, monkeypatch
) -> None:
    import shutil

    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - 500, 500)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(base), "--data", str(colours), "--out", str(out), *ONE_STEP_ARGS]
    code, stdout, stderr = _cli(argv, monkeypatch)
    assert code == 2 and stdout == ""
    assert _lines(stderr) == [_lines(stderr)[-1]], "refused before any image was loaded"
    assert f"--out {out}: not enough free space in {tmp_path}" in stderr
    assert "500 bytes free" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["enospc", "safetensors"])
def test_a_save_that_fails_says_why_and_keeps_the_results(
    failure: str, base: Path, colours: Path, tmp_path: Path, monkeypatch
) -> None:
    from safetensors import SafetensorError

    from vitexplorer.core.models import loading as models

    def full(path, model, extra=None, timelapse=None):
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        raise SafetensorError("Error while serializing: IoError(...)")

    monkeypatch.setattr(models, "save_checkpoint", full)
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(base), "--data", str(colours), "--out", str(out), *ONE_STEP_ARGS]
    code, stdout, stderr = _cli(argv, monkeypatch)
    assert code == 2 and "Traceback" not in stderr
    last = _lines(stderr)[-1]
    assert last.startswith(f"vitexplorer: cannot write {out}: ")
    if failure == "enospc":
        assert "No space left on device" in last
    assert "the trained model was not saved" in last
    results = [json.loads(line) for line in stdout.splitlines()]
    assert results[-1]["checkpoint"] is None and results[-1]["test_acc"] is not None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_sound_run_still_saves(base: Path, colours: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "model.safetensors"
    argv = ["--model", str(base), "--data", str(colours), "--out", str(out), *ONE_STEP_ARGS]
    code, stdout, stderr = _cli(argv, monkeypatch)
    assert code == 0, stderr
    state, meta = read_weights(out)
    assert all(torch.isfinite(t).all() for t in state.values())
    assert meta["finetune"]["settings"]["seed"] == 0
