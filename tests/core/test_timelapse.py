"""The time-lapse of a training run: probes captured before the first step and after every
epoch, each frame equal to a fresh capture with that epoch's weights, saved in the checkpoint."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, write_colour_dataset
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import LoadedModel, load_model, save_checkpoint
from vitexplorer.core.training.config import FinetuneConfig, TrainConfig
from vitexplorer.core.training.datasets import open_dataset, to_model_input
from vitexplorer.core.training.engine import finetune
from vitexplorer.core.training.events import Epoch, Finished, Notice, Snapshot
from vitexplorer.core.training.timelapse import (
    FRAME_ARRAYS,
    TimeLapseError,
    class_balanced_order,
    read_timelapse,
)

QUICK = FinetuneConfig(
    per_class=12, test_per_class=4, epochs=2, batch_size=8, lr=1e-2, mixed_precision=False,
    probes=5,
)  # fmt: skip


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("tl") / "colours", 20, size=32)


def _small_vit(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    return load_model("small_vit", "none", "cpu", small_config=TINY)


def fresh_capture(module: torch.nn.Module, spec, images: np.ndarray) -> dict[str, np.ndarray]:
    """What the explorer's capture says of the probes (uint8 (P, h, w, 3)) with the module's
    present weights, computed independently of the recorder: a whole forward, then numpy."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = to_model_input(batch, spec.image_size, spec.mean, spec.std, spec.interpolation)
    module.eval()
    logits, attention = forward_with_attention(module, x)
    maps = attention.numpy().astype(np.float64)  # (P, L, H, N, N)
    prefix, grid, patch = spec.num_prefix_tokens, spec.grid, spec.patch_size
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    distance = patch * np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    patches = maps[..., prefix:, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(patches > 0, np.log(patches), 0.0)
    probs = logits.softmax(-1)
    return {
        "predicted": probs.argmax(-1).numpy(),
        "probability": probs.max(-1).values.numpy(),
        "runner_up": probs.sort(-1, descending=True).values[:, 1].numpy(),  # to tell a tie
        "cls_attention": maps[:, :, :, 0, prefix:],
        "rollout": np.stack(
            [rollout_map(m.astype(np.float32), 0, grid, prefix).ravel() for m in maps]
        ),
        "distance": (patches[..., prefix:] * distance).sum(-1).mean(-1),
        "entropy": -(patches * logs).sum(-1).mean(-1),
        "prefix_share": patches[..., :prefix].sum(-1).mean(-1),
    }


def _assert_frame_is(frame, fresh: dict[str, np.ndarray], atol: float = 2e-5) -> None:
    np.testing.assert_array_equal(frame.predicted, fresh["predicted"])
    for name in (*FRAME_ARRAYS, "runner_up"):
        if name != "predicted":
            np.testing.assert_allclose(getattr(frame, name), fresh[name], atol=atol, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["none", "last:1", "head"])
def test_one_frame_per_epoch_and_the_start_each_a_fresh_capture(colours: Path, freeze: str) -> None:
    base = _small_vit()
    config = FinetuneConfig(**{**QUICK.to_dict(), "freeze": freeze, "augment": freeze == "none"})
    snapshots = []
    for event in finetune(base, open_dataset(colours), config):
        if isinstance(event, Snapshot):  # the run is paused here: the weights are the frame's
            fresh = fresh_capture(base.module, base.spec, event.timelapse.images)
            _assert_frame_is(event.frame, fresh)
            snapshots.append(event)
        if isinstance(event, Finished):
            result = event.result
    assert [s.frame.epoch for s in snapshots] == [0, 1, 2]
    timelapse = result.timelapse
    assert timelapse is not None and timelapse.epochs == [0, 1, 2]
    assert len(timelapse.sources) == 5 and timelapse.images.shape == (5, 32, 32, 3)
    # a class-balanced handful of test images: the classes in turn
    assert timelapse.labels.tolist() == [0, 1, 2, 0, 1]
    assert all(source.startswith(str(colours)) for source in timelapse.sources)
    layers, heads = TINY.depth, TINY.heads
    assert timelapse.stacked("cls_attention").shape == (3, 5, layers, heads, 16)
    # attention rows are distributions: the CLS row over the patches is at most 1
    rollout = timelapse.stacked("rollout")
    assert rollout.shape == (3, 5, 16) and (rollout > 0).all() and (rollout.sum(-1) < 1).all()
    if freeze == "head":  # frozen attention is the same in every frame; the predictions move
        cls = timelapse.stacked("cls_attention")
        assert (cls == cls[0]).all()
        assert not np.array_equal(timelapse.frames[0].probability, timelapse.frames[-1].probability)
    else:
        assert not np.array_equal(
            timelapse.frames[0].cls_attention, timelapse.frames[-1].cls_attention
        )


@pytest.mark.slow
def test_the_time_lapse_survives_a_save_and_reload(colours: Path, tmp_path: Path) -> None:
    base = _small_vit()
    events = list(finetune(base, open_dataset(colours), QUICK))
    result = events[-1].result
    path = tmp_path / "run.safetensors"
    save_checkpoint(path, result.model, result.metadata(), result.timelapse)
    back = read_timelapse(path)
    assert (
        back is not None and back.epochs == [0, 1, 2] and back.sources == result.timelapse.sources
    )
    np.testing.assert_array_equal(back.images, result.timelapse.images)
    np.testing.assert_array_equal(back.labels, result.timelapse.labels)
    for saved, kept in zip(back.frames, result.timelapse.frames, strict=True):
        np.testing.assert_array_equal(saved.predicted, kept.predicted)
        for name in (*FRAME_ARRAYS, "runner_up"):  # compact: float16
            expected = getattr(kept, name).astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(getattr(saved, name), expected)
    # the model in the same file loads as ever, the time-lapse kept out of its weights
    state, meta = read_weights(path)
    assert not any(k.startswith("timelapse.") for k in state) and "timelapse" in meta
    again = load_model(str(path), device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.module(x), result.model.module(x), rtol=0, atol=0)


@pytest.mark.slow
def test_a_checkpoint_without_a_time_lapse_reads_as_none(colours: Path, tmp_path: Path) -> None:
    base = _small_vit()
    config = FinetuneConfig(**{**QUICK.to_dict(), "probes": 0, "epochs": 1})
    result = list(finetune(base, open_dataset(colours), config))[-1].result
    assert result.timelapse is None
    path = tmp_path / "plain.safetensors"
    save_checkpoint(path, result.model, result.metadata(), result.timelapse)
    assert read_timelapse(path) is None
    pth = tmp_path / "plain.pth"
    torch.save(result.model.module.state_dict(), pth)
    assert read_timelapse(pth) is None


def _rewrite_metadata(path: Path, change) -> None:
    """Rewrite the JSON of a safetensors file's vitexplorer metadata (the tensors untouched)."""
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["vitexplorer"])
    change(meta["timelapse"])
    header["__metadata__"]["vitexplorer"] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.update(epochs=[0]), "shape"),
        (lambda t: t.update(grid=[3, 3]), "shape"),
        (
            lambda t: t.update(num_classes=1),
            "names class 1 for probe .* but the model has 1 class$",
        ),
        (lambda t: t.update(version=99), "unknown version"),
        (lambda t: t.pop("sources"), "probes is missing"),
    ],
)
def test_a_lying_time_lapse_is_one_line_and_the_model_still_loads(
    colours: Path,
    tmp_path: Path,
    change,
    words: str,
) -> None:
    base = _small_vit()
    config = FinetuneConfig(**{**QUICK.to_dict(), "epochs": 1})
    result = list(finetune(base, open_dataset(colours), config))[-1].result
    path = tmp_path / "lying.safetensors"
    save_checkpoint(path, result.model, result.metadata(), result.timelapse)
    _rewrite_metadata(path, change)
    with pytest.raises(TimeLapseError, match=words) as caught:
        read_timelapse(path)
    assert "lying.safetensors" in str(caught.value) and "\n" not in str(caught.value)
    load_model(str(path), device="cpu")


def test_chosen_probe_images_and_one_that_fails_to_decode(colours: Path, tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(red)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    config = FinetuneConfig(
        **{**QUICK.to_dict(), "epochs": 1, "probe_files": (str(red), str(broken))}
    )
    base = _small_vit()
    events = list(finetune(base, open_dataset(colours), config))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("broken.png" in n and "probe image not used" in n for n in notices)
    timelapse = events[-1].result.timelapse
    assert timelapse.sources == [str(red)] and timelapse.labels.tolist() == [-1]
    # resized (short side) and centre-cropped to the model's 32 px, as a training image is
    assert timelapse.images.shape == (1, 32, 32, 3)
    assert (timelapse.images[..., 0] > 150).all()


@pytest.mark.slow
def test_a_run_cancelled_after_the_first_epoch_keeps_its_frames(colours: Path) -> None:
    epochs_done = []
    config = FinetuneConfig(**{**QUICK.to_dict(), "epochs": 3})

    def cancelled() -> bool:
        return bool(epochs_done)

    events = []
    for event in finetune(_small_vit(), open_dataset(colours), config, cancelled=cancelled):
        events.append(event)
        if isinstance(event, Epoch):
            epochs_done.append(event.epoch)
    result = events[-1].result
    assert result.cancelled and result.timelapse.epochs == [0, 1]


@pytest.mark.slow
def test_from_scratch_runs_record_a_time_lapse_too(colours: Path) -> None:
    base = _small_vit()
    config = TrainConfig(
        per_class=12, test_per_class=4, epochs=1, batch_size=8, warmup_epochs=0.0,
        mixed_precision=False, probes=3,
    )  # fmt: skip
    result = list(finetune(base, open_dataset(colours), config))[-1].result
    assert result.timelapse.epochs == [0, 1] and result.timelapse.best_epoch == 1


def test_class_balanced_order_takes_the_classes_in_turn() -> None:
    labels = np.array([2, 0, 0, 1, 2, 0, 1])
    assert class_balanced_order(labels, 3, 5) == [1, 3, 0, 2, 6]
    assert class_balanced_order(labels, 3, 99) == [1, 3, 0, 2, 6, 4, 5]


def test_too_many_probes_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="probe images"):
        FinetuneConfig(probes=65).check(2)
    with pytest.raises(ValueError, match="probe_files"):
        FinetuneConfig(probe_files="one.png").check(2)  # type: ignore[arg-type]
