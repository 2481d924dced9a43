"""The command line's figures mark the uniform level 1/N on the colour bar of every attention and
rollout map (``analyze``'s cls, attention and rollout PNGs, ``compare``'s maps of A and of B), N
the tokens of the row, and say nothing of one for relevance or a difference; and every stdout
line of ``analyze`` and ``compare`` says when a model's weights are random (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.core.conftest import distinct_small_vit
from vitexplorer.cli import main
from vitexplorer.cli.analyze import subtitle
from vitexplorer.core.models.loading import save_checkpoint
from vitexplorer.core.models.spec import RANDOM
from vitexplorer.core.render.figure import BAR_GAP, BAR_WIDTH, UNIFORM_INK

SAMPLE = Path(__file__).parents[1] / "data" / "cifar10-test-sample"
IMAGE = SAMPLE / "cat" / "00000.png"
METHODS = ["--method", "attention", "--method", "rollout", "--method", "relevance"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny checkpoints whose attention is far from uniform: "coarse" (8 px patches, 4x4
    grid, 17 tokens) and "fine" (4 px patches, 8x8 grid, 65 tokens)."""
    folder = tmp_path_factory.mktemp("uniform")
    paths = {}
    for name, seed, patch in (("coarse", 0, 8), ("fine", 2, 4)):
        paths[name] = folder / f"{name}.safetensors"
        save_checkpoint(paths[name], distinct_small_vit(seed, patch))
    return paths


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> list[str]:
    assert main([*map(str, args), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert all(line.startswith("vitexplorer: note: ") for line in captured.err.splitlines())
    return [line for line in captured.out.splitlines() if line.strip()]


def _mark_rows(png: Path, picture: dict) -> tuple[list[int], tuple[int, int]]:
    """The pixel rows of the uniform mark's ink down the middle of the colour bar, and the
    bar's top and height (the map area's)."""
    area = picture["map_area"]
    column = area["left"] + area["width"] + BAR_GAP + BAR_WIDTH // 2
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))[:, column]
    rows = np.flatnonzero((pixels == UNIFORM_INK).all(axis=1)).tolist()
    return rows, (area["top"], area["height"])


def _assert_marked_at(png: Path, picture: dict, tokens: int) -> None:
    """The card records 1/``tokens`` and the bar's mark sits where that value lies on the
    scale (or at the end it lies beyond)."""
    uniform = 1 / tokens
    assert picture["uniform_level"] == pytest.approx(uniform, rel=1e-9)
    low, high = picture["colour_scale"]
    rows, (top, height) = _mark_rows(png, picture)
    fraction = min(max((uniform - low) / (high - low), 0.0), 1.0)
    expected = min(top + height - fraction * height, top + height - 1)
    assert rows, f"{png.name}: no mark on the bar"
    assert all(abs(row - expected) <= 1.5 for row in rows), (png.name, rows, expected)


def _assert_unmarked(png: Path, picture: dict) -> None:
    assert "uniform_level" not in picture
    assert _mark_rows(png, picture)[0] == [], f"{png.name}: a uniform mark on its bar"


def test_analyze_marks_one_over_the_tokens_on_attention_and_rollout_bars_only(
    models, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    lines = _run(capsys, "analyze", IMAGE, "--model", models["fine"], *METHODS, "--out", out)
    assert lines[0].startswith("00000: ") and "random" not in lines[0]  # weights from a file
    facts = json.loads((out / "00000.json").read_text())
    tokens = facts["num_tokens"]
    assert tokens == 65  # CLS and an 8x8 grid
    _assert_marked_at(out / "00000.cls.png", facts["picture"], tokens)
    inside = 0
    for method in ("attention", "rollout"):
        card = json.loads((out / f"00000.{method}.json").read_text())
        _assert_marked_at(out / f"00000.{method}.png", card["picture"], tokens)
        low, high = card["picture"]["colour_scale"]
        inside += low < 1 / tokens < high
    assert inside  # at least one mark inside its scale, not only pinned to an end
    card = json.loads((out / "00000.relevance.json").read_text())
    _assert_unmarked(out / "00000.relevance.png", card["picture"])


def test_analyze_keep_aspect_counts_the_tokens_of_the_image_grid(models, tmp_path, capsys):
    wide = tmp_path / "wide.png"
    Image.open(IMAGE).convert("RGB").resize((64, 32)).save(wide)
    out = tmp_path / "out"
    _run(capsys, "analyze", wide, "--model", models["coarse"], "--method", "rollout",
         "--aspect", "keep", "--out", out)  # fmt: skip
    card = json.loads((out / "wide.rollout.json").read_text())
    rows, cols = card["input"]["grid"]
    assert rows * cols > 16  # wider than the square 4x4 grid
    _assert_marked_at(out / "wide.rollout.png", card["picture"], rows * cols + 1)


@pytest.mark.slow
def test_compare_marks_each_model_at_its_own_tokens_and_not_the_difference(
    models, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    pair = ["--model", models["coarse"], "--model", models["fine"]]
    _run(capsys, "compare", IMAGE, *pair, "--method", "attention", "--method", "rollout",
         "--method", "relevance", "--out", out)  # fmt: skip
    for method in ("attention", "rollout"):
        for side, tokens in (("A", 17), ("B", 65)):
            card = json.loads((out / f"00000.{method}.{side}.json").read_text())
            _assert_marked_at(out / f"00000.{method}.{side}.png", card["picture"], tokens)
        card = json.loads((out / f"00000.{method}.B-A.json").read_text())
        _assert_unmarked(out / f"00000.{method}.B-A.png", card["picture"])
    for side in ("A", "B", "B-A"):
        card = json.loads((out / f"00000.relevance.{side}.json").read_text())
        _assert_unmarked(out / f"00000.relevance.{side}.png", card["picture"])


# --- random weights, said on every line -------------------------------------------------------


def test_analyze_lines_say_random_weights(models, tmp_path, capsys) -> None:
    images = sorted(SAMPLE.glob("*/*.png"))[:2]
    model = ["--model", models["coarse"]]
    trained = _run(capsys, "analyze", *images, *model, "--out", tmp_path / "file")
    untrained = _run(
        capsys, "analyze", *images, *model, "--weights", "none", "--out", tmp_path / "random"
    )
    assert len(trained) == len(untrained) == 2
    assert not any("random" in line for line in trained)
    assert all(line.endswith(" (random weights)") for line in untrained)
    assert [line.split(":")[0] for line in untrained] == [path.stem for path in images]
    facts = json.loads((tmp_path / "random" / f"{images[0].stem}.json").read_text())
    assert facts["weights"] == RANDOM  # what the line says, the JSON says


def test_compare_lines_say_which_model_has_random_weights(models, tmp_path, capsys) -> None:
    pair = ["--model", models["coarse"], "--model", models["coarse"]]
    lines = _run(capsys, "compare", IMAGE, *pair, "--weights", "none", "--weights", "default",
                 "--out", tmp_path / "out")  # fmt: skip
    line = next(line for line in lines if line.startswith("00000: "))
    side_a, side_b = line.removeprefix("00000: ").split("; ")
    assert side_a.startswith("A ") and side_a.endswith(" (random weights)")
    assert side_b.startswith("B ") and "random" not in side_b


def test_the_figure_subtitle_says_random_weights(models) -> None:
    from vitexplorer.core.models.loading import load_model

    spec = load_model(str(models["coarse"]), device="cpu").spec
    assert subtitle(spec, "/x/cat.png") == f"{spec.display_name} · cat.png"
    assert subtitle(spec.randomised(), "/x/cat.png") == (
        f"{spec.display_name}, random weights · cat.png"
    )
