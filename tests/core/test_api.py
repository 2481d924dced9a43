"""The Python API (vitexplorer.load_model, Model.analyze, vitexplorer.explain): the same numbers,
cards and one-line refusals as ``vitexplorer analyze``, and ``import vitexplorer`` without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vitexplorer
from vitexplorer.cli import main
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.provenance import json_ready
from vitexplorer.core.io.images import load_image

LAYERS, HEADS, GRID, TOKENS = 2, 2, (4, 4), 17  # tests/conftest.py TINY


def photo(path: Path, size: tuple[int, int] = (40, 32), seed: int = 3) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def tiny(checkpoint: Path) -> vitexplorer.Model:
    return vitexplorer.load_model(checkpoint, device="cpu")


def test_import_is_torch_free_and_the_api_loads_on_first_use() -> None:
    code = (
        "import sys, vitexplorer\n"
        "heavy = ('torch', 'numpy', 'PIL', 'PySide6', 'vitexplorer.api')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
        "vitexplorer.load_model\n"
        "print('vitexplorer.api' in sys.modules, 'torch' in sys.modules)\n"
        "import torch\n"
        "from vitexplorer.core.models.families.family import UnsupportedModel\n"
        "from vitexplorer.core.models.families.registry import adapter_for\n"
        "try:\n    adapter_for(torch.nn.Linear(1, 1))\n"
        "except UnsupportedModel as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    before, after, families = done.stdout.splitlines()
    assert before == "[]"
    assert after == "True True"
    # the custom family is asked only once vitexplorer.wrap's file is imported
    assert "families: small_vit" in families and "custom" not in families


def test_analysis_is_the_cores(tiny: vitexplorer.Model, checkpoint: Path, tmp_path: Path) -> None:
    path = photo(tmp_path / "a.png")
    analysis = tiny.analyze(path)
    core = analyze_image(tiny.loaded, load_image(path))
    np.testing.assert_allclose(analysis.logits, core.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(analysis.attention, core.attention, atol=1e-6)
    assert analysis.attention.shape == (LAYERS, HEADS, TOKENS, TOKENS)
    np.testing.assert_allclose(analysis.attention.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(analysis.probabilities.sum(), 1.0, atol=1e-5)
    assert analysis.grid == GRID and analysis.num_prefix_tokens == 1
    assert analysis.prefix_tokens == ("CLS",)
    top = analysis.predictions[0]
    assert top.index == int(np.argmax(analysis.logits)) and top.name == f"class {top.index}"
    assert [p.probability for p in analysis.predictions] == sorted(
        (p.probability for p in analysis.predictions), reverse=True
    )
    assert analysis.source == str(path)


def test_images_in_every_form_give_the_same_logits(tiny: vitexplorer.Model, tmp_path) -> None:
    path = photo(tmp_path / "a.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    forms = [
        path,
        str(path),
        path.read_bytes(),
        Image.open(path),
        pixels,
        pixels.astype(np.int64),
        pixels.astype(np.float32) / 255.0,
        np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)]),  # opaque RGBA
    ]
    first = tiny.analyze(forms[0]).logits
    for form in forms[1:]:
        np.testing.assert_allclose(tiny.analyze(form).logits, first, rtol=1e-6, atol=1e-6)
    grey = tiny.analyze(pixels[:, :, 0])  # (H, W): grey, as a grey file is read
    grey_file = tiny.analyze(np.asarray(Image.fromarray(pixels[:, :, 0]).convert("RGB")))
    np.testing.assert_allclose(grey.logits, grey_file.logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.zeros((3, 32, 32), np.uint8), "not (3, 32, 32); put the colour channels last"),
        (np.zeros((0, 32, 3), np.uint8), "the image has no pixels"),
        (np.full((32, 32, 3), np.nan, np.float32), "floats holds values from 0 to 1"),
        (np.full((32, 32, 3), 2.0), "floats holds values from 0 to 1"),
        (np.full((32, 32), 300, np.int32), "not 300 to 300; scale it to uint8 first"),
        (np.zeros((32, 32, 3), bool), "not bool"),
        (np.zeros((32, 32, 3), complex), "not complex128"),
        ([[0, 1], [2, 3]], "an image is a path, encoded bytes, a PIL image or a numpy array"),
        (b"not an image", "clipboard image: not an image format that vitexplorer reads"),
        (Image.new("RGB", (0, 0)), "the image has no pixels"),
    ],
)
def test_what_is_no_image_is_one_line(tiny: vitexplorer.Model, image, words) -> None:
    with pytest.raises(vitexplorer.VitexplorerError) as caught:
        tiny.analyze(image)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_is_refused_as_the_command_line_does(
    tiny: vitexplorer.Model, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "nowhere.png"
    with pytest.raises(vitexplorer.VitexplorerError) as caught:
        tiny.analyze(missing)
    assert main(["analyze", str(missing), "--model", str(checkpoint), "--out", str(tmp_path)]) != 0
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [f"vitexplorer: {caught.value}"]


@pytest.mark.parametrize(
    ("name", "weights", "device"),
    [
        ("vit_b_17", "default", "cpu"),
        ("timm:", "default", "cpu"),
        ("small_vit", "nowhere.safetensors", "cpu"),
        ("CHECKPOINT", "other.pth", "cpu"),
        ("GARBAGE", "default", "cpu"),
        ("missing.safetensors", "default", "cpu"),
    ],
)
def test_a_model_is_refused_in_the_command_lines_words(
    name: str, weights: str, device: str, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    name = {"CHECKPOINT": str(checkpoint), "GARBAGE": str(garbage)}.get(name, name)
    with pytest.raises(vitexplorer.VitexplorerError) as caught:
        vitexplorer.load_model(name, weights, device)
    image = photo(tmp_path / "a.png")
    args = ["analyze", str(image), "--model", name, "--weights", weights, "--device", device]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [f"vitexplorer: {caught.value}"]


def test_maps_and_cards_are_the_command_lines(
    tiny: vitexplorer.Model, checkpoint: Path, tmp_path: Path
) -> None:
    """What ``vitexplorer analyze --method ...`` writes: the same maps, the same cards."""
    image = photo(tmp_path / "a.png")
    out = tmp_path / "out"
    methods = ["attention", "rollout", "relevance"]
    args = ["analyze", str(image), "--model", str(checkpoint), "--out", str(out), "--device"]
    args += ["cpu", "--layer", "1", "--head", "2", "--discard-ratio", "0.25"]
    args += ["--start-layer", "2", "--target-class", "class 3"]
    assert main([*args, *[arg for m in methods for arg in ("--method", m)]]) == 0
    analysis = tiny.analyze(image)
    given = {
        "attention": dict(layer=1, head=2),
        "rollout": dict(discard_ratio=0.25, start_layer=2),
        "relevance": dict(target_class="class 3"),
    }
    for method in methods:
        explained = vitexplorer.explain(analysis, method, **given[method])
        written = np.load(out / f"a.{method}.npy")
        assert explained.map.shape == GRID and explained.map.dtype == np.float32
        np.testing.assert_allclose(explained.map, written, rtol=1e-6, atol=1e-7)
        card = json.loads((out / f"a.{method}.json").read_text())
        for key in ("map", "picture", "files"):  # what the command line's files add
            card.pop(key, None)
        assert json_ready(explained.card)[0] == card
        assert explained.title == card["title"]
    assert vitexplorer.explain(analysis, "relevance", target_class=3).card["target"]["index"] == 3


def test_options_count_as_people_count(tiny: vitexplorer.Model, tmp_path: Path) -> None:
    analysis = tiny.analyze(photo(tmp_path / "a.png"))
    first = vitexplorer.explain(analysis, "attention", layer=1, head=2, token=1)
    np.testing.assert_array_equal(first.map, analysis.attention[0, 1, 0, 1:].reshape(GRID))
    assert first.card["parameters"] == {"layer": 1, "head": 2, "token": 1}
    patch = vitexplorer.explain(analysis, "attention", layer=2, token=TOKENS)  # the last patch
    np.testing.assert_allclose(
        patch.map, analysis.attention[1, :, TOKENS - 1, 1:].mean(0).reshape(GRID), rtol=1e-6
    )
    last = vitexplorer.explain(analysis, "attention", layer=-1)
    np.testing.assert_array_equal(last.map, vitexplorer.explain(analysis, "attention").map)
    assert last.card["parameters"]["layer"] == LAYERS  # -1 is written as the layer it is


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        (
            "no-such-method",
            {},
            "unknown method 'no-such-method'; use one of attention, rollout, relevance",
        ),
        ("attention", {"layer": 0}, "layer 0: layers are numbered from 1; this model has"),
        ("attention", {"layer": 3}, "layers 1 to 2 (-1 is the last)"),
        ("attention", {"head": 3}, "head 3: heads are numbered from 1"),
        ("attention", {"token": 18}, "tokens 1 to 17"),
        ("attention", {"layer": 1.5}, "layer must be a whole number, not 1.5"),
        ("attention", {"layer": True}, "layer must be a whole number, not True"),
        ("attention", {"target_class": 1}, "attention reads layer, head, token; target_class"),
        ("rollout", {"head_fusion": "median"}, "unknown head fusion 'median'"),
        ("rollout", {"discard_ratio": 1.0}, "discard ratio 1.0 must be at least 0 and below 1"),
        ("rollout", {"discard_ratio": float("nan")}, "must be at least 0 and below 1"),
        ("rollout", {"start_layer": 0}, "start_layer 0: layers are numbered from 1"),
        ("relevance", {"token": 2}, "relevance reads target_class; token is not one of"),
        ("relevance", {"target_class": 10}, "target class 10 is outside 0..9"),
        ("relevance", {"target_class": "zebra"}, "'zebra' is not one of the model's 10 class"),
        ("relevance", {"target_class": 2.0}, "must be a class index or name, not 2.0"),
    ],
)
def test_a_bad_option_is_one_line(tiny: vitexplorer.Model, tmp_path, method, options, words):
    analysis = tiny.analyze(photo(tmp_path / "a.png"))
    with pytest.raises(vitexplorer.VitexplorerError) as caught:
        vitexplorer.explain(analysis, method, **options)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_keep_aspect_analyses_the_whole_image(tiny: vitexplorer.Model, tmp_path: Path) -> None:
    wide = photo(tmp_path / "wide.png", size=(64, 32))
    analysis = tiny.analyze(wide, aspect="keep")
    assert analysis.grid == (3, 6) and analysis.attention.shape[-1] == 1 + 18
    relevance = vitexplorer.explain(analysis, "relevance")
    assert relevance.map.shape == (3, 6)
    assert relevance.card["input"] == {"aspect": "keep", "grid": [3, 6]}
    assert tiny.analyze(wide).grid == GRID
    with pytest.raises(
        vitexplorer.VitexplorerError, match="aspect must be 'crop' or 'keep', not 'yes'"
    ):
        tiny.analyze(wide, aspect="yes")


def test_loads_by_every_built_in_name(checkpoint: Path) -> None:
    small = vitexplorer.load_model("small_vit", "none", "cpu")
    assert small.spec.family == "small_vit" or small.spec.name == "small_vit"
    from_file = vitexplorer.load_model("small_vit", str(checkpoint), "cpu")
    assert from_file.num_layers == LAYERS and from_file.grid == GRID
    demo = vitexplorer.load_model("demo", device="cpu")
    assert demo.name == "Demo ViT (CIFAR-10)" and len(demo.class_names) == 10
    assert "6 layers" in repr(demo)


def test_an_unknown_device_is_one_line() -> None:
    with pytest.raises(vitexplorer.VitexplorerError, match="unknown device 'tpu'; use auto, cpu"):
        vitexplorer.load_model("small_vit", "none", "tpu")
    with pytest.raises(vitexplorer.VitexplorerError, match="named by a text or a path, not int"):
        vitexplorer.load_model(3)  # type: ignore[arg-type]


def test_sample_images_ship_and_others_are_refused() -> None:
    assert vitexplorer.sample_image("robin.jpg").is_file()
    with pytest.raises(vitexplorer.VitexplorerError, match="no sample image 'cat.png'"):
        vitexplorer.sample_image("cat.png")


def test_library_families_load_by_their_names(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label={0: "cat", 1: "dog", 2: "eel"},
        label2id={"cat": 0, "dog": 1, "eel": 2},
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    with pytest.warns(UserWarning, match="no preprocessor_config.json"):  # the CLI's warning
        hf = vitexplorer.load_model(f"hf:{tmp_path / 'vit'}", device="cpu")
    analysis = hf.analyze(photo(tmp_path / "a.png"))
    assert hf.class_names == ("cat", "dog", "eel") and hf.spec.family == "hf"
    assert analysis.attention.shape == (2, 2, 17, 17)
    assert vitexplorer.explain(analysis, "relevance", target_class="eel").card["target"] == {
        "index": 2,
        "name": "eel",
        "probability": pytest.approx(float(analysis.probabilities[2])),
        "predicted": analysis.predictions[0].index == 2,
    }
    pytest.importorskip("timm")
    with pytest.warns(UserWarning, match=r"random weights \(--weights none\)"):
        timm = vitexplorer.load_model("timm:vit_tiny_patch16_224", "none", "cpu")
    assert timm.spec.family == "timm" and (timm.num_layers, timm.num_heads) == (12, 3)
    assert timm.analyze(photo(tmp_path / "b.png")).attention.shape == (12, 3, 197, 197)


def test_the_modules_own_example_runs() -> None:
    import doctest

    import vitexplorer.api

    result = doctest.testmod(vitexplorer.api)
    assert result.attempted >= 6 and result.failed == 0
