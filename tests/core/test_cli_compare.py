"""``vitexplorer compare``, run in-process: two tiny checkpoints side by side, the files written,
the difference B - A, the head table, and one line with exit 2 for bad input."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.core.conftest import distinct_small_vit
from vitexplorer.cli import compare as compare_cli
from vitexplorer.cli import main
from vitexplorer.cli.common import DIVERGING, colour_table
from vitexplorer.core.explain import model_compare
from vitexplorer.core.models.loading import save_checkpoint

SAMPLE = Path(__file__).parents[1] / "data" / "cifar10-test-sample"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """before and after (one architecture, 4x4 patches, other weights) and finer (8x8)."""
    folder = tmp_path_factory.mktemp("pair")
    paths = {}
    for name, seed, patch in (("before", 0, 8), ("after", 1, 8), ("finer", 2, 4)):
        paths[name] = folder / f"{name}.safetensors"
        save_checkpoint(paths[name], distinct_small_vit(seed, patch))
    return paths


def _images() -> list[Path]:
    return sorted(SAMPLE.glob("*/*.png"))[:2]


def _compare(*args: str | Path) -> int:
    return main(["compare", *map(str, args), "--device", "cpu"])


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_two_checkpoints_end_to_end(checkpoints, tmp_path, capsys) -> None:
    images = _images()
    assert len(images) == 2
    out = tmp_path / "out"
    models = ["--model", checkpoints["before"], "--model", checkpoints["after"]]
    methods = ["--method", "attention", "--method", "rollout", "--method", "relevance"]
    assert _compare(*images, *models, *methods, "--layer", "1", "--head", "2", "--out", out) == 0

    stems = [path.stem for path in images]
    expected = {"head_changes.csv", "head_changes.json"}
    for stem in stems:
        for method in ("attention", "rollout", "relevance"):
            for side in ("A", "B", "B-A"):
                expected |= {f"{stem}.{method}.{side}.{ext}" for ext in ("npy", "png", "json")}
    assert {path.name for path in out.iterdir()} == expected

    for stem in stems:
        for method in ("attention", "rollout", "relevance"):
            a = np.load(out / f"{stem}.{method}.A.npy")
            b = np.load(out / f"{stem}.{method}.B.npy")
            difference = np.load(out / f"{stem}.{method}.B-A.npy")
            assert a.shape == b.shape == (4, 4) and a.dtype == np.float32
            assert np.array_equal(difference, b - a) and difference.any()
            card = json.loads((out / f"{stem}.{method}.B-A.json").read_text())
            # two unrelated checkpoints: B - A, said neutrally (no "before" and "after")
            assert card["comparison"]["difference"] == model_compare.DIFFERENCE
            assert card["comparison"]["compared"] == "patch for patch, over the patch grid"
            assert card["A"]["model"]["weights"]["label"] == "file before.safetensors"
            assert card["B"]["model"]["weights"]["label"] == "file after.safetensors"
            assert card["title"].startswith("B - A · ") and "before" not in card["title"]
            assert card["subtitle"].startswith("A: before.safetensors · B: after.safetensors")
            largest = float(np.abs(difference).max())
            assert card["picture"]["colour_scale"] == pytest.approx([-largest, largest])
            card_a = json.loads((out / f"{stem}.{method}.A.json").read_text())
            card_b = json.loads((out / f"{stem}.{method}.B.json").read_text())
            shared = [float(min(a.min(), b.min())), float(max(a.max(), b.max()))]
            assert card_a["picture"]["colour_scale"] == pytest.approx(shared)
            assert card_b["picture"]["colour_scale"] == card_a["picture"]["colour_scale"]
        attention = json.loads((out / f"{stem}.attention.A.json").read_text())
        assert attention["parameters"] == {"layer": 1, "head": 2, "token": 1}  # from 1
        assert (
            attention["title"] == "model A · attention · layer 1 of 2, head 2 of 2 · the CLS token"
        )
        with Image.open(out / f"{stem}.attention.B-A.png") as png:
            assert png.mode == "RGB" and png.width >= 448

    with (out / "head_changes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2  # one per layer x head
    assert sorted((r["layer"], r["head"]) for r in rows) == [
        ("1", "1"),
        ("1", "2"),
        ("2", "1"),
        ("2", "2"),
    ]
    assert {r["images"] for r in rows} == {"2"}
    changes = [abs(float(r["mean_distance_change_px"])) for r in rows]
    assert changes == sorted(changes, reverse=True) and changes[0] > 0
    for row in rows:
        change = float(row["entropy_b_nats"]) - float(row["entropy_a_nats"])
        assert float(row["entropy_change_nats"]) == pytest.approx(change, abs=2e-5)
    table_card = json.loads((out / "head_changes.json").read_text())
    assert table_card["images"] == [str(path) for path in images]
    assert table_card["A"]["model"]["num_layers"] == 2

    captured = capsys.readouterr()
    lines = _lines(captured.out)
    assert lines[0] == (
        "model A: before.safetensors; model B: after.safetensors; difference: B - A"
    )
    assert len(lines) == 4 and lines[1].startswith(f"{stems[0]}: A ") and "; B " in lines[1]
    assert lines[-1] == f"2 image(s) -> {out / 'head_changes.csv'}, {out / 'head_changes.json'}"
    assert captured.err == ""


def test_a_checkpoint_against_itself_differs_by_zero(checkpoints, tmp_path, capsys) -> None:
    image = _images()[0]
    out = tmp_path / "same"
    model = checkpoints["after"]
    methods = ["--method", "attention", "--method", "rollout", "--method", "relevance"]
    assert _compare(image, "--model", model, "--model", model, *methods, "--out", out) == 0
    for method in ("attention", "rollout", "relevance"):
        a = np.load(out / f"{image.stem}.{method}.A.npy")
        assert a.any()
        assert np.array_equal(np.load(out / f"{image.stem}.{method}.B.npy"), a)
        assert not np.load(out / f"{image.stem}.{method}.B-A.npy").any()
    with (out / "head_changes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for column in ("mean_distance_change_px", "entropy_change_nats", "prefix_share_change"):
        assert {float(row[column]) for row in rows} == {0.0}
    assert capsys.readouterr().err == ""


def test_different_grids_are_resampled_to_the_image(checkpoints, tmp_path, capsys) -> None:
    image = tmp_path / "wide.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    out = tmp_path / "grids"
    models = ["--model", checkpoints["before"], "--model", checkpoints["finer"]]
    assert _compare(image, *models, "--method", "rollout", "--token", "7", "--out", out) == 0
    a, b = np.load(out / "wide.rollout.A.npy"), np.load(out / "wide.rollout.B.npy")
    assert a.shape == b.shape == (40, 40)  # the 40x40 centre crop of a 50x40 image
    assert np.array_equal(np.load(out / "wide.rollout.B-A.npy"), b - a)
    card = json.loads((out / "wide.rollout.B.json").read_text())
    assert card["parameters"]["token"] == 1 + 2 * 8 + 2 + 1  # B's patch row 3, col 3, from 1
    assert card["map"]["axes"][0] == "axis 0: pixel rows 1..40 of model A's crop"
    errors = _lines(capsys.readouterr().err)
    assert errors == [
        "vitexplorer: note: model A has a 4x4 grid with 1 prefix token, model B 8x8 with 1: "
        "the maps are compared resampled to the image (bilinear)",
        "vitexplorer: note: model A's query patch row 2, col 2 of 4x4 is model B's patch row "
        "3, col 3 of 8x8, the patch under its centre (the upper left one: the centre falls on "
        "a border between B's patches)",
    ]
    with (out / "head_changes.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4  # two layers of two heads in both


def _one_line_exit_2(capsys, *args: str | Path) -> str:
    assert _compare(*args) == 2
    captured = capsys.readouterr()
    errors = _lines(captured.err)
    assert len(errors) == 1, errors
    assert "Traceback" not in captured.err and captured.out == ""
    return errors[0]


def test_bad_input_is_one_line_and_exit_2(checkpoints, tmp_path, capsys) -> None:
    image = _images()[0]
    model = checkpoints["before"]
    out = tmp_path / "bad"
    assert _one_line_exit_2(capsys, image, "--model", model, "--out", out) == (
        "vitexplorer: give --model exactly twice, model A then model B (the base first, to "
        "compare a fine-tune with it); it was given 1 time(s)"
    )
    three = ["--model", model] * 3
    assert "it was given 3 time(s)" in _one_line_exit_2(capsys, image, *three, "--out", out)
    missing = tmp_path / "nope.png"
    pair = ["--model", model, "--model", model]
    assert _one_line_exit_2(capsys, missing, *pair, "--out", out) == (
        f"vitexplorer: {missing}: no such file or folder"
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    message = _one_line_exit_2(capsys, image, "--model", model, "--model", corrupt, "--out", out)
    assert message.startswith("vitexplorer: model B: ") and "corrupt.safetensors" in message
    weights = ["--weights", "none"] * 3
    assert "--weights once" in _one_line_exit_2(capsys, image, *pair, *weights, "--out", out)
    assert _one_line_exit_2(capsys, image, *pair, "--layer", "3", "--out", out) == (
        "vitexplorer: model A: --layer 3: layers are numbered from 1; this model has layers 1 "
        "to 2 (-1 is the last)"
    )
    relevance = ["--method", "relevance", "--token", "2"]
    assert _one_line_exit_2(capsys, image, *pair, *relevance, "--out", out) == (
        "vitexplorer: relevance explains the CLS token (token 1) only, not token 2"
    )
    assert not any(out.glob("*.npy"))


def test_an_unreadable_image_fails_alone(checkpoints, tmp_path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = _images()[0]
    out = tmp_path / "some"
    pair = ["--model", checkpoints["before"], "--model", checkpoints["after"]]
    assert _compare(bad, good, *pair, "--out", out) == 1
    errors = _lines(capsys.readouterr().err)
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert (out / f"{good.stem}.attention.B-A.npy").is_file()
    with (out / "head_changes.csv").open(newline="") as handle:
        assert {row["images"] for row in csv.DictReader(handle)} == {"1"}


def test_the_cli_names_the_core_statistics() -> None:
    # repeated in the command so that its help imports no numpy; the help's imports are
    # checked with the other commands' in test_cli.py
    assert compare_cli.HEAD_STATISTICS == model_compare.HEAD_STATISTICS


@pytest.mark.parametrize("name", ["inferno", DIVERGING])
def test_colour_tables_without_qt_stay_close_to_pyqtgraphs(name: str, monkeypatch) -> None:
    with_qt = colour_table(name).astype(int)
    monkeypatch.setitem(sys.modules, "pyqtgraph", None)  # import pyqtgraph fails
    without = colour_table(name).astype(int)
    assert without.shape == (256, 3) and np.abs(with_qt - without).max() <= 16
    if name == DIVERGING:  # blue below zero, near white at zero, red above
        assert without[0].argmax() == 2 and without[255].argmax() == 0
        assert without[128].min() >= 225


@pytest.mark.slow
def test_a_fine_tune_and_its_base_are_after_minus_before(checkpoints, tmp_path, capsys) -> None:
    """B's checkpoint names A as its base: the difference is "after minus before", and B's
    name says what it was fine-tuned on; the other way round it is "before minus after"."""
    from vitexplorer.core.models.loading import load_model

    base = load_model(str(checkpoints["before"]), device="cpu").spec
    record = {
        "base": f"{base.display_name}, file before.safetensors",
        "dataset": "CIFAR-10",
        "settings": {"per_class": 50, "epochs": 1, "freeze": "last:2"},
        "metrics": {"epochs_completed": 1},
    }
    tuned = checkpoints["before"].parent / "tuned.safetensors"  # beside its base
    save_checkpoint(tuned, distinct_small_vit(5, 8), {"finetune": record})
    image = _images()[0]
    out = tmp_path / "tuned-out"
    assert _compare(image, "--model", checkpoints["before"], "--model", tuned, "--out", out) == 0
    classes = len(base.class_names)
    named = (
        f"tuned.safetensors: {base.display_name}, fine-tuned on CIFAR-10 ({50 * classes} "
        f"images, 1 epoch, last 2 blocks)"
    )
    first = _lines(capsys.readouterr().out)[0]
    assert first == (
        f"model A: before.safetensors; model B: {named}; difference: B - A (after minus before)"
    )
    card = json.loads((out / f"{image.stem}.attention.B-A.json").read_text())
    assert card["title"].startswith("B - A (after minus before) · ")
    assert card["comparison"]["difference"] == model_compare.difference_words(
        model_compare.AFTER_MINUS_BEFORE
    )
    assert "B was fine-tuned from A" in card["comparison"]["difference"]
    table = json.loads((out / "head_changes.json").read_text())
    assert table["difference"].endswith("(after minus before)")

    swapped = tmp_path / "swapped-out"
    assert (
        _compare(image, "--model", tuned, "--model", checkpoints["before"], "--out", swapped) == 0
    )
    card = json.loads((swapped / f"{image.stem}.attention.B-A.json").read_text())
    assert card["title"].startswith("B - A (before minus after) · ")
    # a checkpoint that names another base is not "after" anything here
    unrelated = tmp_path / "unrelated-out"
    pair = ["--model", checkpoints["after"], "--model", tuned]
    assert _compare(image, *pair, "--out", unrelated) == 0
    card = json.loads((unrelated / f"{image.stem}.attention.B-A.json").read_text())
    assert card["title"].startswith("B - A · ")
    assert card["comparison"]["difference"] == model_compare.DIFFERENCE
    # nor is a file that only shares its base's name: the base is the file beside the checkpoint
    elsewhere = tmp_path / "before.safetensors"
    save_checkpoint(elsewhere, distinct_small_vit(6, 8))
    namesake = tmp_path / "namesake-out"
    assert _compare(image, "--model", elsewhere, "--model", tuned, "--out", namesake) == 0
    card = json.loads((namesake / f"{image.stem}.attention.B-A.json").read_text())
    assert card["title"].startswith("B - A · ")
