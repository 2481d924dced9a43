"""Numbers that mislead: a constant output, a map of zeros, NaN in JSON, a class that changes under
the sanity check, and the perturbation protocol of Chefer et al. (2021) beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY
from tests.core.test_cli import _image
from vitexplorer.cli import main
from vitexplorer.core.evaluate.faithfulness import (
    black_input,
    chefer_fractions,
    class_of_folder,
    faithfulness,
    labelled_images,
    pixel_removal_counts,
    pixel_removed_copies,
    upsampled_map,
)
from vitexplorer.core.evaluate.sanity import sanity_check
from vitexplorer.core.explain import relevance as core_relevance
from vitexplorer.core.explain.analysis import constant_output, flat_map
from vitexplorer.core.explain.maps import hold_target, method_explainer
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.explain.provenance import json_ready, strict_json
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.preprocessing import preprocess


def strict_load(path: Path) -> dict:
    """JSON as a strict parser reads it: NaN and Infinity are refused."""

    def refuse(name: str) -> None:
        raise ValueError(f"{path.name} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _checkpoint(folder: Path, head: str) -> Path:
    """The tiny small ViT with its head made ``zero`` (every logit 0) or ``nan``."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    with torch.no_grad():
        fill = 0.0 if head == "zero" else float("nan")
        model.module.head.weight.fill_(fill)
        model.module.head.bias.fill_(fill)
    path = folder / f"{head}-head.safetensors"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def zero_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("zero"), "zero")


@pytest.fixture(scope="module")
def nan_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("nan"), "nan")


# --- detection --------------------------------------------------------------------------------


def test_constant_output_and_flat_map_say_why() -> None:
    assert constant_output(np.zeros(1000, dtype=np.float32)).startswith("every logit is 0:")
    assert "0.10%" in constant_output(np.zeros(1000))
    assert constant_output(np.full(10, 3.5)).startswith("every logit is 3.5:")
    assert "2 of the model's 4 logits are not finite" in constant_output(
        np.array([1.0, np.nan, np.inf, 0.0])
    )
    assert constant_output(np.array([0.0, 1e-3, 0.0])) is None
    assert constant_output(np.array([1e4, 1e4 + 0.1])) is None  # a real difference at scale
    assert constant_output(np.array([1e4, 1e4 + 1e-3])) is not None  # float32 noise at 1e4

    assert (
        flat_map(np.zeros((4, 4))) == "the map is zero everywhere: it ranks no patch above another"
    )
    assert flat_map(np.full((2, 3), 0.25), "the rollout map").startswith("the rollout map is 0.25")
    assert "1 value(s) that are not finite" in flat_map(np.array([[0.0, np.nan]]))
    assert flat_map(np.array([[0.0, 1e-9]])) is None  # relevance is tiny, but it ranks


def test_json_ready_replaces_what_is_not_finite() -> None:
    data = {"a": [1.0, float("nan")], "b": {"c": np.float32(np.inf), "d": np.int64(3)}}
    clean, replaced = json_ready(data)
    assert clean == {"a": [1.0, None], "b": {"c": None, "d": 3}}
    assert replaced == ["a[1]", "b.c"]
    text, _ = strict_json(data)
    assert json.loads(text) == clean


# --- analyze ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchvision_random_weights_say_their_output_is_constant(tmp_path, capsys) -> None:
    """The reported case: ViT-B/32 with random weights has a zero head, every logit is 0."""
    photo = _image(tmp_path / "cat.png", (64, 48), seed=1)
    out = tmp_path / "out"
    status = main(["analyze", str(photo), "--model", "vit_b_32", "--weights", "none",
                   "--out", str(out), "--method", "relevance"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    warnings = [line for line in captured.err.splitlines() if "warning: cat.png:" in line]
    assert len(warnings) == 2, captured.err
    assert "every logit is 0" in warnings[0] and "torchvision" in warnings[0]
    assert "the relevance map is zero everywhere" in warnings[1]
    assert "no prediction" in captured.out
    facts = strict_load(out / "cat.json")
    assert facts["predictions"][0]["probability"] == pytest.approx(0.001)
    assert len(facts["warnings"]) == 1 and "every logit is 0" in facts["warnings"][0]
    card = strict_load(out / "cat.relevance.json")
    assert (
        card["warnings"][1]
        == "the relevance map is zero everywhere: it ranks no patch above another"
    )
    assert not np.load(out / "cat.relevance.npy").any()


def test_nan_outputs_are_null_in_valid_json(nan_head, tmp_path, capsys) -> None:
    photo = _image(tmp_path / "dog.png", (40, 40), seed=2)
    out = tmp_path / "out"
    status = main(["analyze", str(photo), "--model", str(nan_head), "--out", str(out),
                   "--method", "relevance", "--method", "rollout"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    assert ": NaN" not in (out / "dog.json").read_text()  # the value; the warning names it
    facts = strict_load(out / "dog.json")
    assert [p["probability"] for p in facts["predictions"]] == [None] * 5
    assert "10 of the model's 10 logits are not finite" in facts["warnings"][0]
    assert "written as null" in facts["warnings"][0]
    relevance = strict_load(out / "dog.relevance.json")
    assert relevance["target"]["probability"] is None
    assert any("not finite" in w for w in relevance["warnings"])
    rollout = strict_load(out / "dog.rollout.json")  # the map itself is fine; the output is not
    assert rollout["warnings"] == facts["warnings"]
    line = next(x for x in captured.err.splitlines() if "warning: dog.png:" in x)
    assert "not finite" in line and "null" in line
    assert "the model's outputs are not numbers (NaN): no prediction" in line
    assert (
        captured.out.splitlines()[0]
        == "dog: the model's outputs are not numbers (NaN): no prediction"
    )


# --- sanity -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sanity_holds_the_relevance_class_of_the_original_model(
    checkpoint, tmp_path, capsys, monkeypatch
) -> None:
    """Every step explains the original prediction, though the randomised models predict other
    classes (which an unheld explainer would have explained instead)."""
    photo = _image(tmp_path / "photo.png", (32, 32), seed=6)
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    predicted = int(model.module(batch).argmax())
    explained: list[int] = []
    own: list[int] = []
    real = core_relevance.relevance_map

    def spy(m, b, target=None, grid=None):
        with torch.no_grad():
            own.append(int(m.module(b).argmax()))
        result = real(m, b, target, grid)
        explained.append(result.target)
        return result

    monkeypatch.setattr(core_relevance, "relevance_map", spy)
    out = tmp_path / "s"
    status = main(["sanity", str(photo), "--model", str(checkpoint), "--out", str(out),
                   "--method", "relevance", "--seed", "3"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert explained == [predicted] * 5  # the original and four randomisation steps
    assert len(set(own)) > 1, "the randomised models should predict other classes"
    card = strict_load(out / "photo.sanity.json")
    assert card["target_class"] == {
        "index": predicted,
        "name": model.spec.class_names[predicted],
        "from": "the original model's prediction",
        "held": "the same class is explained at every step",
    }
    assert card["parameters"]["target_class"] == predicted

    explained.clear()
    given = (predicted + 1) % 10
    status = main(["sanity", str(photo), "--model", str(checkpoint), "--out", str(out),
                   "--method", "relevance", "--target-class", str(given)])  # fmt: skip
    assert status == 0
    assert explained == [given] * 5
    assert strict_load(out / "photo.sanity.json")["target_class"]["from"] == "--target-class"


def test_hold_target_fixes_only_relevance() -> None:
    logits = np.array([0.1, 2.0, 2.0, -1.0])  # a tie: the first maximum, as torch.argmax
    assert hold_target("relevance", MethodOptions(), logits).target_class == 1
    assert hold_target("relevance", MethodOptions(target_class=3), logits).target_class == 3
    rollout = MethodOptions(head_fusion="max")
    assert hold_target("rollout", rollout, logits) is rollout


def test_sanity_of_a_flat_map_writes_null_not_nan(zero_head, tmp_path, capsys) -> None:
    photo = _image(tmp_path / "flat.png", (32, 32), seed=7)
    out = tmp_path / "s"
    status = main(["sanity", str(photo), "--model", str(zero_head), "--out", str(out),
                   "--method", "relevance"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    assert "nan" not in captured.out.lower() and "nan" not in captured.err.lower()
    assert "undefined at every step" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning: flat.png:" in line]
    assert len(warnings) == 2
    assert "every logit is 0" in warnings[0]
    assert "the original map is zero everywhere" in warnings[1] and "undefined" in warnings[1]
    card = strict_load(out / "flat.sanity.json")
    assert [s["spearman"] for s in card["steps"]] == [None] * 5
    assert all("zero everywhere" in s["note"] for s in card["steps"])
    assert card["warnings"] == [w.split("warning: flat.png: ", 1)[1] for w in warnings]
    rows = (out / "flat.sanity.csv").read_text().splitlines()[1:]
    assert [row.rsplit(",", 1)[1] for row in rows] == [""] * 5
    assert card["target_class"]["index"] == 0  # every class ties: the first, as argmax


def test_sanity_check_notes_a_flat_step_only_where_it_is() -> None:
    """A map that goes flat after some step: that step's correlation is NaN with a note, the
    others are real numbers."""
    from tests.core.test_checks import _image as _batch
    from tests.core.test_checks import _small_vit

    maps = iter([np.arange(64.0).reshape(8, 8), np.arange(64.0)[::-1].reshape(8, 8)])

    def explain(m, b):
        return next(maps, np.zeros((8, 8)))

    steps = list(sanity_check(_small_vit(), _batch(), explain))
    assert steps[0].correlation == 1.0 and steps[0].note is None
    assert steps[1].correlation == -1.0 and steps[1].note is None  # reversed: a real number
    assert all(np.isnan(s.correlation) for s in steps[2:])
    assert (
        steps[2].note
        == "the map after randomising block 2 is zero everywhere: it ranks no patch above another"
    )


# --- faithfulness: constant output ------------------------------------------------------------


@pytest.mark.slow
def test_faithfulness_of_a_constant_model_gives_no_area(zero_head, tmp_path, capsys) -> None:
    folder = tmp_path / "images"
    for i in range(3):
        _image(folder / f"{i}.png", (32, 32), seed=20 + i)
    out = tmp_path / "f"
    status = main(["faithfulness", str(folder), "--model", str(zero_head), "--out", str(out),
                   "--method", "rollout"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1  # tested, but nothing measured
    assert "undefined" in captured.out and "nan" not in captured.out.lower()
    assert "3 image(s) left out of the means" in captured.err and "every logit is 0" in captured.err
    card = strict_load(out / "faithfulness.json")
    assert card["positive_auc"] is None and card["negative_auc"] is None
    assert card["images"] == 3 and card["images_counted"] == 0
    assert card["protocol"] == "mean-patch"
    assert len(card["excluded"]) == 3 and len(card["warnings"]) == 2
    lines = (out / "faithfulness.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["protocol", "note"]
    for line in lines[1:]:
        cells = line.split(",")
        assert cells[3] == cells[4] == ""  # no area
        assert cells[header.index("protocol")] == "mean-patch"
        # the probabilities themselves are real: a flat 10% for every class
        assert float(cells[header.index("positive_0")]) == pytest.approx(0.1)


def test_a_flat_map_is_left_out_of_the_means() -> None:
    """Removing patches in the order of a map of zeros is removing them in index order: the
    image keeps its curves but gets no area and does not count in the means."""
    from tests.core.test_checks import _pictures, _small_vit

    model = _small_vit()
    ranks = np.arange(64, dtype=np.float32).reshape(8, 8)
    calls = iter([ranks, np.zeros((8, 8)), ranks])
    *_, result = faithfulness(model, _pictures(3), lambda m, b: next(calls), steps=4)
    first, flat, third = result.images
    assert flat.note == "the map is zero everywhere: it ranks no patch above another"
    assert np.isnan(flat.positive_auc) and np.isnan(flat.negative_auc)
    assert flat.positive.shape == (5,) and np.isfinite(flat.positive).all()
    assert first.note is None and third.note is None
    assert result.excluded == [("image 2", flat.note)]  # the second, counted from 1
    assert result.positive_auc == pytest.approx((first.positive_auc + third.positive_auc) / 2)
    np.testing.assert_allclose(result.negative_curve, (first.negative + third.negative) / 2)


# --- faithfulness: the chefer2021 protocol ----------------------------------------------------


def test_black_is_black_after_denormalising() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    black = black_input(mean, std)
    assert not torch.allclose(black, torch.zeros(3))  # 0 after normalisation is the mean colour
    torch.testing.assert_close(black * torch.tensor(std) + torch.tensor(mean), torch.zeros(3))


def _bilinear(grid: np.ndarray, scale: int) -> np.ndarray:
    """Bilinear upsampling with half-pixel centres, edges clamped, written out by hand."""
    rows, cols = grid.shape

    def weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n * scale) + 0.5) / scale - 0.5, 0, n - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n - 1)
        return low, high, src - low

    r0, r1, fr = weights(rows)
    c0, c1, fc = weights(cols)
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c1] * fc
    bottom = grid[r1][:, c0] * (1 - fc) + grid[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def test_pixels_are_removed_by_the_upsampled_map_and_set_to_black() -> None:
    relevance = np.array([[5.0, 0.0, 1.0], [2.0, 4.0, 3.0]])  # a 2x3 grid of 4 px patches
    np.testing.assert_allclose(upsampled_map(relevance, 8, 12), _bilinear(relevance, 4))
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    pixels = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    batch = (pixels - mean[:, None, None]) / std[:, None, None]
    black = black_input(mean.tolist(), std.tolist())
    assert pixel_removal_counts(96, 10).tolist() == [0, 9, 19, 28, 38, 48, 57, 67, 76, 86]
    up = _bilinear(relevance, 4).ravel()
    for positive in (True, False):
        copies = pixel_removed_copies(batch, relevance, positive, black, steps=10)
        assert copies.shape == (10, 3, 8, 12)
        seen = copies * std[:, None, None] + mean[:, None, None]  # back to pixel values
        removed = (seen.abs() < 1e-6).all(dim=1)  # black in every channel
        torch.testing.assert_close(seen[0], pixels[0])
        for k, count in enumerate(pixel_removal_counts(96, 10)):
            gone = removed[k].flatten().numpy()
            assert gone.sum() == count
            kept_scores, gone_scores = up[~gone], up[gone]
            if count:  # every removed pixel ranks at least as high (or low) as every kept one
                if positive:
                    assert gone_scores.min() >= kept_scores.max()
                else:
                    assert gone_scores.max() <= kept_scores.min()
            torch.testing.assert_close(seen[k][:, ~removed[k]], pixels[0][:, ~removed[k]])


def test_folders_name_their_class_by_name_or_index(tmp_path) -> None:
    names = ("tabby cat", "dog", "Tench")
    assert class_of_folder("Tabby Cat", names) == 0
    assert class_of_folder("tench", names) == 2
    assert class_of_folder("1", names) == 1
    assert class_of_folder("3", names) is None and class_of_folder("fish", names) is None
    root = tmp_path / "data"
    a = _image(root / "dog" / "a.png", (8, 8), seed=1)
    b = _image(root / "2" / "deep" / "b.png", (8, 8), seed=2)
    assert labelled_images([root], names) == [(b, 2), (a, 1)]  # "2" sorts before "dog"
    (root / "loose.png").write_bytes(a.read_bytes())
    with pytest.raises(ValueError, match="1 image.* outside class subfolders"):
        labelled_images([root], names)
    (root / "loose.png").unlink()
    (root / "fish").mkdir()
    with pytest.raises(ValueError, match="'fish' .* neither one of the model's 3 class names"):
        labelled_images([root], names)
    with pytest.raises(ValueError, match="is not a folder"):
        labelled_images([a], names)


@pytest.mark.slow
def test_chefer2021_at_zero_removal_is_the_plain_accuracy(checkpoint) -> None:
    model = load_model(str(checkpoint), device="cpu")
    rng = np.random.default_rng(5)
    from PIL import Image

    pictures = [
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(6)
    ]
    batches = [preprocess(p, model.spec).unsqueeze(0) for p in pictures]
    with torch.no_grad():
        predicted = [int(model.module(b).argmax()) for b in batches]
    labels = [predicted[0], predicted[1], (predicted[2] + 1) % 10, predicted[3], 7, predicted[5]]
    plain = np.mean([p == label for p, label in zip(predicted, labels, strict=True)])
    explain = method_explainer("rollout", MethodOptions())
    *_, result = faithfulness(model, pictures, explain, protocol="chefer2021", labels=labels)
    assert result.protocol == "chefer2021"
    np.testing.assert_allclose(result.fractions, chefer_fractions(10))
    assert result.fractions.tolist() == [k / 10 for k in range(10)]
    assert result.positive_curve[0] == pytest.approx(plain) == result.negative_curve[0]
    for item, label, guess in zip(result.images, labels, predicted, strict=True):
        assert item.target == label and item.predicted == guess and item.note is None
        assert set(np.unique(np.r_[item.positive, item.negative])) <= {0.0, 1.0}
    # the mean of the areas is the area under the accuracy curve (the trapezoid rule is linear)
    fractions = result.fractions
    area = float(
        np.sum(np.diff(fractions) * (result.positive_curve[1:] + result.positive_curve[:-1]) / 2)
    )
    assert result.positive_auc == pytest.approx(area)
    with pytest.raises(ValueError, match="one label per image"):
        list(faithfulness(model, pictures, explain, protocol="chefer2021"))


def test_cli_chefer2021_needs_a_labelled_folder(checkpoint, tmp_path, capsys) -> None:
    loose = tmp_path / "loose"
    _image(loose / "a.png", (32, 32), seed=1)
    status = main(["faithfulness", str(loose), "--model", str(checkpoint), "--out",
                   str(tmp_path / "o"), "--protocol", "chefer2021"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "needs folders of class subfolders" in err and "outside class subfolders" in err
    status = main(["faithfulness", str(loose / "a.png"), "--model", str(checkpoint), "--out",
                   str(tmp_path / "o"), "--protocol", "chefer2021"])  # fmt: skip
    assert status == 2 and "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_chefer2021_writes_accuracy_curves_with_the_protocol(
    checkpoint, tmp_path, capsys
) -> None:
    data = tmp_path / "data"
    for i in range(2):
        _image(data / "class 3" / f"{i}.png", (32, 32), seed=30 + i)
        _image(data / "5" / f"{i}.png", (32, 32), seed=40 + i)
    out = tmp_path / "f"
    status = main(["faithfulness", str(data), "--model", str(checkpoint), "--out", str(out),
                   "--method", "relevance", "--protocol", "chefer2021"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "protocol chefer2021" in captured.out
    model = load_model(str(checkpoint), device="cpu")
    paths = sorted((data / "5").glob("*.png")) + sorted((data / "class 3").glob("*.png"))
    labels = [5, 5, 3, 3]
    explain = method_explainer("relevance", MethodOptions())
    *_, expected = faithfulness(model, paths, explain, protocol="chefer2021", labels=labels)
    card = strict_load(out / "faithfulness.json")
    assert card["protocol"] == "chefer2021"
    assert card["measures"].startswith("top-1 accuracy against each image's label")
    assert card["fractions"] == [k / 10 for k in range(10)]
    assert card["positive_auc"] == pytest.approx(expected.positive_auc)
    assert card["accuracy_untouched"] == pytest.approx(expected.positive_curve[0])
    assert "percent" in card["comparing_with_the_paper"]
    lines = (out / "faithfulness.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:6] == [
        "image",
        "label",
        "label_name",
        "predicted",
        "positive_auc",
        "negative_auc",
    ]
    assert header[6:16] == [f"positive_{p}" for p in range(0, 100, 10)]
    assert header[-2:] == ["protocol", "note"]
    for line, item in zip(lines[1:], expected.images, strict=True):
        cells = line.split(",")
        assert cells[0] == item.source and int(cells[1]) == item.target
        assert cells[2] == model.spec.class_names[item.target]
        assert [int(c) for c in cells[6:16]] == item.positive.astype(int).tolist()
        assert cells[-2] == "chefer2021"
