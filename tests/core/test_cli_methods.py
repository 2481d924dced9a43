"""``analyze --method`` and ``stats``: the maps written equal the core's, with method cards."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from tests.core.test_cli import _image
from vitexplorer.cli import main
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.head_stats import average_statistics, head_statistics
from vitexplorer.core.explain.relevance import relevance_map
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.render.plots import MEAN_COLOUR, POINT_COLOUR, draw_distance_plot

RAN = ("attention", "rollout", "relevance")  # the methods the next test asks for


@pytest.mark.slow
def test_analyze_writes_each_methods_map_png_and_card(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "in" / "photo.png", (50, 40), seed=3)
    out = tmp_path / "out"
    status = main(
        [
            "analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
            "--method", "attention", "--method", "rollout", "--method", "relevance",
            "--head-fusion", "max", "--discard-ratio", "0.5", "--start-layer", "2",
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    model = load_model(str(checkpoint), device="cpu")
    grid = model.spec.grid
    # --method attention claims <stem>.attention.npy for its map: the whole capture moves
    attention = np.load(out / "photo.attention_all.npy")
    assert attention.shape == (2, 2, 17, 17)
    facts = json.loads((out / "photo.json").read_text())
    assert facts["attention_file"] == "photo.attention_all.npy"

    rollout = np.load(out / "photo.rollout.npy")
    assert rollout.dtype == np.float32 and rollout.shape == grid
    expected = rollout_map(attention, 0, grid, 1, "max", 0.5, 1)  # --start-layer 2: index 1
    np.testing.assert_allclose(rollout, expected, rtol=1e-6)

    cls_map = np.load(out / "photo.attention.npy")  # layer -1, mean of heads, CLS row
    assert cls_map.dtype == np.float32 and cls_map.shape == grid
    np.testing.assert_allclose(
        cls_map, attention[-1, :, 0, 1:].mean(axis=0).reshape(grid), rtol=1e-5
    )

    image = load_image(photo)
    batch = preprocess(image, model.spec).unsqueeze(0)
    relevance = relevance_map(model, batch)
    np.testing.assert_allclose(np.load(out / "photo.relevance.npy"), relevance.map, rtol=1e-4)

    for method in RAN:
        card = json.loads((out / f"photo.{method}.json").read_text())
        assert card["method"] == method
        assert (
            card["model"]["weights"]["sha256"]
            == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        )
        assert card["image"] == str(photo)
        # each figure shows the crop the model saw (40 px) at the same size: 12 x 40 = 480 px
        area = card["picture"]["map_area"]
        assert (area["width"], area["height"], card["picture"]["scale"]) == (480, 480, 12)
        assert area == facts["picture"]["map_area"]  # as the CLS figure's
        with Image.open(out / f"photo.{method}.png") as png:
            assert list(png.size) == card["picture"]["size"]
    rollout_card = json.loads((out / "photo.rollout.json").read_text())
    # from 1: the first token (CLS) and the second layer
    assert rollout_card["parameters"] == {
        "token": 1, "head_fusion": "max", "discard_ratio": 0.5, "start_layer": 2,
    }  # fmt: skip
    relevance_card = json.loads((out / "photo.relevance.json").read_text())
    assert relevance_card["target"]["index"] == relevance.target
    assert relevance_card["target"]["predicted"] is True


def test_without_the_attention_method_the_capture_keeps_its_name(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=4)
    out = tmp_path / "out"
    assert main(["analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
                 "--method", "rollout"]) == 0  # fmt: skip
    assert np.load(out / "photo.attention.npy").shape == (2, 2, 17, 17)
    assert not (out / "photo.attention_all.npy").exists()


def test_target_class_by_name_or_index_and_bad_options_exit_2(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=5)
    model = load_model(str(checkpoint), device="cpu")
    name = model.spec.class_names[7]
    out = tmp_path / "named"
    assert main(["analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
                 "--method", "relevance", "--target-class", name.upper()]) == 0  # fmt: skip
    card = json.loads((out / "photo.relevance.json").read_text())
    assert card["target"]["index"] == 7 and card["parameters"] == {"target_class": 7}
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    np.testing.assert_allclose(
        np.load(out / "photo.relevance.npy"), relevance_map(model, batch, 7).map, rtol=1e-4
    )
    capsys.readouterr()

    bad = {
        ("--discard-ratio", "1.5"): "discard ratio",
        ("--start-layer", "3"): "--start-layer 3: layers are numbered from 1; this model has "
        "layers 1 to 2",
        ("--layer", "5"): "--layer 5: layers are numbered from 1; this model has layers 1 to 2",
        ("--target-class", "10"): "outside 0..9",
        ("--target-class", "no such class"): "not one of the model's 10 class names",
    }
    for (flag, value), words in bad.items():
        out = tmp_path / f"bad{flag}{value}".replace(" ", "_")
        method = "attention" if flag == "--layer" else "rollout"
        if flag == "--target-class":
            method = "relevance"
        status = main(["analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
                       "--method", method, flag, value])  # fmt: skip
        err = capsys.readouterr().err
        assert status == 2, (flag, value, err)
        assert words in err and len(err.strip().splitlines()) == 1
        assert not list(out.glob("*.npy"))  # nothing half done


PLOT = "distance_vs_depth.png"


@pytest.mark.slow
def test_stats_writes_the_averaged_table_and_the_plot(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    paths = [_image(folder / sub / f"{i}.png", (40, 36), seed=i) for i, sub in
             enumerate(["a", "a", "b"])]  # fmt: skip
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "stats"
    status = main(["stats", str(folder), "--model", str(checkpoint), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err

    model = load_model(str(checkpoint), device="cpu")
    spec = model.spec
    per_image = [
        head_statistics(analyze_image(model, load_image(p)).attention, spec.grid, 1, 8)
        for p in sorted(paths)
    ]
    expected = average_statistics(per_image)
    lines = (out / "head_stats.csv").read_text().splitlines()
    assert lines[0] == "layer,head,mean_distance_px,entropy_nats,prefix_share,images"
    rows = [line.split(",") for line in lines[1:]]
    # layers and heads numbered from 1, as the plot and the app number them
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for layer, head, distance, entropy, share, images in rows:
        layer, head = int(layer) - 1, int(head) - 1  # the arrays' indices
        assert float(distance) == pytest.approx(expected.distance[layer, head], abs=1e-3)
        assert float(entropy) == pytest.approx(expected.entropy[layer, head], abs=1e-4)
        assert float(share) == pytest.approx(expected.prefix_share[layer, head], abs=1e-4)
        assert images == "3"
    # the plot, drawn without Qt: each head a dot, each layer's mean of heads on the line
    title = f"{spec.display_name}: mean attention distance, 3 image(s)"
    drawn = draw_distance_plot(expected.distance, title)  # where things lie in it
    with Image.open(out / PLOT) as png:
        assert png.format == "PNG" and png.size == (900, 560)
        pixels = np.asarray(png.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # axes, labels and points
    assert np.all(pixels == POINT_COLOUR, axis=-1).sum() >= 4 * 20  # 4 heads' dots
    means = expected.distance.mean(axis=1)
    x, y = drawn.x_of(1.5), (drawn.y_of(means[0]) + drawn.y_of(means[1])) / 2
    near = pixels[round(y) - 2 : round(y) + 3, round(x)]  # halfway from layer 1 to layer 2
    assert np.all(near == MEAN_COLOUR, axis=-1).any()
    # the title names the model and the images, in dark ink above the data
    assert pixels[: drawn.plot_box[1] - 24].min() < 100
    card = json.loads((out / "head_stats.json").read_text())
    assert card["images"] == [str(p) for p in sorted(paths)]
    assert card["outputs"] == {"table": "head_stats.csv", "plot": PLOT}
    written = [out / name for name in ("head_stats.csv", "head_stats.json", PLOT)]
    assert captured.out.strip() == f"3 image(s) -> {', '.join(map(str, written))}"
    assert sorted(out.iterdir()) == sorted(written)  # and no temporary file left


def test_stats_skips_bad_images_and_refuses_empty_folders(checkpoint, tmp_path, capsys):
    good = _image(tmp_path / "good.png", (32, 32), seed=1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["stats", str(good), str(bad), "--model", str(checkpoint), "--out", str(out)]) == 1
    assert "bad.png" in capsys.readouterr().err
    assert (out / "head_stats.csv").read_text().splitlines()[1].endswith(",1")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stats", str(empty), "--model", str(checkpoint), "--out", str(out)]) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert main(["stats", str(bad), "--model", str(checkpoint), "--out", str(tmp_path / "x")]) == 2
    assert "none of the images" in capsys.readouterr().err


@pytest.mark.slow
def test_sanity_writes_each_steps_correlation_and_map(checkpoint, tmp_path, capsys):
    from vitexplorer.core.evaluate.sanity import sanity_check
    from vitexplorer.core.explain.maps import method_explainer
    from vitexplorer.core.explain.method import MethodOptions

    photo = _image(tmp_path / "photo.png", (32, 32), seed=6)
    out = tmp_path / "sanity"
    status = main(["sanity", str(photo), "--model", str(checkpoint), "--out", str(out),
                   "--method", "relevance", "--seed", "3"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    predicted = int(model.module(batch).argmax())  # held at every step, not re-predicted
    explain = method_explainer("relevance", MethodOptions(target_class=predicted))
    expected = list(sanity_check(model, batch, explain, seed=3))

    lines = (out / "photo.sanity.csv").read_text().splitlines()
    assert lines[0] == "step,randomised,spearman"
    assert [line.split(",")[0] for line in lines[1:]] == [s.name for s in expected]
    assert lines[-1].startswith('embedding,"head + block 2 + block 1 + embedding",')
    for line, step in zip(lines[1:], expected, strict=True):
        assert float(line.rsplit(",", 1)[1]) == pytest.approx(step.correlation, abs=1e-6)
    maps = np.load(out / "photo.sanity.npy")
    np.testing.assert_allclose(maps, np.stack([s.map for s in expected]), rtol=1e-5)
    card = json.loads((out / "photo.sanity.json").read_text())
    assert card["method"] == "relevance" and card["seed"] == 3
    assert card["target_class"]["index"] == predicted == card["parameters"]["target_class"]
    assert card["target_class"]["from"] == "the original model's prediction"
    assert card["warnings"] == []
    assert [s["step"] for s in card["steps"]] == [s.name for s in expected]


@pytest.mark.slow
def test_faithfulness_over_a_folder_writes_curves_and_means(checkpoint, tmp_path, capsys):
    from vitexplorer.core.evaluate.faithfulness import faithfulness
    from vitexplorer.core.explain.maps import method_explainer
    from vitexplorer.core.explain.method import MethodOptions

    folder = tmp_path / "images"
    paths = [_image(folder / f"{i}.png", (32, 32), seed=10 + i) for i in range(3)]
    (folder / "broken.png").write_bytes(b"no image here")
    out = tmp_path / "faith"
    status = main(["faithfulness", str(folder), "--model", str(checkpoint), "--out", str(out),
                   "--method", "rollout", "--head-fusion", "min", "--steps", "5"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1  # one image skipped, and said so
    assert "broken.png" in captured.err and "skipped" in captured.err

    model = load_model(str(checkpoint), device="cpu")
    explain = method_explainer("rollout", MethodOptions(head_fusion="min"))
    *_, expected = faithfulness(model, sorted(paths), explain, steps=5)
    lines = (out / "faithfulness.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["image", "target", "target_name", "positive_auc", "negative_auc"]
    assert header[5:11] == [f"positive_{p}" for p in (0, 20, 40, 60, 80, 100)]
    assert len(lines) == 1 + 3
    for line, item in zip(lines[1:], expected.images, strict=True):
        cells = line.split(",")
        assert cells[0] == item.source and int(cells[1]) == item.target
        assert float(cells[3]) == pytest.approx(item.positive_auc, abs=1e-6)
        assert float(cells[4]) == pytest.approx(item.negative_auc, abs=1e-6)
        np.testing.assert_allclose([float(c) for c in cells[5:11]], item.positive, atol=1e-6)
    card = json.loads((out / "faithfulness.json").read_text())
    assert card["positive_auc"] == pytest.approx(expected.positive_auc)
    assert card["fractions"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert card["parameters"]["head_fusion"] == "min"
    assert f"{expected.positive_auc:.4f}" in captured.out


def test_faithfulness_refuses_a_target_class(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=2)
    out = tmp_path / "o"
    status = main(["faithfulness", str(photo), "--model", str(checkpoint), "--out", str(out),
                   "--method", "relevance", "--target-class", "3"])  # fmt: skip
    assert status == 2
    assert "predicts" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
