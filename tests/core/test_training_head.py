"""Fine-tuning keeps the model's own classifier when the dataset's classes are the model's (same
names, same order), and says so; a new head when asked or when the classes differ."""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vitexplorer.cli import main
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.spec import demo_path
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.config import FinetuneConfig
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.events import Epoch, Finished, Snapshot, Started
from vitexplorer.core.training.heads import choose_head

SAMPLE = Path(__file__).parents[1] / "data" / "cifar10-test-sample"  # 3 images per class
LN10 = math.log(10)
# two training images per class, one test image, no validation: one step of 20 images
SMALL = dict(per_class=2, test_per_class=1, val_fraction=0.0, batch_size=20, epochs=1, probes=0)

pytestmark = pytest.mark.skipif(not demo_path().is_file(), reason="the demo model is not here")


def _first_epoch(head: str, dataset=None):
    """(the base head's weight, the head's weight when training starts, the first epoch's loss,
    the Started event, the result) of one small fine-tune of the demo."""
    base = load_model("demo", "default", "cpu")
    before = base.module.head.weight.detach().clone()
    config = FinetuneConfig(**SMALL, head=head)
    started = at_start = loss = result = None
    for event in training.finetune(base, dataset or open_dataset(SAMPLE), config):
        if isinstance(event, Started):
            started = event
            at_start = base.module.head.weight.detach().clone()  # before the first step
        elif isinstance(event, Epoch) and loss is None:
            loss = event.train_loss
        elif isinstance(event, Finished):
            result = event.result
    return before, at_start, loss, started, result


@pytest.mark.slow
def test_the_demos_head_is_kept_on_its_own_classes():
    before, at_start, loss, started, result = _first_epoch("keep")
    torch.testing.assert_close(at_start, before, rtol=0, atol=0)
    assert loss < 0.5 * LN10  # the demo already knows CIFAR-10: far below chance
    assert "the model's own head, kept" in started.head
    assert result.head_kept
    meta = result.metadata()["finetune"]
    assert meta["head"] == "kept" and "own head" in meta["head_reason"]
    assert meta["settings"]["head"] == "keep"


@pytest.mark.slow
def test_a_new_head_starts_at_chance():
    before, at_start, loss, started, result = _first_epoch("new")
    assert before.abs().sum() > 0
    assert torch.count_nonzero(at_start) == 0
    assert loss == pytest.approx(LN10, abs=1e-3)  # every class equally likely before step 1
    assert "a new head" in started.head and "as asked" in started.head
    assert not result.head_kept and result.metadata()["finetune"]["head"] == "new"


@pytest.mark.slow
def test_classes_in_another_order_get_a_new_head_and_say_so():
    dataset = open_dataset(SAMPLE)
    dataset = replace(dataset, class_names=tuple(reversed(dataset.class_names)))
    _, at_start, loss, started, result = _first_epoch("keep", dataset)
    assert torch.count_nonzero(at_start) == 0
    assert loss == pytest.approx(LN10, abs=1e-3)
    assert "another order" in started.head
    assert not result.head_kept


@pytest.mark.slow
def test_classes_with_other_names_get_a_new_head(tmp_path: Path):
    data = tmp_path / "renamed"
    for folder in sorted(SAMPLE.iterdir()):
        if folder.is_dir():
            shutil.copytree(folder, data / f"c-{folder.name}")
    _, at_start, _, started, result = _first_epoch("keep", open_dataset(data))
    assert torch.count_nonzero(at_start) == 0
    assert "they are not the model's" in started.head and "c-airplane" in started.head
    assert not result.head_kept


def test_choose_head_rules():
    names = ("a", "b", "c")
    assert choose_head("keep", names, names, 3).keep
    assert not choose_head("new", names, names, 3).keep
    assert not choose_head("keep", names, ("c", "b", "a"), 3).keep
    assert not choose_head("keep", (), names, 0).keep
    assert "no classifier" in choose_head("keep", None, names).reason
    assert not choose_head("keep", names, names, 4).keep  # a head that does not match its names


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(["finetune", *args])
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("head", ["keep", "new"])
def test_the_command_line_says_which_head(head: str, tmp_path: Path):
    out = tmp_path / "demo.safetensors"
    args = ["--model", "demo", "--data", str(SAMPLE), "--out", str(out), "--per-class", "2",
            "--test-per-class", "1", "--val-fraction", "0", "--batch-size", "20", "--epochs",
            "1", "--probes", "0", "--head", head]  # fmt: skip
    code, stdout, stderr = _cli(*args)
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    kept = head == "keep"
    assert lines[-1]["head"] == ("kept" if kept else "new")
    loss = lines[0]["train_loss"]
    assert loss < 0.5 * LN10 if kept else loss == pytest.approx(LN10, abs=1e-3)
    expected = "head: the model's own head, kept" if kept else "head: a new head"
    assert expected in stderr
    assert read_weights(out)[1]["finetune"]["head"] == ("kept" if kept else "new")


def test_the_command_line_refuses_an_unknown_head_choice(tmp_path: Path, capsys):
    try:
        code = main(["finetune", "--model", "demo", "--data", str(SAMPLE), "--out",
                     str(tmp_path / "x.safetensors"), "--head", "old"])  # fmt: skip
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    assert code == 2
    assert not (tmp_path / "x.safetensors").exists()
    assert "invalid choice: 'old'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_time_lapses_first_frame_shows_what_the_kept_head_predicts():
    """Before training the probes are predicted by the model's own head, not all "airplane,
    10 %" as with a zero head."""
    frames = {}
    for head in ("keep", "new"):
        config = FinetuneConfig(**{**SMALL, "probes": 10}, head=head)
        base = load_model("demo", "default", "cpu")
        for event in training.finetune(base, open_dataset(SAMPLE), config):
            if isinstance(event, Snapshot) and event.frame.epoch == 0:
                frames[head] = event.frame
    kept, new = frames["keep"], frames["new"]
    assert len(set(kept.predicted.tolist())) >= 5  # ten probes of ten classes
    assert kept.probability.mean() > 0.5
    assert set(new.predicted.tolist()) == {0}
    assert new.probability == pytest.approx(0.1, abs=1e-4)
