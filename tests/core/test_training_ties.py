"""A tie is never right in the training results, and the out-of-memory line tells the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, write_colour_dataset
from vitexplorer.core.models.loading import LoadedModel, load_model
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.config import FinetuneConfig, TrainConfig
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.engine import finetune
from vitexplorer.core.training.events import FinetuneResult, Finished, TrainingError
from vitexplorer.core.training.events import TestSample as Sample  # not collected as a test class
from vitexplorer.core.training.finetune_model import SplitViT
from vitexplorer.core.training.verdict import RIGHT, TIE, WRONG

QUICK = FinetuneConfig(
    per_class=12, test_per_class=5, epochs=2, batch_size=8, lr=1e-2, mixed_precision=False
)


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return write_colour_dataset(tmp_path / "colours", 20, size=32)


def _small_vit(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    return load_model("small_vit", "none", "cpu", small_config=TINY)


def _result(base: LoadedModel, data: Path, config: FinetuneConfig = QUICK) -> FinetuneResult:
    events = list(finetune(base, open_dataset(data), config, gallery_size=9))
    assert isinstance(events[-1], Finished)
    return events[-1].result


def _untrained(*_args):  # _Run._train: no step, the head stays zero
    return iter(())


@pytest.mark.slow
def test_a_zero_head_ties_every_test_image(colours: Path, monkeypatch) -> None:
    monkeypatch.setattr(training._Run, "_train", _untrained)
    config = FinetuneConfig(**{**QUICK.to_dict(), "head": "new"})  # a head of zeros
    result = _result(_small_vit(), colours, config)
    # every class gets 1/3: the argmax takes class 0 for all 15 test images
    assert result.test_confidence == pytest.approx(np.full(15, 1 / 3), abs=1e-6)
    assert result.test_runner_up == pytest.approx(np.full(15, 1 / 3), abs=1e-6)
    assert result.test_acc == pytest.approx(1 / 3)  # argmax accuracy, as papers count it
    assert result.confusion[:, 0].tolist() == [5, 5, 5]
    assert result.ties == 15 and result.right == 0
    assert np.array_equal(result.tie_matrix(), result.confusion)
    metrics = result.metrics()
    assert metrics["ties"] == 15 and metrics["right"] == 0
    assert len(result.samples) == 9
    for sample in result.samples:
        assert sample.runner_up == pytest.approx(1 / 3, abs=1e-6)
        assert sample.verdict(3) == TIE  # the class-0 images too: never right
    assert sum(s.true == s.predicted for s in result.samples) == 3


@pytest.mark.slow
def test_a_trained_model_has_no_ties_and_right_is_the_diagonal(colours: Path) -> None:
    result = _result(_small_vit(), colours)
    assert result.ties == 0 and result.metrics()["ties"] == 0
    assert result.right == int(result.confusion.trace())
    assert result.tie_matrix().sum() == 0
    assert np.all(result.test_runner_up <= result.test_confidence)
    for sample in result.samples:
        assert sample.verdict(3) == (RIGHT if sample.true == sample.predicted else WRONG)


def test_a_two_way_tie_is_caught_by_the_runner_up_and_old_samples_still_read() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    tied = Sample("a.png", image, true=0, predicted=0, confidence=0.45, runner_up=0.4495)
    assert tied.verdict(3) == TIE
    narrow = Sample("a.png", image, true=0, predicted=0, confidence=0.45, runner_up=0.448)
    assert narrow.verdict(3) == RIGHT  # 0.2 points apart: a narrow choice, but a choice
    clear = Sample("a.png", image, true=0, predicted=0, confidence=0.45, runner_up=0.40)
    assert clear.verdict(3) == RIGHT
    # recorded before the runner-up was: only a tie at 1/classes can be told
    old = Sample("a.png", image, 0, 1, 0.45)
    assert old.runner_up is None and old.verdict(3) == WRONG
    assert Sample("a.png", image, 0, 0, 0.334).verdict(3) == TIE


def _no_memory(self, x):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_on_the_cpu_names_the_batch_and_never_advises_the_cpu(
    colours: Path, monkeypatch
) -> None:
    monkeypatch.setattr(SplitViT, "trainable", _no_memory)
    # 30 training images (10 a class after validation): the one batch holds 30, not 64
    config = FinetuneConfig(**{**QUICK.to_dict(), "batch_size": 64, "probes": 0})
    with pytest.raises(TrainingError) as caught:
        _result(_small_vit(), colours, config)
    line = str(caught.value)
    assert line == (
        "the CPU ran out of memory on a batch of 30 image(s) while training: lower the batch "
        "size (now 64); nothing was saved"
    )


def test_out_of_memory_on_the_gpu_fits_the_device(colours: Path) -> None:
    dataset = open_dataset(colours)
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": "last:1"})
    run = training._Run(_small_vit(), dataset, config, lambda: False)
    run.device, run.amp_dtype = torch.device("cuda", 0), None  # as on a GPU, in float32
    run.batch = (17, "training")
    assert run.out_of_memory_message() == (
        "the GPU (cuda:0) ran out of memory on a batch of 17 image(s) while training: lower the "
        "batch size (now 8), train fewer blocks (now 1), or turn mixed precision on; nothing "
        "was saved"
    )
    run.amp_dtype = torch.bfloat16  # already mixed: not advised again
    run.batch = (256, "testing")
    assert run.out_of_memory_message() == (
        "the GPU (cuda:0) ran out of memory on a batch of 256 image(s) while testing: close "
        "other programs that use its memory; nothing was saved"
    )
    scratch = training._Run(_small_vit(), dataset, TrainConfig(**{**QUICK.to_dict(),
                            "freeze": "none"}), lambda: False)  # fmt: skip
    scratch.device, scratch.amp_dtype = torch.device("cuda", 1), torch.bfloat16
    scratch.batch = (5, "training")
    line = scratch.out_of_memory_message()
    assert line.startswith("the GPU (cuda:1) ran out of memory on a batch of 5 image(s)")
    assert "train a smaller model" in line and "CPU" not in line and "mixed" not in line


def test_device_words() -> None:
    assert training.device_words(torch.device("cpu")) == "the CPU"
    assert training.device_words(torch.device("mps")) == "Apple's MPS"
    assert training.device_words(torch.device("cuda", 2)) == "the GPU (cuda:2)"


TRAIN = training._Run._train


def _train_then_zero_the_head(self, *args):
    """Train as usual, then give the model a head of zeros: every output ties."""
    yield from TRAIN(self, *args)
    with torch.no_grad():
        self.split.head.weight.zero_()
        self.split.head.bias.zero_()


def test_the_cli_counts_ties_in_its_json_and_says_so(
    base: Path, colours: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import json

    from vitexplorer.cli import main

    monkeypatch.setattr(training._Run, "_train", _train_then_zero_the_head)
    out = tmp_path / "tied.safetensors"
    args = ["--model", str(base), "--data", str(colours), "--out", str(out), "--per-class", "6",
            "--test-per-class", "4", "--epochs", "1", "--probes", "0"]  # fmt: skip
    args.append("--device=cpu")
    assert main(["finetune", *args]) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out.splitlines()[-1])
    assert final["ties"] == 12 and final["right"] == 0
    assert final["test_acc"] == pytest.approx(1 / 3)  # argmax: class 0 for every image
    assert (
        "0 of 12 test images right and 12 ties (the top two probabilities within a tenth of a "
        "point: no class picked); test_acc counts each tie by its argmax" in captured.err
    )


def test_the_train_clis_best_line_says_how_many_tie() -> None:
    from types import SimpleNamespace

    from vitexplorer.cli.train import _best_line

    ties = np.array([True, True, False, False])
    result = SimpleNamespace(history=[1, 2], cancelled=False, diverged=None, best_epoch=2,
                             best_val_acc=0.5, test_acc=0.75, ties=2, test_ties=ties,
                             config=SimpleNamespace(epochs=2))  # fmt: skip
    assert _best_line(result) == (
        "best epoch 2 of 2, validation accuracy 50.0%; its test accuracy 75.0% (2 of 4 test "
        "images tie, counted by their argmax)"
    )
    result.ties, result.test_ties = 0, np.zeros(4, bool)
    assert _best_line(result).endswith("its test accuracy 75.0%")


def _bare_result(**arrays: np.ndarray) -> FinetuneResult:
    """A result with only the test arrays given (no model: tie_matrix reads none)."""
    return FinetuneResult(None, QUICK, "colours", "small_vit", False, 0, 0, False, 0.0, **arrays)


def test_the_tie_matrix_counts_ties_by_true_and_predicted_class() -> None:
    true, ties = np.array([0, 1, 1, 2]), np.array([False, True, True, True])
    predicted = np.array([0, 0, 0, 1])
    result = _bare_result(
        confusion=np.zeros((3, 3), np.int64), test_true=true, test_predicted=predicted,
        test_ties=ties,
    )  # fmt: skip
    expected = np.zeros((3, 3), np.int64)
    expected[1, 0], expected[2, 1] = 2, 1
    assert np.array_equal(result.tie_matrix(), expected)


def test_a_result_without_predictions_has_no_tie_matrix() -> None:
    # was a TypeError (None indexed); right() already answered None
    true, ties = np.array([0, 1]), np.array([False, True])
    result = _bare_result(confusion=np.zeros((2, 2), np.int64), test_true=true, test_ties=ties)
    assert result.tie_matrix() is None and result.right is None
