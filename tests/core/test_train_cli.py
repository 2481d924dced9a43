"""``vitexplorer train``: the small ViT from scratch on tiny data the tests make."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, write_colour_splits
from vitexplorer.cli import main
from vitexplorer.cli import train as train_cli
from vitexplorer.core.models import architecture
from vitexplorer.core.models.architecture import ARCH_DEFAULTS
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.families.small_vit import SmallViTAdapter
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.vit import SmallViT
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.augment import augment_batch, random_rotate
from vitexplorer.core.training.config import AUGMENTATIONS, FinetuneConfig, TrainConfig
from vitexplorer.core.training.datasets import open_dataset
from vitexplorer.core.training.events import Epoch, Finished, Step

SMALL = ["--width", "16", "--depth", "2", "--heads", "2", "--patch-size", "8"]
QUICK = ["--per-class", "8", "--test-per-class", "4", "--batch-size", "8", "--epochs", "2"]


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_splits(tmp_path_factory.mktemp("colours"))


def _train(data: Path, out: Path, *options: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), "--device", "cpu", *options])


@pytest.fixture(scope="module")
def trained(colours: Path, tmp_path_factory: pytest.TempPathFactory):
    """One run, its output and the input shapes the model saw."""
    out = tmp_path_factory.mktemp("trained") / "m.safetensors"
    shapes: list[tuple[int, ...]] = []
    original = SmallViTAdapter.embed  # where training and evaluation feed the patch embedding

    def recording(self, images):
        shapes.append(tuple(images.shape))
        return original(self, images)

    mp = pytest.MonkeyPatch()
    mp.setattr(SmallViTAdapter, "embed", recording)
    try:
        err, std = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            predictions = ["--predictions", str(out.parent / "p.csv")]
            status = _train(colours, out, *SMALL, *QUICK, "--lr", "3e-3", *predictions)
    finally:
        mp.undo()
    return status, out, std.getvalue(), err.getvalue(), shapes


@pytest.mark.slow
def test_training_saves_a_checkpoint_that_loads_back(trained) -> None:
    status, out, stdout, stderr, _ = trained
    assert status == 0, stderr
    model = load_model(str(out), device="cpu")
    config = model.module.config
    assert (config.image_size, config.patch_size, config.width, config.depth, config.heads) == (
        32, 8, 16, 2, 2,
    )  # fmt: skip
    assert config.mlp_ratio == 2.0 and config.drop_path == 0.1 and config.num_classes == 2
    assert model.spec.class_names == ("blue", "red")
    meta = read_weights(out)[1]["train"]
    assert meta["architecture"] == config.to_dict()
    settings = meta["settings"]
    assert settings["lr"] == 3e-3 and settings["augment_policy"] == "crop-flip"
    assert settings["clip_grad"] == 1.0 and settings["label_smoothing"] == 0.1
    assert settings["freeze"] == "none" and settings["epochs"] == 2
    assert len(meta["history"]) == 2 and meta["metrics"]["best_epoch"] in (1, 2)
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r.get("epoch") for r in records[:2]] == [1, 2] and "test_acc" in records[-1]
    assert f"best epoch {meta['metrics']['best_epoch']} of 2, validation accuracy" in stderr


def test_predictions_csv_has_a_row_per_test_image(trained) -> None:
    status, out, stdout, _, _ = trained
    rows = list(csv.reader((out.parent / "p.csv").open(encoding="utf-8", newline="")))
    assert rows[0] == ["source", "true", "predicted", "probability"] and len(rows) == 9
    sources = sorted(Path(r[0]).relative_to(out.parent.parent) for r in rows[1:])
    assert len(set(sources)) == 8 and all(r[1] == Path(r[0]).parent.name for r in rows[1:])
    assert all(r[2] in ("blue", "red") and 0.5 <= float(r[3]) <= 1.0 for r in rows[1:])
    final = json.loads(stdout.splitlines()[-1])
    correct = sum(r[1] == r[2] for r in rows[1:]) / 8
    assert correct == pytest.approx(final["test_acc"])


def test_curves_png_beside_the_checkpoint(trained) -> None:
    _, out, _, stderr, _ = trained
    curves = out.parent / "m.curves.png"
    assert f"curves: {curves}" in stderr
    with Image.open(curves) as image:
        assert image.format == "PNG" and image.size == (880, 300)


def test_printed_parameter_count_is_the_models(trained) -> None:
    status, out, _, stderr, _ = trained
    model = load_model(str(out), device="cpu")
    count = sum(p.numel() for p in model.module.parameters())
    first = stderr.splitlines()[0]
    assert first.startswith(f"{count:,} trainable parameters: 2 blocks of width 16")
    assert architecture.parameter_count(model.module.config) == count


@pytest.mark.parametrize("shape", [TINY, replace(TINY, mlp_ratio=2.0, width=48, heads=3)])
def test_parameter_count_without_building(shape) -> None:
    built = SmallViT(shape)
    assert architecture.parameter_count(shape) == sum(p.numel() for p in built.parameters())


def test_32_px_images_reach_the_model_unscaled(trained) -> None:
    _, _, _, _, shapes = trained
    assert shapes and all(s[1:] == (3, 32, 32) for s in shapes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--image-size", "30"],
            "--patch-size: the image size 30 is not a multiple of the patch size 4: try 3 or 5",
        ),
        (["--width", "100"], "--heads: the width 100 is not divisible by 3 heads: try 2 or 4"),
        (["--width", "0"], "--width: the width must be at least 1, not 0"),
        (["--patch-size", "-4"], "--patch-size: the patch size must be at least 1, not -4"),
        (["--depth", "0"], "--depth: the depth must be at least 1, not 0"),
        (["--heads", "0"], "--heads: the heads must be at least 1, not 0"),
        (["--image-size", "0"], "--image-size: the image size must be at least 1, not 0"),
        (["--dropout", "1.5"], "--dropout: the dropout must be at least 0 and below 1"),
    ],
)
def test_impossible_architectures_are_refused_in_one_line(
    tmp_path: Path, capsys, monkeypatch, options: list[str], message: str
) -> None:
    monkeypatch.setattr(train_cli, "_open_dataset", _no_dataset)
    assert _train(tmp_path / "nowhere", tmp_path / "m.safetensors", *options) == 2
    captured = capsys.readouterr()
    assert captured.err == f"vitexplorer: {message}\n" and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def _no_dataset(*args, **kwargs):
    raise AssertionError("the dataset must not be opened")


def test_a_model_too_big_for_memory_is_refused_with_the_estimate(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(train_cli, "_open_dataset", _no_dataset)
    monkeypatch.setattr(train_cli, "available_bytes", lambda device: 2 * 10**9)
    options = ["--width", "768", "--heads", "12", "--depth", "12", "--batch-size", "512"]
    assert _train(tmp_path / "nowhere", tmp_path / "m.safetensors", *options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    shape = train_cli.architecture(
        argparse.Namespace(**{**ARCH_DEFAULTS, "width": 768, "heads": 12, "depth": 12})
    )
    acts, weights = architecture.training_bytes(shape, 512)
    assert err == (
        f"vitexplorer: this ViT (12 blocks of width 768, 64 patches) needs about "
        f"{(acts + weights) / 1e9:.1f} GB to train at batch size 512 ({acts / 1e9:.1f} GB of "
        f"activations, {weights / 1e9:.1f} GB of parameters and optimiser state), more than the "
        f"2.0 GB free: lower --batch-size, --width or --depth, or raise --patch-size\n"
    )


def test_defaults_match_train_config() -> None:
    options = train_cli.train_parser().parse_args(["--data", "d", "--out", "m.safetensors"])
    assert options.warmup_epochs is None  # None: from --epochs
    assert train_cli.train_config(options) == TrainConfig()
    assert train_cli.train_config(options).warmup_epochs == 5.0
    few = train_cli.train_parser().parse_args(["--data", "d", "--out", "m.st", "--epochs", "3"])
    assert train_cli.train_config(few).warmup_epochs == pytest.approx(0.3)


# --- the engine: the best epoch kept, divergence, cancelling ---------------------------------


def _engine_run(colours: Path, monkeypatch, events_hook, **settings):
    torch.manual_seed(0)
    base = load_model("small_vit", "none", "cpu", small_config=replace(TINY, num_classes=2))
    config = TrainConfig(
        per_class=8, test_per_class=4, batch_size=4, epochs=4, warmup_epochs=0.0,
        mixed_precision=False, **settings,
    )  # fmt: skip
    dataset = open_dataset(str(colours))
    states: dict[int, dict[str, torch.Tensor]] = {}
    result = None
    for event in training.finetune(base, dataset, config):
        if isinstance(event, Epoch):
            states[event.epoch] = {k: v.clone() for k, v in base.module.state_dict().items()}
            events_hook(event, base.module)
        if isinstance(event, Finished):
            result = event.result
    return result, states


@pytest.mark.slow
def test_the_best_epochs_weights_are_the_ones_kept(colours: Path, monkeypatch) -> None:
    accuracies = iter([0.5, 0.9, 0.6, 0.7])
    original = training._Run._evaluate

    def scripted(self, data, frozen, stage):
        loss, acc, probs = yield from original(self, data, frozen, stage)
        return loss, (next(accuracies) if stage is None else acc), probs

    monkeypatch.setattr(training._Run, "_evaluate", scripted)
    result, states = _engine_run(colours, monkeypatch, lambda e, m: None)
    assert result.best_epoch == 2 and result.best_val_acc == 0.9 and len(result.history) == 4
    final = result.model.module.state_dict()
    assert all(torch.equal(final[k], states[2][k]) for k in final)
    assert not all(torch.equal(final[k], states[4][k]) for k in final)
    assert result.test_acc is not None  # tested with the best weights


@pytest.mark.slow
def test_divergence_keeps_the_best_so_far(colours: Path, monkeypatch) -> None:
    def poison(event, module):
        if event.epoch == 2:  # after epoch 2, a weight goes bad: epoch 3 diverges
            with torch.no_grad():
                module.head.weight.fill_(float("nan"))

    result, states = _engine_run(colours, monkeypatch, poison)
    assert result.diverged is not None and "try a tenth of it" in result.diverged
    assert result.best_epoch in (1, 2) and len(result.history) == 2
    final = result.model.module.state_dict()
    assert all(torch.equal(final[k], states[result.best_epoch][k]) for k in final)
    training.check_savable(result.model)


@pytest.mark.slow
def test_cancel_keeps_the_best_so_far(colours: Path) -> None:
    torch.manual_seed(0)
    base = load_model("small_vit", "none", "cpu", small_config=replace(TINY, num_classes=2))
    config = TrainConfig(per_class=8, test_per_class=4, batch_size=4, epochs=4,
                                  warmup_epochs=0.0, mixed_precision=False)  # fmt: skip
    stop = {"now": False}
    result = None
    state = None
    for event in training.finetune(base, open_dataset(str(colours)), config, lambda: stop["now"]):
        if isinstance(event, Epoch) and event.epoch == 1:
            state = {k: v.clone() for k, v in base.module.state_dict().items()}
        if isinstance(event, Step) and event.epoch == 2:
            stop["now"] = True
        if isinstance(event, Finished):
            result = event.result
    assert result.cancelled and result.best_epoch == 1
    final = result.model.module.state_dict()
    assert all(torch.equal(final[k], state[k]) for k in final)


def test_finetune_defaults_keep_no_best_and_no_clipping() -> None:
    config = FinetuneConfig()
    assert not config.keeps_best and config.gradient_clip == 0 and config.augmentation == "none"
    assert replace(config, augment=True).augmentation == "flip"


# --- augmentation ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", AUGMENTATIONS)
def test_augmentation_keeps_shape_and_dtype(policy: str) -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = augment_batch(images, policy, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("policy", ["crop-flip", "crop-flip-rotate", "trivialaugment"])
def test_augmentation_is_reproducible_with_a_seed(policy: str) -> None:
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    first = augment_batch(images, policy, torch.Generator().manual_seed(5))
    again = augment_batch(images, policy, torch.Generator().manual_seed(5))
    other = augment_batch(images, policy, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_crop_moves_the_image_within_the_padding() -> None:
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., 10, 10] = 255
    for seed in range(20):
        out = augment_batch(image, "crop-flip", torch.Generator().manual_seed(seed))
        where = (out[0, 0] == 255).nonzero()
        if len(where):  # the dot can leave the frame only by more than 4 px: it cannot here
            row, col = where[0].tolist()
            assert abs(row - 10) <= 4 and (abs(col - 10) <= 4 or abs(col - 21) <= 4)
        else:
            pytest.fail("the dot left the image")


def test_the_command_line_and_the_app_offer_every_augmentation() -> None:
    from vitexplorer.gui.finetune_settings import AUGMENTATION_CHOICES

    args = ["--data", "d", "--out", "m.st", "--augment", "randaugment"]
    assert train_cli.train_parser().parse_args(args).augment_policy == "randaugment"
    assert tuple(value for value, _ in AUGMENTATION_CHOICES) == AUGMENTATIONS


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_rotation_turns_the_image_about_its_centre(seed: int) -> None:
    """A bar through the centre comes out at the angle drawn, and a zero angle is the identity."""
    image = torch.zeros(1, 3, 33, 33, dtype=torch.uint8)
    image[..., 16, 4:29] = 255  # a horizontal bar through the centre
    generator = torch.Generator().manual_seed(seed)
    drawn = (torch.rand(1, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 15.0
    assert abs(float(drawn)) > 2  # the seeds draw angles worth measuring
    out = random_rotate(image, 15.0, generator)
    assert out.dtype == torch.uint8 and out[0, 0, 16, 16] > 200  # the centre stays
    rows, cols = torch.nonzero(out[0, 0] > 127, as_tuple=True)
    slope = np.polyfit(cols.numpy() - 16, rows.numpy() - 16, 1)[0]
    # each output pixel p shows the input at R(a) p: the bar's row 0 becomes y = -tan(a) x
    assert math.degrees(math.atan(-slope)) == pytest.approx(float(drawn), abs=1.5)
    assert torch.equal(random_rotate(image, 0.0, generator), image)


def _pixel_csv(path: Path, images: np.ndarray, header_id: str | None) -> None:
    """An unlabelled pixel CSV of gray (N, 32, 32) images, with or without an id column."""
    side = images.shape[1]
    columns = ([header_id] if header_id else []) + [f"pixel{i}" for i in range(side * side)]
    lines = [",".join(columns)]
    for n, image in enumerate(images):
        pixels = [str(v) for v in image.reshape(-1).tolist()]
        lines.append(",".join(([str(1000 + n)] if header_id else []) + pixels))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("header_id", ["ImageId", None])
def test_an_unlabelled_test_csv_gets_a_submission_of_its_ids_and_classes(
    colours: Path, tmp_path: Path, header_id: str | None
) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    test = tmp_path / "test.csv"
    _pixel_csv(test, images, header_id)
    out, predictions = tmp_path / "m.safetensors", tmp_path / "submission.csv"
    status = _train(
        colours, out, *SMALL, *QUICK, "--test-csv", str(test), "--predictions", str(predictions)
    )
    assert status == 0
    rows = list(csv.reader(predictions.open(encoding="utf-8", newline="")))
    assert rows[0] == [header_id or "ImageId", "Label"]
    ids = [1000 + n for n in range(5)] if header_id else [1, 2, 3, 4, 5]
    assert [int(r[0]) for r in rows[1:]] == ids
    # the saved model's own classes for the same pixels, gray in all three channels
    model = load_model(str(out), device="cpu")
    spec = model.spec
    x = torch.from_numpy(np.repeat(images[:, None], 3, axis=1))
    from vitexplorer.core.training.datasets import to_model_input

    with torch.no_grad():
        logits = model.module(to_model_input(x, 32, spec.mean, spec.std, spec.interpolation))
    assert [r[1] for r in rows[1:]] == [spec.class_names[i] for i in logits.argmax(1).tolist()]


def test_a_test_csv_is_checked_before_training(colours: Path, tmp_path: Path, capsys) -> None:
    ragged = tmp_path / "test.csv"
    ragged.write_text("pixel0,pixel1,pixel2,pixel3\n1,2,3,4\n5,6,7\n")
    out = tmp_path / "m.safetensors"
    args = ["--test-csv", str(ragged), "--predictions", str(tmp_path / "p.csv")]
    assert _train(colours, out, *SMALL, *QUICK, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test.csv" in err[0] and "row 3" in err[0], err
    assert not out.exists()
    assert _train(colours, out, *SMALL, *QUICK, "--test-csv", str(ragged)) == 2
    assert "--test-csv needs --predictions" in capsys.readouterr().err
