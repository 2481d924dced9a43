"""Colour scales that compare and ties that are never "right": the time-lapse's one scale across
the epochs (core and ``vitexplorer timelapse``), the uniform level 1/N marked on a figure's colour
bar, and the verdict of a prediction whose top probabilities tie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from tests.conftest import TINY
from tests.core.test_cli_timelapse import _quiet
from vitexplorer.cli.timelapse import _title
from vitexplorer.core.render.colour_tables import colour_table
from vitexplorer.core.render.figure import MARGIN, UNIFORM_INK, render_figure
from vitexplorer.core.render.scales import finite_range, uniform_label, uniform_level, uniform_mark
from vitexplorer.core.training.timelapse import TimeLapse, timelapse_from
from vitexplorer.core.training.timelapse_frames import Frame, epoch_levels, probe_maps, row_tokens
from vitexplorer.core.training.verdict import RIGHT, TIE, UNKNOWN, WRONG, is_tie, verdict

CLASSES = [f"kind {i}" for i in range(10)]
GRID, PREFIX, LAYERS, HEADS = (4, 4), 1, 2, 2
PATCHES = GRID[0] * GRID[1]


def _frame(epoch: int, rollout: np.ndarray, probability: float, runner_up: float | None) -> Frame:
    """One probe's frame: ``rollout`` (4, 4), class 0 predicted at ``probability``."""
    zeros = np.zeros((1, LAYERS, HEADS), np.float32)
    cls = np.stack([rollout.ravel() * (1 + 0.1 * i) for i in range(LAYERS * HEADS)])
    return Frame(
        epoch=epoch,
        predicted=np.array([0], np.int64),
        probability=np.array([probability], np.float32),
        cls_attention=cls.reshape(1, LAYERS, HEADS, PATCHES).astype(np.float32),
        rollout=rollout.reshape(1, PATCHES).astype(np.float32),
        distance=zeros,
        entropy=zeros,
        prefix_share=zeros,
        runner_up=None if runner_up is None else np.array([runner_up], np.float32),
    )


def _maps() -> tuple[np.ndarray, np.ndarray]:
    """Two epochs' maps on different ranges that share the value 0.05 everywhere but patch
    (0, 0): 0.02 to 0.05 before training, 0.05 to 0.09 after."""
    before, after = np.full(GRID, 0.05), np.full(GRID, 0.05)
    before[0, 0], after[0, 0] = 0.02, 0.09
    return before, after


def _timelapse() -> TimeLapse:
    before, after = _maps()
    return TimeLapse(
        grid=GRID,
        patch_size=8,
        num_prefix=PREFIX,
        num_classes=len(CLASSES),
        sources=["grey"],
        images=np.full((1, 32, 32, 3), 128, np.uint8),
        labels=np.array([0], np.int64),
        frames=[_frame(0, before, 0.1001, 0.1), _frame(1, after, 0.9, 0.05)],
        best_epoch=1,
    )


# --- the verdict ----------------------------------------------------------------------------
def test_a_tie_is_never_right_whatever_argmax_picked() -> None:
    # ten classes at 10 %: argmax picks class 0, which happens to be the true class
    assert is_tie(0.1, None, 10) and verdict(0, 0, 0.1, None, 10) == TIE
    assert verdict(0, 0, 0.1003, 0.1001, 10) == TIE  # the runner-up within a tenth of a point
    assert verdict(0, 0, 0.1013, 0.1001, 10) == RIGHT  # 0.12 points: narrow, but a choice
    assert verdict(3, 0, 0.45, 0.4495, 3) == TIE  # two classes tied, far above 1/3
    assert verdict(0, 0, 0.45, 0.40, 3) == RIGHT and verdict(1, 0, 0.45, 0.40, 3) == WRONG
    assert verdict(-1, 0, 0.9, 0.05, 10) == UNKNOWN
    # without the runner-up a top 0.2 of 10 classes stands out of the uniform 0.1: decided
    assert verdict(0, 0, 0.2, None, 10) == RIGHT


def test_frames_record_the_runner_up_and_say_a_tie(tmp_path: Path) -> None:
    timelapse = _timelapse()
    before, after = timelapse.frames
    assert before.verdict(0, 0, 10) == TIE and before.tied(0, 10)
    assert after.verdict(0, 0, 10) == RIGHT and not after.tied(0, 10)
    # the runner-up travels in the checkpoint's tensors and comes back
    tensors = {k.split(".", 1)[1]: v for k, v in timelapse.tensors().items()}
    again = timelapse_from(tensors, timelapse.metadata())
    assert again.frames[1].runner_up[0] == pytest.approx(0.05, abs=1e-3)
    # a time-lapse saved before the runner-up was recorded still reads, and a uniform top
    # probability is still a tie
    del tensors["runner_up"]
    older = timelapse_from(tensors, timelapse.metadata())
    assert older.frames[0].runner_up is None and older.frames[0].verdict(0, 0, 10) == TIE


def test_the_cli_title_says_a_tie_not_a_class() -> None:
    timelapse = _timelapse()
    model = type("M", (), {"spec": type("S", (), {"class_names": CLASSES})})()
    title = _title(timelapse, model, 0, timelapse.frames[0])
    assert title == "epoch 0 of 1 (before training): undecided, a tie at 10% (true: kind 0)"
    assert _title(timelapse, model, 0, timelapse.frames[1]).endswith("kind 0 90% (true: kind 0)")


# --- one scale across the epochs --------------------------------------------------------------
def test_the_scale_across_epochs_is_the_range_over_every_frame() -> None:
    timelapse = _timelapse()
    maps = probe_maps(timelapse, 0, "rollout")
    assert epoch_levels(maps) == pytest.approx((0.02, 0.09))
    cls = probe_maps(timelapse, 0, "attention", 1, 1)  # head 4 of 4 in the list: 1.3 times
    assert epoch_levels(cls) == pytest.approx((0.02 * 1.3, 0.09 * 1.3))
    mean = probe_maps(timelapse, 0, "attention", 0, None)  # heads 1 and 2: 1.0 and 1.1 times
    assert epoch_levels(mean) == pytest.approx((0.02 * 1.05, 0.09 * 1.05))
    assert finite_range(np.array([np.nan, 2.0, -np.inf, -1.0])) == (-1.0, 2.0)
    assert finite_range(np.array([np.nan])) == (0.0, 0.0)


def test_the_uniform_level_is_one_over_the_tokens_of_the_row() -> None:
    timelapse = _timelapse()
    assert row_tokens(timelapse) == 17  # CLS and 16 patches
    assert uniform_level(17) == pytest.approx(1 / 17) and uniform_label(17) == "uniform 1/17"
    assert uniform_mark("attention", 65) == (pytest.approx(1 / 65), "uniform 1/65")
    assert uniform_mark("rollout", 65) is not None
    assert uniform_mark("relevance", 65) is None  # relevance is no distribution


# --- the uniform mark on a figure's bar -----------------------------------------------------
def _ink_rows(figure, column: int) -> list[int]:
    pixels = np.asarray(figure.image)[:, column]
    return np.flatnonzero((pixels == UNIFORM_INK).all(axis=1)).tolist()


def test_the_figure_marks_the_uniform_level_where_it_lies_on_the_bar() -> None:
    display = np.full((32, 32, 3), 128, np.uint8)
    heat = np.linspace(0.0, 0.1, 16).reshape(4, 4)
    lut = colour_table()
    mark = (1 / 17, "uniform 1/17")
    figure = render_figure(display, heat, lut, "t", levels=(0.0, 0.1), uniform=mark)
    left, top, width, height = figure.map_box
    bar_middle = left + width + 14 + 10  # BAR_GAP, half the bar's width
    expected = top + height - (1 / 17) / 0.1 * height
    rows = _ink_rows(figure, bar_middle)
    assert rows and all(abs(r - expected) <= 1.5 for r in rows)
    assert figure.uniform == pytest.approx(1 / 17)
    assert figure.facts("f.png")["uniform_level"] == pytest.approx(1 / 17)
    # off the scale: at the end it lies beyond (the bottom), and the words say so
    below = render_figure(display, heat + 0.5, lut, "t", uniform=mark)
    left, top, width, height = below.map_box
    assert _ink_rows(below, bar_middle) and min(_ink_rows(below, bar_middle)) >= top + height - 2
    # no uniform asked for (relevance): no mark, and the card says nothing of one
    plain = render_figure(display, heat, lut, "t")
    assert not _ink_rows(plain, bar_middle) and "uniform_level" not in plain.facts("f.png")


# --- vitexplorer timelapse: one scale across the frames of its GIF and PNGs -------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vitexplorer.core.models.loading import load_model, save_checkpoint

    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path_factory.mktemp("scale") / "two-epochs.safetensors"
    save_checkpoint(path, model, {"class_names": CLASSES}, _timelapse())
    return path


def _patch_colour(image: Image.Image, row: int, col: int) -> np.ndarray:
    """The colour in the middle of patch (row, col) of a frame: its map is 448 px square (a
    32 px probe enlarged 14 times) at the figure's left margin, its bottom a margin above the
    figure's own (each frame's own height; the GIF pads below)."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    top = image.height - MARGIN - 448
    return pixels[top + 56 + 112 * row, MARGIN + 56 + 112 * col]


def _frames(folder: Path, gif: Path) -> tuple[list[Image.Image], list[Image.Image]]:
    pngs = [Image.open(p) for p in sorted(folder.glob("epoch-*.png"))]
    with Image.open(gif) as animation:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(animation)]
    # the GIF's frames, each pasted at the corner of the largest: cropped to its PNG's size
    return pngs, [f.crop((0, 0, *pngs[i].size)) for i, f in enumerate(frames)]


@pytest.mark.parametrize("scale", ["epochs", "frame"])
def test_cli_frames_share_one_scale_unless_asked_per_frame(
    checkpoint: Path, tmp_path: Path, scale: str
) -> None:
    extra = [] if scale == "epochs" else ["--scale", "frame"]
    status, _, stderr = _quiet(
        ["timelapse", str(checkpoint), "--out", str(tmp_path), "--format", "png",
         "--format", "gif", *extra]
    )  # fmt: skip
    assert status == 0, stderr
    folder = next(tmp_path.glob("probe-01-*.rollout"))
    pngs, gifs = _frames(folder, next(tmp_path.glob("probe-01-*.rollout.gif")))
    # patch (2, 2) holds 0.05 in both frames, whose ranges differ (0.02-0.05, 0.05-0.09)
    png_colours = [_patch_colour(p, 2, 2) for p in pngs]
    gif_colours = [_patch_colour(g, 2, 2) for g in gifs]
    if scale == "epochs":
        # on 0.02 to 0.09 the same value takes the same colour in every frame
        np.testing.assert_array_equal(png_colours[0], png_colours[1])
        assert np.abs(gif_colours[0] - gif_colours[1]).max() <= 8  # the GIF's palettes
        lut = colour_table().astype(float)
        index = round((0.05 - 0.02) / (0.09 - 0.02) * 255)
        expected = np.rint(0.45 * 128 + 0.55 * lut[index])  # the overlay's blend
        np.testing.assert_allclose(png_colours[0], expected, atol=1)  # float32 rounding
    else:  # each on its own range: the top colour before training, the bottom one after
        assert np.abs(png_colours[0] - png_colours[1]).max() > 100
        assert np.abs(gif_colours[0] - gif_colours[1]).max() > 100
