"""An image analysed at its own aspect ratio: a rectangular patch grid, position embeddings
resized to it as timm resizes them, for every family; the square path unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.families.base import resample_positions
from vitexplorer.core.models.families.registry import adapter_for
from vitexplorer.core.models.families.small_vit import spec_for as small_vit_spec
from vitexplorer.core.models.feed import WHOLE
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.preprocessing import aspect_grid, display_crop, preprocess
from vitexplorer.core.models.vit import SmallViT

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def test_the_grid_keeps_the_proportions_and_the_patch_count() -> None:
    spec = tiny_spec()  # 4x4 = 16 patches
    assert aspect_grid(300, 200, spec) == (3, 5)
    assert aspect_grid(200, 300, spec) == (5, 3)
    assert aspect_grid(100, 100, spec) == (4, 4)
    assert aspect_grid(10_000, 10, spec) == (2, 8)  # cut to 4:1, as the preprocessing cuts it
    image = Image.new("RGB", (300, 200), (10, 200, 30))
    batch = preprocess(image, spec, feed=WHOLE)
    assert batch.shape == (3, 3 * 8, 5 * 8)
    display = display_crop(image, spec, feed=WHOLE)
    assert display.shape[0] * 5 == display.shape[1] * 3  # the grid's proportions exactly
    assert preprocess(image, spec).shape == (3, 32, 32)  # the square crop as before


def test_the_grid_of_a_preprocessed_input() -> None:
    from vitexplorer.core.models.preprocessing import input_grid

    spec = tiny_spec()  # 32 px in 8 px patches
    assert input_grid(spec, 32, 32) == (4, 4)
    assert input_grid(spec, 24, 40) == (3, 5)
    image = Image.new("RGB", (40, 100))
    assert input_grid(spec, *preprocess(image, spec, WHOLE).shape[-2:]) == aspect_grid(
        40, 100, spec
    )
    with pytest.raises(ValueError, match="a 25x40 input does not split into the model's 8-pixel"):
        input_grid(spec, 25, 40)


def test_resampled_positions_equal_timms() -> None:
    positions = torch.randn(1, 1 + 7 * 7, 12)
    ours = resample_positions(positions, (5, 9), 1)
    theirs = timm.layers.resample_abs_pos_embed(positions, new_size=[5, 9], num_prefix_tokens=1)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert resample_positions(positions, (7, 7), 1) is positions


def _tiny_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    from torchvision.models.vision_transformer import VisionTransformer

    tv = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    torch.nn.init.normal_(tv.heads.head.weight, std=0.5)
    config = tiny_hf_config(num_labels=10)
    from vitexplorer.core.models.families.hf_model import HFClassifier

    hf = HFClassifier(
        transformers.ViTForImageClassification(config), "ViTForImageClassification", 32
    )
    kwargs = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
    return {
        "small_vit": SmallViT(TINY),
        "torchvision": tv,
        "timm": timm.create_model("vit_tiny_patch16_224", **kwargs),
        "timm registers": timm.create_model(
            "vit_tiny_patch16_224", reg_tokens=2, no_embed_class=True, **kwargs
        ),
        "hf": hf,
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["small_vit", "torchvision", "timm", "timm registers", "hf"])
def test_the_parts_equal_the_forward_and_accept_rectangles(kind: str) -> None:
    module = _tiny_models()[kind].eval()
    adapter = adapter_for(module)
    square = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(adapter.forward_parts(square), module(square), atol=1e-5)
        rectangle = torch.randn(2, 3, 24, 48)  # a 3x6 grid
        logits, attention = forward_with_attention(module, rectangle, any_size=True)
    prefix = adapter.num_prefix_tokens
    assert attention.shape[-1] == prefix + 3 * 6
    assert torch.allclose(attention.sum(-1), torch.ones(()), atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(logits, adapter.forward_parts(rectangle), atol=1e-5)
        if kind.startswith("timm"):  # timm's own dynamic-size model, same weights
            dynamic = timm.create_model(
                "vit_tiny_patch16_224",
                dynamic_img_size=True,
                img_size=32,
                patch_size=8,
                depth=2,
                num_heads=2,
                embed_dim=32,
                num_classes=10,
                **({"reg_tokens": 2, "no_embed_class": True} if "registers" in kind else {}),
            ).eval()
            dynamic.load_state_dict(module.state_dict())
            assert torch.allclose(logits, dynamic(rectangle), atol=1e-5)
        if kind == "hf":  # transformers' own interpolate_pos_encoding
            assert torch.allclose(logits, module(rectangle), atol=1e-5)


def test_analysis_at_the_image_aspect_ratio() -> None:
    torch.manual_seed(1)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (60, 120, 3), np.uint8))
    wide = analyze_image(model, image, feed=WHOLE)
    assert wide.spec.grid == aspect_grid(120, 60, model.spec) == (3, 6)
    assert wide.attention.shape == (2, 2, 1 + 18, 1 + 18)
    assert wide.statistics.distance.shape == (2, 2)
    assert model.spec.grid == (4, 4)  # the model's own spec is untouched
    square = analyze_image(model, image)
    assert square.spec.grid == (4, 4) and square.attention.shape[-1] == 17


@pytest.mark.slow
def test_analyze_keep_aspect_on_the_command_line(tmp_path, capsys) -> None:
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.models.loading import save_checkpoint

    torch.manual_seed(2)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, model)
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 120, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["analyze", str(image), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--aspect", "keep", "--method", "rollout", "--method", "relevance"]) == 0
    facts = json.loads((out / "wide.json").read_text())
    grid = aspect_grid(120, 40, model.spec)
    assert facts["grid"] == list(grid) == [2, 7]
    assert np.load(out / "wide.attention.npy").shape[-1] == 1 + 14
    for method in ("rollout", "relevance"):
        assert np.load(out / f"wide.{method}.npy").shape == grid
        card = json.loads((out / f"wide.{method}.json").read_text())
        assert card["input"] == {"aspect": "keep", "grid": [2, 7]}
    assert main([*args, "--aspect", "crop"]) == 0
    assert json.loads((out / "wide.json").read_text())["grid"] == [4, 4]


@pytest.mark.slow
def test_stats_keep_aspect_averages_each_image_on_its_own_grid(tmp_path, capsys) -> None:
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.explain.head_stats import average_statistics
    from vitexplorer.core.models.loading import save_checkpoint

    torch.manual_seed(4)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, model)
    rng = np.random.default_rng(5)
    images = []
    for name, shape in (("wide.png", (40, 120, 3)), ("tall.png", (90, 30, 3))):
        images.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(images[-1])
    out = tmp_path / "out"
    args = ["stats", *map(str, images), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--aspect", "keep"]) == 0
    card = json.loads((out / "head_stats.json").read_text())
    assert card["input"] == {"aspect": "keep"}
    expected = average_statistics(
        [analyze_image(model, Image.open(p).convert("RGB"), WHOLE).statistics for p in images]
    )
    first = (out / "head_stats.csv").read_text().splitlines()[1].split(",")
    assert float(first[2]) == pytest.approx(float(expected.distance[0, 0]), abs=1e-4)


# --- sanity and faithfulness at the image's own aspect ratio ------------------------------------


def _photo(path, width: int, height: int, seed: int):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["attention", "rollout", "relevance"])
def test_the_checks_explainer_equals_analyzes_map_on_the_rectangle(method: str) -> None:
    from vitexplorer.core.explain.maps import explanation_map, method_explainer
    from vitexplorer.core.explain.method import MethodOptions

    torch.manual_seed(6)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    torch.nn.init.normal_(model.module.head.weight, std=0.5)
    image = Image.fromarray(np.random.default_rng(7).integers(0, 255, (60, 90, 3), np.uint8))
    batch = preprocess(image, model.spec, feed=WHOLE).unsqueeze(0)
    analysis = analyze_image(model, image, feed=WHOLE)
    options = MethodOptions()
    ours = method_explainer(method, options, feed=WHOLE)(model, batch)
    if method == "relevance":
        theirs = explanation_map(method, options, analysis=analysis, model=model, batch=batch)
    else:
        theirs = explanation_map(method, options, analysis=analysis)
    assert ours.shape == aspect_grid(90, 60, model.spec) == (3, 5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    # the crop explainer on the same model still makes the model's own 4x4 map
    square = preprocess(image, model.spec).unsqueeze(0)
    assert method_explainer(method, options)(model, square).shape == (4, 4)


@pytest.mark.slow
def test_sanity_keep_aspect_on_the_command_line(checkpoint, tmp_path, capsys) -> None:
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.evaluate.sanity import spearman
    from vitexplorer.core.explain.rollout import rollout_map
    from vitexplorer.core.models.loading import load_model

    photo = _photo(tmp_path / "wide.png", 90, 60, seed=8)
    out = tmp_path / "sanity"
    args = ["sanity", str(photo), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--method", "rollout", "--aspect", "keep"]) == 0
    captured = capsys.readouterr()
    assert "wide (whole image, 3x5 patches): Spearman" in captured.out
    model = load_model(str(checkpoint), device="cpu")
    grid = aspect_grid(90, 60, model.spec)
    assert grid == (3, 5)

    maps = np.load(out / "wide.sanity.npy")
    assert maps.shape == (5, *grid)  # original, head, block 2, block 1, embedding
    assert all(np.ptp(m) > 1e-4 for m in maps)  # every map ranks its patches
    assert not np.allclose(maps[1:], maps[0])  # randomising moved the maps
    # the original map is the rollout of the any-size forward on the image's own grid
    batch = preprocess(Image.open(photo).convert("RGB"), model.spec, feed=WHOLE)[None]
    _, attention = forward_with_attention(model.module, batch, any_size=True)
    expected = rollout_map(attention[0].numpy(), 0, grid, 1, "mean", 0.0, 0)
    np.testing.assert_allclose(maps[0], expected, rtol=1e-5, atol=1e-7)
    rows = (out / "wide.sanity.csv").read_text().splitlines()[1:]
    for row, current in zip(rows, maps, strict=True):
        assert float(row.rsplit(",", 1)[1]) == pytest.approx(spearman(maps[0], current), abs=1e-6)

    card = json.loads((out / "wide.sanity.json").read_text())
    assert card["input"] == {"aspect": "keep", "grid": [3, 5], "input_size": [24, 40]}
    assert card["maps"]["shape"] == [5, 3, 5]

    # the crop: the model's own grid, and the card as before (no input)
    assert main([*args, "--method", "rollout"]) == 0
    assert np.load(out / "wide.sanity.npy").shape == (5, 4, 4)
    assert "input" not in json.loads((out / "wide.sanity.json").read_text())
    assert "whole image" not in capsys.readouterr().out


@pytest.mark.slow
def test_faithfulness_keep_aspect_removes_the_patches_of_the_rectangular_grid(
    checkpoint,
) -> None:
    from vitexplorer.core.evaluate.faithfulness import faithfulness
    from vitexplorer.core.explain.maps import method_explainer
    from vitexplorer.core.explain.method import MethodOptions
    from vitexplorer.core.models.loading import load_model

    model = load_model(str(checkpoint), device="cpu")
    image = Image.fromarray(np.random.default_rng(9).integers(0, 255, (100, 40, 3), np.uint8))
    grid = aspect_grid(40, 100, model.spec)
    assert grid == (6, 3)
    steps = grid[0] * grid[1]  # one patch more per step
    explain = method_explainer("rollout", MethodOptions(), feed=WHOLE)
    *_, result = faithfulness(model, [image], explain, steps=steps, feed=WHOLE)
    (one,) = result.images
    assert result.feed.whole and one.grid == grid and one.input_size == (48, 24)
    assert one.positive.shape == one.negative.shape == (steps + 1,)

    batch = preprocess(image, model.spec, feed=WHOLE).unsqueeze(0)
    adapter = adapter_for(model.module)

    def probabilities(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return adapter.forward_parts(images).softmax(-1)

    untouched = probabilities(batch)[0]
    target = int(untouched.argmax())
    assert one.target == target
    assert one.positive[0] == pytest.approx(float(untouched[target]), abs=1e-5)
    assert one.negative[0] == pytest.approx(float(untouched[target]), abs=1e-5)
    # copy k: the k most relevant patches of the 6x3 grid at the mean colour, patch by patch
    heat = explain(model, batch)
    assert heat.shape == grid
    order = np.argsort(-heat.ravel(), kind="stable")
    copies = batch.repeat(steps + 1, 1, 1, 1)
    for k in range(steps + 1):
        for index in order[:k]:
            row, col = divmod(int(index), grid[1])
            copies[k, :, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = 0
    np.testing.assert_allclose(one.positive, probabilities(copies)[:, target], atol=1e-5)
    # the last step has every patch removed: the whole input at the mean colour
    assert not copies[-1].any()
    blank = float(probabilities(torch.zeros_like(batch))[0, target])
    assert one.positive[-1] == pytest.approx(blank, abs=1e-5)
    assert one.negative[-1] == pytest.approx(blank, abs=1e-5)
    assert len(set(np.round(one.positive, 6))) > 2  # the curve moves


@pytest.mark.slow
def test_faithfulness_chefer2021_keep_aspect_removes_pixels_of_the_real_size(
    checkpoint,
    monkeypatch,
) -> None:
    from vitexplorer.core.evaluate import faithfulness as checks
    from vitexplorer.core.explain.maps import method_explainer
    from vitexplorer.core.explain.method import MethodOptions
    from vitexplorer.core.models.loading import load_model

    model = load_model(str(checkpoint), device="cpu")
    image = Image.fromarray(np.random.default_rng(10).integers(0, 255, (60, 90, 3), np.uint8))
    seen: list[tuple[torch.Tensor, bool]] = []
    original = checks._forward

    def spy(model, images, any_size=False):
        seen.append((images.clone(), any_size))
        return original(model, images, any_size)

    monkeypatch.setattr(checks, "_forward", spy)
    explain = method_explainer("relevance", MethodOptions(), feed=WHOLE)
    *_, result = checks.faithfulness(
        model, [image], explain, steps=4, protocol="chefer2021", labels=[3], feed=WHOLE
    )
    (one,) = result.images
    assert one.grid == (3, 5) and one.positive.shape == (4,)
    ((copies, any_size),) = seen
    assert any_size and copies.shape == (8, 3, 24, 40)  # 4 positive, 4 negative copies
    batch = preprocess(image, model.spec, feed=WHOLE)
    heat = explain(model, batch[None])
    up = checks.upsampled_map(heat, 24, 40).ravel()  # the map at the input's real size
    black = checks.black_input(model.spec.mean, model.spec.std)[:, None]
    counts = checks.pixel_removal_counts(24 * 40, 4)
    for k, count in enumerate(counts):
        removed = (copies[k].reshape(3, -1) == black).all(0).numpy()
        assert removed.sum() == count
        np.testing.assert_array_equal(np.flatnonzero(removed), np.sort(np.argsort(-up)[:count]))
    # the untouched image: right (1) or wrong (0) against label 3, by the any-size forward
    with torch.inference_mode():
        predicted = int(adapter_for(model.module).forward_parts(batch[None]).argmax())
    assert one.predicted == predicted
    assert one.positive[0] == one.negative[0] == float(predicted == 3)


@pytest.mark.slow
def test_faithfulness_keep_aspect_on_the_command_line(checkpoint, tmp_path, capsys) -> None:
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.models.loading import load_model

    folder = tmp_path / "images"
    wide = _photo(folder / "a-wide.png", 90, 60, seed=11)
    tall = _photo(folder / "b-tall.png", 40, 100, seed=12)
    out = tmp_path / "faith"
    args = ["faithfulness", str(folder), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--method", "relevance", "--aspect", "keep", "--steps", "5"]) == 0
    assert "whole images on their own grids" in capsys.readouterr().out
    lines = (out / "faithfulness.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[-4:] == ["protocol", "note", "grid_rows", "grid_cols"]
    model = load_model(str(checkpoint), device="cpu")
    adapter = adapter_for(model.module)
    for line, path, grid in zip(lines[1:], (wide, tall), ((3, 5), (6, 3)), strict=True):
        cells = line.split(",")
        assert cells[0] == str(path) and (int(cells[-2]), int(cells[-1])) == grid
        image = Image.open(path).convert("RGB")
        assert aspect_grid(*image.size, model.spec) == grid
        batch = preprocess(image, model.spec, feed=WHOLE)[None]
        with torch.inference_mode():
            untouched = adapter.forward_parts(batch).softmax(-1)[0]
        target = int(untouched.argmax())
        assert int(cells[1]) == target
        assert float(cells[header.index("positive_0")]) == pytest.approx(
            float(untouched[target]), abs=1e-5
        )
    card = json.loads((out / "faithfulness.json").read_text())
    assert card["input"] == {
        "aspect": "keep",
        "images": [
            {"image": str(wide), "grid": [3, 5], "input_size": [24, 40]},
            {"image": str(tall), "grid": [6, 3], "input_size": [48, 24]},
        ],
    }
    # the crop: no grid columns, no input in the card, as before
    assert main([*args, "--method", "relevance", "--steps", "5"]) == 0
    assert (out / "faithfulness.csv").read_text().splitlines()[0].endswith(",protocol,note")
    assert "input" not in json.loads((out / "faithfulness.json").read_text())


@pytest.mark.slow
def test_a_model_that_cannot_take_other_sizes_gets_analyzes_one_line(
    checkpoint,
    tmp_path,
    capsys,
    monkeypatch,
) -> None:
    from vitexplorer.cli import main
    from vitexplorer.core.models.families.small_vit import SmallViTAdapter

    def refuse(self, images):
        raise RuntimeError("this model takes only its own input size\n(224 x 224)")

    monkeypatch.setattr(SmallViTAdapter, "forward_parts", refuse)
    photo = _photo(tmp_path / "wide.png", 90, 60, seed=13)
    common = [str(photo), "--model", str(checkpoint), "--aspect", "keep"]
    line = "vitexplorer: wide.png: this model takes only its own input size (224 x 224)"
    assert main(["analyze", *common, "--out", str(tmp_path / "a")]) == 1
    assert capsys.readouterr().err.splitlines() == [line]
    for method in ("rollout", "relevance"):
        args = ["sanity", *common, "--method", method, "--out", str(tmp_path / "s")]
        assert main(args) == 1
        assert capsys.readouterr().err.splitlines() == [line]
    status = main(["faithfulness", *common, "--out", str(tmp_path / "f")])
    err = [x for x in capsys.readouterr().err.splitlines() if "images" not in x]
    assert status == 1
    assert err == [
        line.replace("vitexplorer: ", "vitexplorer: skipped "),
        "vitexplorer: no image could be tested",
    ]
    # the crop never asks for another size
    assert main(["sanity", *common[:-2], "--out", str(tmp_path / "s")]) == 0
