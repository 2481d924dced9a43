"""The fine-tune engine, iterated directly: no Qt."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import get_model

from tests.conftest import TINY, write_colour_dataset
from vitexplorer.core.models.families.torchvision import spec_for as torchvision_spec
from vitexplorer.core.models.loading import LoadedModel, load_model, save_checkpoint
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.config import (
    FinetuneConfig,
    FreezePolicyError,
    TrainConfig,
    parse_freeze,
)
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.engine import finetune
from vitexplorer.core.training.events import (
    Epoch,
    FinetuneResult,
    Finished,
    Notice,
    Snapshot,
    Stage,
    Started,
    Step,
    TrainingError,
)
from vitexplorer.core.training.finetune_model import SplitViT, trainable_counts

# float32 throughout, so that the exact comparisons below hold on any CPU
QUICK = FinetuneConfig(
    per_class=12, test_per_class=5, epochs=3, batch_size=8, lr=1e-2, mixed_precision=False
)


def _small_vit(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    return load_model("small_vit", "none", "cpu", small_config=TINY)


def _run(base: LoadedModel, data: Path, config: FinetuneConfig = QUICK, **kwargs) -> list:
    return list(finetune(base, open_dataset(data), config, **kwargs))


def _of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def _result(events: list) -> FinetuneResult:
    assert isinstance(events[-1], Finished)
    return events[-1].result


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return write_colour_dataset(tmp_path / "colours", 20, size=32)


def _inputs(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("train_blocks", [0, 1, 2])
def test_split_model_computes_the_same_logits(
    train_blocks: int, tiny_small_vit, tiny_torchvision_vit
) -> None:
    for module in (tiny_small_vit, tiny_torchvision_vit):
        split = SplitViT(module, train_blocks)
        with torch.no_grad():
            np.testing.assert_allclose(split(_inputs()), module(_inputs()), atol=1e-5)


def test_freeze_policies() -> None:
    assert parse_freeze("head", 12) == 0
    assert parse_freeze("last:3", 12) == 3
    assert parse_freeze("none", 12) == 12
    for bad in ("last:0", "last:13", "last:x", "all"):
        with pytest.raises(FreezePolicyError):
            parse_freeze(bad, 12)
    with pytest.raises(ValueError, match="optimiser"):
        FinetuneConfig(optimizer="adam").check(12)
    with pytest.raises(ValueError, match="learning rate"):
        FinetuneConfig(lr=float("nan")).check(12)


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["head", "last:1", "none"])
def test_parameter_counts_before_training_match_the_engine(colours: Path, freeze: str) -> None:
    base = _small_vit()
    total, width, trained = trainable_counts(base.module)
    assert total == sum(p.numel() for p in base.module.parameters()) and width == 32
    blocks = parse_freeze(freeze, TINY.depth)
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": freeze, "epochs": 1})
    started = _of(_run(base, colours, config), Started)[0]
    assert started.trainable_params == trained[blocks] + (width + 1) * 3  # three classes
    assert trained[0] == 0 and trained[0] < trained[1] < trained[2]


@pytest.mark.slow
def test_head_only_training_changes_only_the_head(colours: Path) -> None:
    base = _small_vit()
    before = {k: v.clone() for k, v in base.module.state_dict().items()}
    result = _result(_run(base, colours))
    after = result.model.module.state_dict()
    changed = {k for k in after if k not in before or not torch.equal(after[k], before[k])}
    assert changed == {"head.weight", "head.bias"}
    assert result.trainable_params == 32 * 3 + 3 and result.cached
    assert result.model.spec.class_names == ("blue", "green", "red")


@pytest.mark.slow
def test_last_block_policy_trains_the_last_block_norm_and_head(colours: Path) -> None:
    base = _small_vit()
    before = {k: v.clone() for k, v in base.module.state_dict().items()}
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": "last:1", "epochs": 1})
    after = _result(_run(base, colours, config)).model.module.state_dict()
    changed = {
        ".".join(k.split(".")[: 2 if k.startswith("blocks") else 1])
        for k in after
        if not torch.equal(after[k], before[k])
    }
    assert changed == {"blocks.1", "norm", "head"}


@pytest.mark.slow
def test_loss_falls_and_accuracy_rises_on_an_easy_dataset(colours: Path) -> None:
    config = FinetuneConfig(**{**QUICK.to_dict(), "epochs": 6, "lr": 3e-2})
    events = _run(_small_vit(), colours, config)
    started = _of(events, Started)[0]
    steps, epochs = _of(events, Step), _of(events, Epoch)
    # 12 per class: 2 held out (ceil 10%), 10 train x 3 classes = 30 images, batches of 8
    assert (started.num_train, started.num_val, started.num_test) == (30, 6, 15)
    assert len(steps) == 6 * math.ceil(30 / 8) == started.steps_per_epoch * 6
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert steps[0].loss == pytest.approx(math.log(3), abs=1e-4)  # a zero head: uniform
    assert epochs[-1].train_loss < 0.5 * epochs[0].train_loss
    assert epochs[-1].train_acc > epochs[0].train_acc and epochs[-1].val_acc == 1.0
    result = _result(events)
    assert result.test_acc == 1.0 and result.confusion.trace() == 15
    fractions = [e.fraction for e in events if hasattr(e, "fraction")]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_cosine_schedule_with_warmup(colours: Path) -> None:
    config = FinetuneConfig(**{**QUICK.to_dict(), "warmup_epochs": 1, "epochs": 3})
    lrs = [s.lr for s in _of(_run(_small_vit(), colours, config), Step)]
    per_epoch = len(lrs) // 3  # 4 steps
    assert lrs[:per_epoch] == pytest.approx([QUICK.lr * (i + 1) / per_epoch for i in range(4)])
    rest = lrs[per_epoch:]
    expected = [QUICK.lr * 0.5 * (1 + math.cos(math.pi * i / len(rest))) for i in range(len(rest))]
    assert rest == pytest.approx(expected)


@pytest.mark.slow
def test_cached_features_train_exactly_like_the_full_forward(colours: Path, monkeypatch) -> None:
    cached = _run(_small_vit(), colours)
    monkeypatch.setattr(training, "CACHE_BUDGET", 0)  # forces the full forward for every batch
    full = _run(_small_vit(), colours)
    assert _result(cached).cached and not _result(full).cached
    assert any("uncached" in n.message for n in _of(full, Notice))
    np.testing.assert_allclose(
        [s.loss for s in _of(cached, Step)], [s.loss for s in _of(full, Step)], atol=1e-5
    )
    head = [_result(r).model.module.head.weight.detach() for r in (cached, full)]
    np.testing.assert_allclose(head[0], head[1], atol=1e-5)
    assert _result(cached).test_acc == _result(full).test_acc


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_images(colours: Path) -> None:
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": "none", "augment": True})
    runs = [_run(_small_vit(), colours, config) for _ in range(2)]
    assert [s.loss for s in _of(runs[0], Step)] == [s.loss for s in _of(runs[1], Step)]
    weights = [_result(r).model.module.state_dict() for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = _run(_small_vit(), colours, FinetuneConfig(**{**config.to_dict(), "seed": 1}))
    assert [s.loss for s in _of(other, Step)] != [s.loss for s in _of(runs[0], Step)]


@pytest.mark.slow
def test_cancel_stops_within_one_batch_and_leaves_a_valid_model(colours: Path) -> None:
    steps_seen: list[Step] = []
    events = []
    cancel = [False]
    for event in finetune(_small_vit(), open_dataset(colours), QUICK, lambda: cancel[0]):
        events.append(event)
        if isinstance(event, Step):
            steps_seen.append(event)
            cancel[0] = len(steps_seen) == 3  # asked during step 3: step 4 never starts
    result = _result(events)
    assert len(steps_seen) == 3 and result.cancelled and result.steps == 3
    assert result.test_acc is None and not _of(events, Epoch)
    module = result.model.module
    assert not module.training and module.head.weight.abs().sum() > 0
    with torch.no_grad():
        assert torch.isfinite(module(_inputs())).all()


def test_cancel_while_loading_ends_before_training(colours: Path) -> None:
    events = _run(_small_vit(), colours, cancelled=lambda: True)
    result = _result(events)
    assert result.cancelled and result.steps == 0 and not _of(events, Step)


def test_checkpoint_round_trip_gives_the_same_logits(colours: Path, tmp_path: Path) -> None:
    result = _result(_run(_small_vit(), colours))
    path = tmp_path / "tuned.safetensors"
    save_checkpoint(path, result.model, result.metadata())
    loaded = load_model(str(path), device="cpu")
    assert loaded.spec.class_names == ("blue", "green", "red")
    assert loaded.spec.resize_size == loaded.spec.image_size == 32
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.module(_inputs()), result.model.module(_inputs()))
    from vitexplorer.core.models.checkpoint import read_weights

    _, meta = read_weights(path)
    tuned = meta["finetune"]
    assert tuned["freeze_policy"] == "head" and tuned["settings"]["epochs"] == 3
    assert tuned["metrics"]["test_acc"] == result.test_acc and len(tuned["history"]) == 3


@pytest.mark.slow
def test_torchvision_vit_fine_tunes_and_reloads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = get_model("vit_b_32", weights=None, image_size=64)
    base = LoadedModel(module.eval(), torchvision_spec("vit_b_32", module, "random"), "cpu")
    base.device = torch.device("cpu")
    data = write_colour_dataset(tmp_path / "d", 6, size=16)
    config = FinetuneConfig(per_class=4, test_per_class=2, epochs=1, batch_size=4)
    result = _result(_run(base, data, config))
    assert result.model.module.heads.head.out_features == 3
    path = tmp_path / "b32.safetensors"
    save_checkpoint(path, result.model, result.metadata())
    loaded = load_model(str(path), device="cpu")
    assert loaded.spec.class_names == ("blue", "green", "red") and loaded.spec.image_size == 64
    with torch.no_grad():
        x = _inputs(2, 64)
        np.testing.assert_allclose(loaded.module(x), result.model.module(x), atol=1e-6)


def test_a_learning_rate_that_would_diverge_is_refused_before_training(colours: Path) -> None:
    # 1e38 once made the loss NaN after the first step; now the setting never reaches training
    # (a loss or weights that diverge anyway are tested in test_training_hostile.py)
    config = FinetuneConfig(**{**QUICK.to_dict(), "optimizer": "sgd", "lr": 1e38})
    with pytest.raises(ValueError, match="learning rate must be .* no greater than 10"):
        _run(_small_vit(), colours, config)


@pytest.mark.slow
def test_gallery_shows_every_class_and_marks_predictions(colours: Path) -> None:
    result = _result(_run(_small_vit(), colours, gallery_size=7))
    assert [s.true for s in result.samples] == [0, 1, 2, 0, 1, 2, 0]
    for sample in result.samples:
        assert Path(sample.source).parent.name == result.model.spec.class_names[sample.true]
        assert sample.image.shape == (32, 32, 3) and sample.image.dtype == np.uint8
        assert 0 <= sample.confidence <= 1
    assert result.confusion.sum() == 15 and result.confusion.shape == (3, 3)


def test_gpu_out_of_memory_is_a_clear_error(colours: Path, monkeypatch) -> None:
    def no_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SplitViT, "trainable", no_memory)
    config = FinetuneConfig(**{**QUICK.to_dict(), "probes": 0})  # no time-lapse frame first
    with pytest.raises(TrainingError, match="CPU ran out of memory on a batch of 8 image.s. "
                       "while training: lower the batch size .now 8.; nothing"):  # fmt: skip
        _run(_small_vit(), colours, config)


@pytest.mark.slow
def test_mixed_precision_on_the_cpu_where_it_is_fast(colours: Path) -> None:
    expected = training.autocast_dtype(torch.device("cpu"), True)
    assert training.autocast_dtype(torch.device("cpu"), False) is None
    config = FinetuneConfig(**{**QUICK.to_dict(), "mixed_precision": True, "epochs": 6})
    events = _run(_small_vit(), colours, config)
    started = _of(events, Started)[0]
    assert started.precision == ("bfloat16" if expected == torch.bfloat16 else "float32")
    epochs = _of(events, Epoch)
    assert epochs[-1].train_loss < 0.5 * epochs[0].train_loss
    assert _result(events).model.module.head.weight.dtype == torch.float32
    full = _run(_small_vit(), colours, FinetuneConfig(**{**config.to_dict(),
                                                       "mixed_precision": False}))  # fmt: skip
    losses = ([s.loss for s in _of(events, Step)], [s.loss for s in _of(full, Step)])
    if expected == torch.bfloat16:  # the forwards really ran in bfloat16: close, not equal
        assert losses[0] != losses[1]
        np.testing.assert_allclose(losses[0], losses[1], rtol=0.05)
    else:
        assert losses[0] == losses[1]


@pytest.mark.slow
def test_cancel_during_validation_keeps_the_steps_taken(colours: Path) -> None:
    steps_per_epoch = math.ceil(30 / QUICK.batch_size)
    cancel = [False]
    events = []
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": "none"})  # validation runs the model
    for event in finetune(_small_vit(), open_dataset(colours), config, lambda: cancel[0]):
        events.append(event)
        # after the epoch's last step the next check is the validation pass's first batch
        cancel[0] = isinstance(event, Step) and event.step == steps_per_epoch
    result = _result(events)
    assert result.cancelled and result.steps == steps_per_epoch and not result.history


def test_cancel_stops_inside_a_long_forward_pass(colours: Path) -> None:
    """The frozen pass is cut short between blocks: on a CPU one ViT-B batch takes seconds,
    too long to wait for a Cancel."""
    state = {"armed": False, "checks": 0}

    def cancelled() -> bool:
        if not state["armed"]:
            return False
        state["checks"] += 1  # 1: before the first batch, 2: before block 1, 3: before block 2
        return state["checks"] == 3

    events = []
    for event in finetune(_small_vit(), open_dataset(colours), QUICK, cancelled):
        events.append(event)
        state["armed"] = state["armed"] or isinstance(event, Started)
    result = _result(events)
    assert result.cancelled and result.steps == 0 and state["checks"] == 3
    assert not [e for e in _of(events, Stage) if e.name == "features"]  # no batch finished


@pytest.mark.slow
@pytest.mark.parametrize("head_init", ["normal", "zero"])
def test_from_scratch_keeps_the_models_own_head_unless_asked_for_zeros(
    colours: Path, head_init: str
) -> None:
    """A run from scratch starts from the model's own random head (a zero head passes no
    gradient to the blocks at first); 'zero' gives the fine-tune start: every class equally
    likely, seen in the time-lapse's frame before the first step."""
    # the model built for the data's 3 classes, as 'vitexplorer train' and the app build it
    torch.manual_seed(0)
    base = load_model("small_vit", "none", "cpu", small_config=replace(TINY, num_classes=3))
    before = base.module.head.weight.detach().clone()
    assert before.abs().max() > 0
    config = TrainConfig(
        per_class=12, test_per_class=4, epochs=1, batch_size=8, warmup_epochs=0.0,
        mixed_precision=False, probes=3, head_init=head_init,
    )  # fmt: skip
    for event in finetune(base, open_dataset(colours), config):
        if isinstance(event, Snapshot):
            start = event.frame
            break
    if head_init == "zero":
        np.testing.assert_array_equal(start.probability, np.full(3, 1 / 3, np.float32))
    else:
        assert not np.allclose(start.probability, 1 / 3)
        torch.testing.assert_close(base.module.head.weight, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown head initialisation"):
        TrainConfig(head_init="xavier").check(2)
