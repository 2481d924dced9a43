"""A command line that agrees with itself (issue 21): random weights are random for every model,
``analyze`` takes folders as ``stats`` does, ``sanity`` runs every --method it is given, a
mistyped model name is answered with the closest names, the demo among them."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path

import numpy as np
import pytest

from tests.core.test_cli import _image, _lines
from vitexplorer.cli import main
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models import loading as models
from vitexplorer.core.models import spec
from vitexplorer.core.models.spec import RANDOM

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "data" / "cifar10-test-sample"
demo_shipped = pytest.mark.skipif(not spec.demo_path().is_file(), reason="no demo model here")


def _cpu(*args: str | Path) -> int:
    return main([*map(str, args), "--device", "cpu"])


# --- random weights are random ------------------------------------------------------------------


@pytest.mark.slow
@demo_shipped
def test_the_demo_with_random_weights_is_its_architecture_untrained(tmp_path, capsys):
    bird = SAMPLES / "bird" / "00025.png"
    trained, untrained = tmp_path / "trained", tmp_path / "random"
    assert _cpu("analyze", bird, "--model", "demo", "--out", trained) == 0
    assert _cpu("analyze", bird, "--model", "demo", "--weights", "none", "--out", untrained) == 0
    before = json.loads((trained / "00025.json").read_text())
    after = json.loads((untrained / "00025.json").read_text())
    assert before["weights"] == "trained on CIFAR-10"
    assert after["weights"] == RANDOM
    assert after["display_name"] == spec.DEMO_RANDOM_LABEL and "trained" not in after["weights"]
    # the same architecture
    for key in ("grid", "num_layers", "num_heads", "num_tokens", "patch_size"):
        assert after[key] == before[key]
    # the predictions are not the trained model's
    shown = {p["index"]: p["probability"] for p in before["predictions"]}
    found = {p["index"]: p["probability"] for p in after["predictions"]}
    assert any(abs(found[i] - shown[i]) > 1e-3 for i in found.keys() & shown.keys()) or (
        found.keys() != shown.keys()
    )
    a = np.load(trained / "00025.attention.npy")
    b = np.load(untrained / "00025.attention.npy")
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3


def test_a_checkpoint_with_random_weights_keeps_its_shape_not_its_weights(checkpoint, tmp_path):
    trained = models.load_model(str(checkpoint), device="cpu")
    untrained = models.load_model(str(checkpoint), "none", device="cpu")
    assert untrained.spec.weights == RANDOM and untrained.weights_file is None
    assert untrained.spec.grid == trained.spec.grid
    assert untrained.spec.class_names == trained.spec.class_names
    same = trained.module.state_dict()
    for key, value in untrained.module.state_dict().items():
        assert value.shape == same[key].shape
    differ = [k for k, v in untrained.module.state_dict().items() if not v.equal(same[k])]
    drawn = [k for k, v in same.items() if v.unique().numel() > 1]  # not constant-initialised
    assert "head.weight" in drawn and set(drawn) <= set(differ)
    photo = load_image(_image(tmp_path / "p.png", (32, 32), seed=1))
    logits = analyze_image(untrained, photo).logits
    assert np.abs(logits - analyze_image(trained, photo).logits).max() > 1e-3


def test_random_weights_of_a_checkpoint_on_the_command_line(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "p.png", (32, 32), seed=2)
    out = tmp_path / "out"
    assert _cpu("analyze", photo, "--model", checkpoint, "--weights", "none", "--out", out) == 0
    assert json.loads((out / "p.json").read_text())["weights"] == RANDOM
    assert capsys.readouterr().err == ""  # nothing "ignored"


def test_another_weights_file_for_a_checkpoint_is_refused_not_ignored(
    checkpoint, base, tmp_path, capsys
):
    photo = _image(tmp_path / "p.png", (32, 32), seed=2)
    out = tmp_path / "out"
    assert _cpu("analyze", photo, "--model", checkpoint, "--weights", base, "--out", out) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "carries its own weights" in err[0] and base.name in err[0]
    assert not list(out.glob("*.json"))


@demo_shipped
def test_a_weights_file_for_the_demo_is_loaded_not_ignored(checkpoint):
    loaded = models.load_model("demo", str(checkpoint), device="cpu")
    assert loaded.weights_file == checkpoint.resolve()
    assert loaded.spec.weights == f"file {checkpoint.name}"
    assert loaded.spec.num_layers == 2  # the file's small ViT, not the demo's six layers


# --- analyze takes folders ----------------------------------------------------------------------


def test_analyze_takes_a_folder_as_stats_does(checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    first = _image(folder / "a" / "one.png", (32, 32), seed=3)
    second = _image(folder / "two.png", (40, 32), seed=4)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert _cpu("analyze", folder, "--model", checkpoint, "--out", out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["one", "two"]  # the scanner's order
    model = models.load_model(str(checkpoint), device="cpu")
    for path in (first, second):
        facts = json.loads((out / f"{path.stem}.json").read_text())
        assert facts["image"] == str(path)
        expected = analyze_image(model, load_image(path)).attention
        np.testing.assert_allclose(
            np.load(out / f"{path.stem}.attention.npy"), expected, rtol=0, atol=1e-6
        )
    assert sorted(p.suffix for p in out.iterdir()).count(".json") == 2


def test_analyze_of_a_folder_without_images_says_so(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cpu("analyze", empty, "--model", checkpoint, "--out", tmp_path / "o") == 2
    assert _lines(capsys.readouterr().err) == [f"vitexplorer: {empty} holds no image files"]
    # beside an image, an empty folder is one line among the results and the image is written
    photo = _image(tmp_path / "photo.png", (32, 32), seed=7)
    assert _cpu("analyze", empty, photo, "--model", checkpoint, "--out", tmp_path / "m") == 1
    assert _lines(capsys.readouterr().err) == ["vitexplorer: empty: the folder holds no images"]
    assert (tmp_path / "m" / "photo.json").is_file()


# --- sanity runs each method --------------------------------------------------------------------


@pytest.mark.slow
def test_sanity_runs_every_method_and_names_it_in_every_line(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=6)
    both = tmp_path / "both"
    args = ["sanity", photo, "--model", checkpoint, "--seed", "3"]
    assert _cpu(*args, "--method", "rollout", "--method", "relevance", "--out", both) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" map ")[0] for line in lines] == [
        "photo: Spearman of the rollout",
        "photo: Spearman of the relevance",
    ]
    for method in ("rollout", "relevance"):
        alone = tmp_path / method
        assert _cpu(*args, "--method", method, "--out", alone) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"photo: Spearman of the {method} map with the original")
        assert line in lines  # the same correlations as a run of that method alone
        maps = np.load(both / f"photo.{method}.sanity.npy")
        np.testing.assert_allclose(maps, np.load(alone / "photo.sanity.npy"), rtol=0, atol=1e-6)
        card = json.loads((both / f"photo.{method}.sanity.json").read_text())
        assert card["method"] == method and card["maps"]["file"] == f"photo.{method}.sanity.npy"
        assert (both / f"photo.{method}.sanity.csv").read_text() == (
            alone / "photo.sanity.csv"
        ).read_text()
    assert not (both / "photo.sanity.npy").exists()


def test_faithfulness_refuses_several_methods_in_one_line(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=6)
    args = ["faithfulness", photo, "--model", checkpoint, "--out", tmp_path / "f"]
    assert _cpu(*args, "--method", "rollout", "--method", "relevance") == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "one method per run" in err[0] and "rollout, relevance" in err[0]


# --- a mistyped model -------------------------------------------------------------------------


def test_a_mistyped_demo_is_answered_with_the_demo(tmp_path, capsys):
    photo = _image(tmp_path / "p.png", (32, 32), seed=2)
    assert _cpu("analyze", photo, "--model", "demoo", "--out", tmp_path / "o") == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1
    assert "did you mean demo?" in err[0]
    listed = err[0].split("choose one of ")[1].split(", a timm:")[0].split(", ")
    assert listed[0] == "demo" and "small_vit" in listed and "vit_b_16" in listed
