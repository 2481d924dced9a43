"""The input vitexplorer feeds a model equals the one its own library makes: a Hugging Face
image processor's ``pixel_values`` (the folder loaded through ``hf:FOLDER``) and timm's
``create_transform`` of the model's ``pretrained_cfg``, within 1e-6, on photos of several aspect
ratios and on odd-sized noise (which makes every rounding difference show). No network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

from vitexplorer.core.models import loading as models  # noqa: E402
from vitexplorer.core.models.families import timm as timm_family  # noqa: E402
from vitexplorer.core.models.feed import WHOLE  # noqa: E402
from vitexplorer.core.models.preprocessing import crop_box, display_crop, preprocess  # noqa: E402
from vitexplorer.core.models.spec import RANDOM  # noqa: E402

PHOTOS = Path("/work/shared/data/images")
COMMON = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8, intermediate_size=64
)
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def _noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _images() -> list[Image.Image]:
    """Odd-sized noise (always), and a few real photos of different shapes when present."""
    images = [_noise(w, h, i) for i, (w, h) in enumerate([(37, 23), (50, 77), (101, 64), (33, 33)])]
    if PHOTOS.is_dir():
        from vitexplorer.core.io.images import load_image

        for path in sorted(PHOTOS.iterdir())[:4]:
            image = load_image(path)
            w, h = image.size  # an odd-sized cut too, so the crop's offset is odd
            images += [image, image.crop((0, 0, w - 3, h * 2 // 3 + 1))]
    return images


def _model(model_type: str) -> object:
    torch.manual_seed(0)
    if model_type == "vit":
        return transformers.ViTModel(transformers.ViTConfig(image_size=32, **COMMON))
    if model_type == "deit":
        config = transformers.DeiTConfig(image_size=32, num_labels=3, **COMMON)
        return transformers.DeiTForImageClassificationWithTeacher(config)
    if model_type == "clip":
        config = transformers.CLIPVisionConfig(image_size=32, **COMMON)
        return transformers.CLIPVisionModel(config)
    return transformers.Dinov2Model(
        transformers.Dinov2Config(
            image_size=32,
            mlp_ratio=2,
            **{k: v for k, v in COMMON.items() if k != "intermediate_size"},
        )
    )


# name -> (model type, processor) with the processor's own semantics: size as height and width
# (no crop), squash then crop, shortest edge then crop, crop_pct
PROCESSORS = {
    "vit": ("vit", lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32})),
    "deit": (
        "deit",
        lambda: transformers.DeiTImageProcessor(
            size={"height": 35, "width": 35}, crop_size={"height": 32, "width": 32}, **IMAGENET
        ),
    ),
    "clip": (
        "clip",
        lambda: transformers.CLIPImageProcessor(
            size={"shortest_edge": 35}, crop_size={"height": 32, "width": 32}
        ),
    ),
    "siglip": (
        "vit",
        lambda: transformers.SiglipImageProcessor(size={"height": 32, "width": 32}),
    ),
    "dinov2": (
        "dinov2",
        lambda: transformers.BitImageProcessor(
            size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32}, **IMAGENET
        ),
    ),
    "vit_bicubic_no_rescale": (
        "vit",
        lambda: transformers.ViTImageProcessor(
            size={"height": 32, "width": 32}, resample=3, do_rescale=False,
            image_mean=[127.5, 120.0, 100.0], image_std=[60.0, 64.0, 70.0],
        ),
    ),
    "convnext_crop_pct": (
        "vit",
        lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return _images()


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_hf_input_equals_the_processors(
    name: str, images: list[Image.Image], tmp_path: Path
) -> None:
    model_type, make = PROCESSORS[name]
    processor = make()
    _model(model_type).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = models.load_model(f"hf:{tmp_path}", "default", "cpu")
    assert loaded.spec.notes == ()  # the folder's own processor: nothing to warn about
    for image in images:
        expected = processor(images=image, return_tensors="pt").pixel_values[0]
        ours = preprocess(image, loaded.spec)
        assert ours.shape == expected.shape == (3, 32, 32)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_hf_crop_offset_is_rounded_down_as_the_processor_does(tmp_path: Path) -> None:
    """35 px squashed, 32 px cropped: HF starts the crop at 1, torchvision's centre crop at 2;
    a one-pixel shift that the display must follow too."""
    _model("deit").save_pretrained(tmp_path)
    PROCESSORS["deit"][1]().save_pretrained(tmp_path)
    spec = models.load_model(f"hf:{tmp_path}", "default", "cpu").spec
    assert (spec.crop_mode, spec.resize_size, spec.image_size) == ("squash", 35, 32)
    image = _noise(70, 140, 9)
    # the model sees rows and columns 1..32 of the 35 px squash: in the photo, x 2..66, y 4..132
    assert crop_box(70, 140, spec) == pytest.approx((2.0, 4.0, 66.0, 132.0))
    shown = display_crop(image, spec)
    assert shown.shape[0] == shown.shape[1]
    # torchvision's centre crop (offset 2) is another input: the rounding matters
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    squashed = TF.resize(
        TF.pil_to_tensor(image),
        [35, 35],
        antialias=True,
        interpolation=InterpolationMode.BICUBIC,
    ).float()
    mean = torch.tensor(spec.mean).view(3, 1, 1) * 255
    std = torch.tensor(spec.std).view(3, 1, 1) * 255
    ours = preprocess(image, spec)
    torch.testing.assert_close(ours, ((squashed - mean) / std)[:, 1:33, 1:33], atol=1e-5, rtol=0)
    assert (ours - ((squashed - mean) / std)[:, 2:34, 2:34]).abs().max() > 0.1


def test_hf_squash_without_crop_shows_the_whole_image(tmp_path: Path) -> None:
    _model("vit").save_pretrained(tmp_path)
    PROCESSORS["vit"][1]().save_pretrained(tmp_path)
    spec = models.load_model(f"hf:{tmp_path}", "default", "cpu").spec
    assert (spec.crop_mode, spec.resize_size, spec.image_size) == ("squash", 32, 32)
    assert crop_box(90, 40, spec) == pytest.approx((0.0, 0.0, 90.0, 40.0))


def test_hf_folder_without_preprocessor_config_says_which_defaults(tmp_path: Path) -> None:
    _model("deit").save_pretrained(tmp_path)
    spec = models.load_model(f"hf:{tmp_path}", "default", "cpu").spec
    (note,) = spec.notes
    assert note.startswith("no preprocessor_config.json: ")
    for part in ("DeiTImageProcessor", "resize to 36x36", "crop 32", "bicubic"):
        assert part in note
    assert "mean (0.485, 0.456, 0.406)" in note and "std (0.229, 0.224, 0.225)" in note
    assert (spec.resize_size, spec.image_size, spec.crop_mode) == (36, 32, "squash")


def test_random_weights_carry_a_warning(tmp_path: Path) -> None:
    _model("vit").save_pretrained(tmp_path)
    PROCESSORS["vit"][1]().save_pretrained(tmp_path)
    spec = models.load_model(f"hf:{tmp_path}", "none", "cpu").spec
    assert spec.weights == RANDOM
    assert spec.notes == (
        "random weights (--weights none): the predictions and any class-specific map mean nothing",
    )


# --- timm --------------------------------------------------------------------------------------

TIMM_CFGS = {
    "center_0.875_bicubic": dict(crop_pct=0.875, crop_mode="center", interpolation="bicubic"),
    "center_0.9_bilinear": dict(crop_pct=0.9, crop_mode="center", interpolation="bilinear"),
    "center_0.95": dict(crop_pct=0.95, crop_mode="center", interpolation="bicubic"),
    "center_1.0": dict(crop_pct=1.0, crop_mode="center", interpolation="bicubic"),
    "squash_1.0": dict(crop_pct=1.0, crop_mode="squash", interpolation="bicubic"),
    "squash_0.9_bilinear": dict(crop_pct=0.9, crop_mode="squash", interpolation="bilinear"),
    "border_1.0": dict(crop_pct=1.0, crop_mode="border", interpolation="bicubic"),
    "border_0.875": dict(crop_pct=0.875, crop_mode="border", interpolation="bilinear"),
}


def _timm_model(cfg: dict) -> torch.nn.Module:
    overlay = dict(cfg, mean=(0.5, 0.45, 0.4), std=(0.2, 0.25, 0.3), input_size=(3, 32, 32))
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
        num_heads=2, embed_dim=32, num_classes=10, pretrained_cfg_overlay=overlay,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(TIMM_CFGS))
def test_timm_input_equals_create_transform(name: str, images: list[Image.Image]) -> None:
    module = _timm_model(TIMM_CFGS[name])
    spec = timm_family.spec_for(module, "vit_tiny_patch16_224", "random")
    assert spec.crop_mode == TIMM_CFGS[name]["crop_mode"]
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=module))
    for image in images:
        expected = transform(image)
        ours = preprocess(image, spec)
        assert ours.shape == expected.shape == (3, 32, 32)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_timm_display_follows_squash_and_border() -> None:
    squash = timm_family.spec_for(_timm_model(TIMM_CFGS["squash_1.0"]), "vit_tiny", "random")
    assert crop_box(90, 40, squash) == pytest.approx((0.0, 0.0, 90.0, 40.0))
    border = timm_family.spec_for(_timm_model(TIMM_CFGS["border_1.0"]), "vit_tiny", "random")
    # 80x40 fits as 32x16, padded by 8 rows above and below: the box reaches past the image
    assert crop_box(80, 40, border) == pytest.approx((0.0, -20.0, 80.0, 60.0))
    shown = display_crop(_noise(80, 40, 3), border)
    assert shown.shape[0] == shown.shape[1]
    fill = np.round(255 * np.array([0.5, 0.45, 0.4]))
    np.testing.assert_array_equal(shown[0, shown.shape[1] // 2], fill)  # the padding's colour


def test_timm_random_weights_carry_a_warning() -> None:
    module = _timm_model(TIMM_CFGS["center_0.9_bilinear"])
    spec = timm_family.spec_for(module, "vit_tiny_patch16_224", RANDOM).randomised(warn=True)
    assert spec.notes and spec.notes[0].startswith("random weights (--weights none)")
    assert spec.random_weights and spec.weights == RANDOM
    assert timm_family.spec_for(module, "vit_tiny_patch16_224", "a file").notes == ()


def test_comparing_a_squashing_model_with_a_cropping_one_says_they_see_different_parts() -> None:
    import dataclasses

    from vitexplorer.core.explain.model_compare import comparability

    center = timm_family.spec_for(_timm_model(TIMM_CFGS["center_1.0"]), "vit_tiny", "random")
    squash = dataclasses.replace(center, crop_mode="squash")
    assert comparability(center, dataclasses.replace(center)).message == ""
    message = comparability(center, squash).message
    assert "crop the image differently" in message
    assert "A its central 32 of 32 px, B the whole image squashed to 32 px square" in message
    assert comparability(center, squash, feed=WHOLE).message == ""  # no crop at all then


@pytest.mark.slow
def test_cli_warns_once_per_note(tmp_path: Path) -> None:
    """`--weights none` and a folder without preprocessor_config.json: one line each."""
    import subprocess
    import sys

    _model("vit").save_pretrained(tmp_path / "m")
    image = tmp_path / "a.png"
    _noise(40, 30, 1).save(image)
    result = subprocess.run(
        [sys.executable, "-m", "vitexplorer", "analyze", "--model", f"hf:{tmp_path / 'm'}",
         "--weights", "none", "--out", str(tmp_path / "out"), str(image)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2
    assert warnings[0].startswith("vitexplorer: warning: no preprocessor_config.json: ")
    assert "resize to 32x32, no crop, bilinear, mean (0.5, 0.5, 0.5)" in warnings[0]
    assert warnings[1] == (
        "vitexplorer: warning: random weights (--weights none): the predictions and any "
        "class-specific map mean nothing"
    )


def test_method_card_says_when_the_image_is_squashed(tmp_path: Path) -> None:
    from vitexplorer.core.explain.provenance import preprocessing_facts

    for name, mode in [("vit", "squash"), ("clip", None)]:
        folder = tmp_path / name
        _model(PROCESSORS[name][0]).save_pretrained(folder)
        PROCESSORS[name][1]().save_pretrained(folder)
        facts = preprocessing_facts(models.load_model(f"hf:{folder}", "default", "cpu"))
        assert facts.get("crop_mode") == mode
        assert (facts["resize"], facts["center_crop"]) == ((32, 32) if mode else (35, 32))
