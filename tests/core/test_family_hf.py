"""Hugging Face transformers' ViTs (core/families/hf.py) on tiny random configs saved with
``save_pretrained``: capture against HF's own eager attention, fine-tuning's split, structure,
the sanity check's parts, loading (folder, weights file, checkpoint) and the CLI. No network."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

transformers = pytest.importorskip("transformers")

from vitexplorer.core.evaluate.sanity import randomisation_steps  # noqa: E402
from vitexplorer.core.explain.analysis import analyze_image  # noqa: E402
from vitexplorer.core.explain.structure import model_structure  # noqa: E402
from vitexplorer.core.models import loading as models  # noqa: E402
from vitexplorer.core.models.capture import capturing_attention, forward_with_attention  # noqa: E402
from vitexplorer.core.models.checkpoint import WeightsFileError  # noqa: E402
from vitexplorer.core.models.download import WeightsUnavailableError  # noqa: E402
from vitexplorer.core.models.families.family import UnsupportedModel  # noqa: E402
from vitexplorer.core.models.families.hf_config import (  # noqa: E402
    architecture_config,
    check_config,
    preprocessing,
)
from vitexplorer.core.models.families.hf_model import HFClassifier  # noqa: E402
from vitexplorer.core.models.families.registry import adapter_for  # noqa: E402
from vitexplorer.core.training.config import parse_freeze  # noqa: E402
from vitexplorer.core.training.finetune_model import SplitViT, with_new_head  # noqa: E402

COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8)
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "eel"}, "label2id": {"cat": 0, "dog": 1, "eel": 2}}
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}

# kind -> (class, config, preprocessor_config.json or None)
KINDS = {
    "vit": (
        "ViTForImageClassification",
        lambda: transformers.ViTConfig(image_size=32, intermediate_size=64, **LABELS, **COMMON),
        {"size": {"height": 32, "width": 32}, "resample": 2, "image_mean": [0.5] * 3,
         "image_std": [0.5] * 3, "rescale_factor": 1 / 255},
    ),
    "deit": (
        "DeiTForImageClassificationWithTeacher",
        lambda: transformers.DeiTConfig(image_size=32, intermediate_size=64, **LABELS, **COMMON),
        {"size": {"height": 36, "width": 36}, "crop_size": {"height": 32, "width": 32},
         "do_center_crop": True, "resample": 3, **IMAGENET},
    ),
    # trained at 56 px (a 7x7 grid), analysed at 32 px: position embeddings interpolated
    "dinov2_reg": (
        "Dinov2WithRegistersModel",
        lambda: transformers.Dinov2WithRegistersConfig(
            image_size=56, mlp_ratio=2, num_register_tokens=2, **COMMON
        ),
        {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32},
         "do_center_crop": True, "resample": 3, **IMAGENET},
    ),
    "dinov2_cls": (
        "Dinov2ForImageClassification",
        lambda: transformers.Dinov2Config(image_size=32, mlp_ratio=2, **LABELS, **COMMON),
        None,
    ),
    "clip": (
        "CLIPVisionModelWithProjection",
        lambda: transformers.CLIPVisionConfig(
            image_size=32, intermediate_size=64, projection_dim=16, **COMMON
        ),
        None,
    ),
}  # fmt: skip
CAPTURED = ["vit", "deit", "dinov2_reg", "dinov2_cls", "clip"]
WITH_CLASSIFIER = ["vit", "deit", "dinov2_cls"]


def _hf_model(kind: str, seed: int = 0) -> nn.Module:
    """A tiny model with parameters far from HF's small initial values, so outputs differ."""
    cls, config, _ = KINDS[kind]
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    found = {}
    for kind, (_, _, processor) in KINDS.items():
        folder = root / kind
        _hf_model(kind).save_pretrained(folder)
        if processor is not None:
            (folder / "preprocessor_config.json").write_text(json.dumps(processor))
        found[kind] = folder
    return found


_LOADED: dict[tuple[Path, str], models.LoadedModel] = {}


def _load(folder: Path, weights: str = "default") -> models.LoadedModel:
    """``load_model("hf:FOLDER", weights)``; each folder's default load is done once, and each
    caller gets its own copy of the module (tests change heads)."""
    if weights != "default":
        return models.load_model(f"hf:{folder}", weights, "cpu")
    if (folder, weights) not in _LOADED:
        _LOADED[folder, weights] = models.load_model(f"hf:{folder}", weights, "cpu")
    loaded = _LOADED[folder, weights]
    return dataclasses.replace(loaded, module=copy.deepcopy(loaded.module))


def _images(size: int = 32, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _hf_output(model: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    if not isinstance(model, transformers.Dinov2PreTrainedModel):
        kwargs["interpolate_pos_encoding"] = True
    out = model(pixel_values=x, **kwargs)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


# --- capture ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CAPTURED)
def test_capture_equals_hf_eager_attention_and_changes_nothing(
    folders: dict[str, Path], kind: str
) -> None:
    loaded = _load(folders[kind])
    wrapper, spec = loaded.module, loaded.spec
    assert wrapper.model.config._attn_implementation == "sdpa"  # loaded at the default
    x = _images(spec.image_size)
    with torch.no_grad():
        plain_hf = _hf_output(wrapper.model, x)
        plain = wrapper(x)
        # the premise: with sdpa, HF's own output_attentions gives nothing
        assert not _attentions(wrapper.model, x)
        with capturing_attention(wrapper):
            captured_hf = _hf_output(wrapper.model, x)
    torch.testing.assert_close(captured_hf, plain_hf, atol=1e-5, rtol=0)
    logits, maps = forward_with_attention(wrapper, x)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=0)
    assert maps.shape == (2, 2, 2, spec.num_tokens, spec.num_tokens)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-5, rtol=0)
    eager = getattr(transformers, KINDS[kind][0]).from_pretrained(
        folders[kind], attn_implementation="eager"
    )
    with torch.no_grad():
        reference = torch.stack(_attentions(eager.eval(), x), dim=1)
    torch.testing.assert_close(maps, reference, atol=1e-6, rtol=0)


def _attentions(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    kwargs = {} if isinstance(model, transformers.Dinov2PreTrainedModel) else {
        "interpolate_pos_encoding": True
    }  # fmt: skip
    return model(pixel_values=x, output_attentions=True, **kwargs).attentions or ()


def test_prefix_tokens_and_grid(folders: dict[str, Path]) -> None:
    expected = {
        "vit": (("cls",), (4, 4), True),
        "deit": (("cls", "dist"), (4, 4), True),
        "dinov2_reg": (("cls", "reg", "reg"), (4, 4), False),
        "clip": (("cls",), (4, 4), False),
    }
    for kind, (prefix, grid, has_classifier) in expected.items():
        spec = _load(folders[kind]).spec
        assert (spec.prefix_labels, spec.grid, spec.has_classifier) == (
            prefix,
            grid,
            has_classifier,
        )
        assert spec.num_prefix_tokens == len(prefix) and spec.family == "hf"


def test_capture_honours_an_attention_mask() -> None:
    """A mask handed to the attention (bool as sdpa builds it, or additive as eager's) is
    applied before the softmax, as HF's eager attention does."""
    wrapper = HFClassifier(_hf_model("vit"), "ViTForImageClassification", 32)
    attention = adapter_for(wrapper).attention_modules()[0]
    tokens = torch.randn(1, 17, 32)
    keep = torch.ones(1, 1, 17, 17, dtype=torch.bool)
    keep[..., 5:] = False
    additive = torch.zeros(1, 1, 17, 17).masked_fill(~keep, torch.finfo(torch.float32).min)
    with capturing_attention(wrapper) as sink:
        out_bool, weights = attention(tokens, keep)
        out_add, weights_add = attention(tokens, additive)
    assert torch.all(weights[..., 5:] == 0) and sink.filled == 2
    torch.testing.assert_close(out_bool, out_add)
    torch.testing.assert_close(weights, weights_add)


# --- fine-tuning -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WITH_CLASSIFIER)
def test_split_vit_equals_the_forward(folders: dict[str, Path], kind: str) -> None:
    loaded = _load(folders[kind])
    x = _images(loaded.spec.image_size)
    with torch.no_grad():
        whole = loaded.module(x)
        for policy in ("head", "last:1", "none"):
            split = SplitViT(loaded.module, parse_freeze(policy, loaded.spec.num_layers))
            torch.testing.assert_close(split(x), whole, atol=1e-5, rtol=0)


def test_with_new_head_on_the_distilled_deit_replaces_both_heads(folders: dict[str, Path]) -> None:
    loaded = _load(folders["deit"])
    adapter = adapter_for(loaded.module)
    assert adapter.get_classifier().in_features == 64  # class and distillation token, side by side
    tuned = with_new_head(loaded, ("a", "b"), "fine-tuned")
    x = _images()
    with torch.no_grad():
        assert torch.equal(tuned.module(x), torch.zeros(2, 2))
    assert tuned.spec.class_names == ("a", "b") and tuned.spec.config["num_classes"] == 2
    split = SplitViT(tuned.module, 0)
    assert [p.shape for p in split.trainable_parameters()] == [(2, 64), (2,)]


@pytest.mark.slow
def test_an_image_tower_gains_a_head_for_fine_tuning(folders: dict[str, Path]) -> None:
    loaded = _load(folders["clip"])
    x = _images()
    assert loaded.module(x).shape == (2, 0)
    assert adapter_for(loaded.module).get_classifier() is None
    with pytest.raises(TypeError, match="no classifier"):
        SplitViT(loaded.module, 0)
    tuned = with_new_head(loaded, ("a", "b", "c"), "probe")
    head = adapter_for(tuned.module).get_classifier()
    assert head is not None and head.in_features == 16  # the projected embedding
    with torch.no_grad():
        nn.init.normal_(head.weight)
        whole = tuned.module(x)
        for k in (0, 1, 2):
            torch.testing.assert_close(SplitViT(tuned.module, k)(x), whole, atol=1e-5, rtol=0)


# --- structure and the sanity check ----------------------------------------------------------


def test_dinov2_position_embeddings_are_those_added_at_the_analysed_size(
    folders: dict[str, Path],
) -> None:
    loaded = _load(folders["dinov2_reg"])
    wrapper, spec = loaded.module, loaded.spec
    assert wrapper.config.image_size == 56 and spec.image_size == 32  # 7x7 learned, 4x4 used
    adapter = adapter_for(wrapper)
    positions = adapter.position_embeddings()
    assert positions.shape == (spec.num_tokens, 32)
    embeddings = wrapper.backbone.embeddings
    x = _images()
    with torch.no_grad():
        tokens = embeddings(x)
        patches = embeddings.patch_embeddings(x)
    torch.testing.assert_close(tokens[:, 3:], patches + positions[3:], atol=1e-6, rtol=0)
    torch.testing.assert_close(
        tokens[:, 0], (embeddings.cls_token[0] + positions[:1]).expand(2, -1)
    )
    torch.testing.assert_close(tokens[:, 1:3], embeddings.register_tokens.expand(2, -1, -1))
    assert not positions[1:3].any()  # registers receive no position embedding
    torch.testing.assert_close(adapter.embed(x), tokens)
    similarity, filters, _ = model_structure(wrapper, spec.grid, spec.num_prefix_tokens)
    assert similarity.shape == (4, 4, 4, 4) and filters.shape[1:] == (8, 8, 3)
    assert adapter.patch_filters().shape == (32, 3, 8, 8)


@pytest.mark.parametrize("kind", CAPTURED)
def test_randomisation_steps_cover_every_parameter_once(
    folders: dict[str, Path], kind: str
) -> None:
    module = _load(folders[kind]).module
    steps = randomisation_steps(module)
    assert [name for name, _ in steps] == ["head", "block 2", "block 1", "embedding"]
    seen = []
    for _, parts in steps:
        for part in parts:
            seen += [
                id(p) for p in ([part] if isinstance(part, nn.Parameter) else part.parameters())
            ]
    assert sorted(seen) == sorted(id(p) for p in module.parameters())
    adapter = adapter_for(module)
    block = copy.deepcopy(steps[1][1][0])
    before = [p.clone() for p in block.parameters()]
    adapter.reinitialise(block, 0.02)
    assert all(not torch.equal(a, b) for a, b in zip(before, block.parameters(), strict=True))
    if kind.startswith("dinov2"):
        assert torch.all(block.layer_scale1.lambda1 == module.config.layerscale_value)


# --- loading -------------------------------------------------------------------------------


def test_a_folder_loads_with_its_preprocessing_and_labels(folders: dict[str, Path]) -> None:
    vit = _load(folders["vit"])
    assert vit.spec.class_names == ("cat", "dog", "eel")
    assert vit.spec.name == f"hf:{folders['vit']}"
    assert (vit.spec.mean, vit.spec.interpolation) == ((0.5, 0.5, 0.5), "bilinear")
    assert vit.weights_file == folders["vit"] / "model.safetensors"
    assert "Hugging Face weights" in vit.spec.weights
    deit = _load(folders["deit"]).spec
    assert (deit.image_size, deit.resize_size, deit.interpolation) == (32, 36, "bicubic")
    clip = _load(folders["clip"]).spec  # no preprocessor_config.json: CLIP's own defaults
    assert clip.class_names == () and clip.mean[0] == pytest.approx(0.48145466)
    with torch.no_grad():
        x = _images()
        torch.testing.assert_close(vit.module(x), _hf_model("vit")(pixel_values=x).logits)


def test_random_weights_and_a_weights_file(folders: dict[str, Path], tmp_path: Path) -> None:
    random = _load(folders["vit"], "none")
    assert random.spec.weights == "random initialisation" and random.weights_file is None
    reference = _hf_model("vit", seed=3)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    loaded = _load(folders["vit"], str(path))
    assert loaded.weights_file == path.resolve() and loaded.spec.weights == "file vit.safetensors"
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(pixel_values=x).logits)


def test_a_weights_file_in_the_older_transformers_layout(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """transformers 4 named ViT's keys ``encoder.layer.N.attention.attention.query``; its own
    key conversion brings such a file to today's layout."""
    reference = _hf_model("vit", seed=4)
    renames = [
        ("vit.layers.", "vit.encoder.layer."),
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ]
    old = {}
    for key, value in reference.state_dict().items():
        for new, before in renames:
            key = key.replace(new, before)
        old[key] = value.contiguous()
    assert "vit.encoder.layer.1.attention.attention.query.weight" in old
    path = tmp_path / "old.safetensors"
    save_file(old, path)
    loaded = _load(folders["vit"], str(path))
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(pixel_values=x).logits)


def test_a_mismatched_weights_file_names_the_mismatch(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    wider = transformers.ViTForImageClassification(
        transformers.ViTConfig(image_size=32, intermediate_size=96, **LABELS, **COMMON)
    )
    state = {k: v for k, v in wider.state_dict().items() if k != "classifier.bias"}
    path = tmp_path / "wider.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    with pytest.raises(WeightsFileError) as info:
        _load(folders["vit"], str(path))
    message = str(info.value)
    assert "wider.safetensors" in message and "shape mismatch" in message
    assert "mlp.fc1.weight: file (96, 32), model (64, 32)" in message
    assert "1 missing key(s), e.g. classifier.bias" in message and "\n" not in message


def test_unsupported_architectures_are_refused_in_one_line(tmp_path: Path) -> None:
    swin = tmp_path / "swin"
    transformers.SwinConfig(architectures=["SwinForImageClassification"]).save_pretrained(swin)
    for call in (models.check_model_source, models.load_model):
        with pytest.raises(UnsupportedModel, match="windowed or hierarchical attention is not"):
            call(f"hf:{swin}")
    mim = tmp_path / "mim"
    config = transformers.ViTConfig(architectures=["ViTForMaskedImageModeling"], **COMMON)
    config.save_pretrained(mim)
    with pytest.raises(UnsupportedModel, match="ViTForMaskedImageModeling is not .* supported: "):
        models.load_model(f"hf:{mim}")
    with pytest.raises(ValueError, match="folder not found: ./no/such"):
        models.load_model("hf:./no/such")
    with pytest.raises(WeightsUnavailableError, match="not in the local Hugging Face"):
        models.load_model("hf:nobody/no-such-model", allow_download=False)


def test_a_whole_clip_model_loads_its_image_tower(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 32, "vocab_size": 50},
        vision_config=dict(image_size=32, intermediate_size=64, **COMMON),
        projection_dim=16,
    )  # fmt: skip
    clip = transformers.CLIPModel(config).eval()
    clip.save_pretrained(tmp_path / "clip")
    loaded = models.load_model(f"hf:{tmp_path / 'clip'}", "default", "cpu")
    assert loaded.module.architecture == "CLIPVisionModelWithProjection"
    x = _images()
    with torch.no_grad():
        expected = clip.get_image_features(pixel_values=x).pooler_output
        torch.testing.assert_close(loaded.module.model(pixel_values=x).image_embeds, expected)


def test_preprocessing_from_the_image_processor_config() -> None:
    clip = preprocessing(
        "clip_vision_model",
        224,
        {"size": {"shortest_edge": 256}, "crop_size": 224, "do_center_crop": True, "resample": 3},
    )
    assert (clip.image_size, clip.resize_size, clip.interpolation) == (224, 256, "bicubic")
    assert clip.mean[0] == pytest.approx(0.48145466)  # CLIP's own, as its processor defaults
    # no rescaling: HF normalises 0..255 pixels, so mean and std scale by 1/255 for 0..1 ones
    raw = preprocessing(
        "vit", 32, {"do_rescale": False, "image_mean": 127.5, "image_std": 51, "size": 32}
    )
    assert raw.mean == pytest.approx((0.5, 0.5, 0.5)) and raw.std == pytest.approx((0.2,) * 3)
    # ViTImageProcessor reads a bare size as height and width: the whole image, squashed
    assert (raw.image_size, raw.resize_size, raw.interpolation) == (32, 32, "bilinear")
    assert raw.crop_mode == "squash" and clip.crop_mode == "center"
    # keys the file leaves out take its processor class's defaults (DeiT's 256 then 224)
    deit = preprocessing("deit", 32, {"image_processor_type": "DeiTImageProcessor"})
    assert (deit.image_size, deit.resize_size, deit.crop_mode) == (224, 256, "squash")
    padded = preprocessing("vit", 32, {"size": 30, "do_center_crop": True, "crop_size": 32})
    assert (padded.image_size, padded.resize_size) == (32, 32)
    assert padded.notes == (
        "its image processor pads the 30 px image with black to crop 32 px; vitexplorer "
        "resizes to 32 px instead",
    )
    # a processor class this transformers lacks: read as the family's, and said so
    old = preprocessing("vit", 32, {"image_processor_type": "ViTFeatureExtractor", "size": 32})
    assert (old.image_size, old.crop_mode) == (32, "squash")
    assert old.notes == (
        "its image processor 'ViTFeatureExtractor' is not one this transformers has; "
        "vitexplorer reads its settings as a ViTImageProcessor's",
    )
    plain = preprocessing("deit", 32, {"do_normalize": False})
    assert (plain.mean, plain.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    for bad, message in [
        ({"image_mean": [0.5, 0.5]}, "image_mean is not one number per RGB channel"),
        ({"image_std": [0.5, 0.0, 0.5]}, "image_std is not above 0"),
        ({"size": {"height": 32, "width": 48}}, "size is 32x48; only square inputs"),
        ({"size": 32, "resample": "sharpest"}, "resample 'sharpest' is not a PIL filter"),
    ]:
        with pytest.raises(UnsupportedModel, match=message):
            preprocessing("vit", 32, bad)


@pytest.mark.slow
def test_fine_tuning_and_its_checkpoint(folders: dict[str, Path], tmp_path: Path) -> None:
    """A distilled DeiT and an image tower without a classifier both fine-tune (the tower
    gains a head on its pooled features), and their checkpoints load back."""
    from tests.conftest import write_colour_dataset
    from vitexplorer.core.training.config import FinetuneConfig
    from vitexplorer.core.training.datasets import open_dataset
    from vitexplorer.core.training.engine import finetune
    from vitexplorer.core.training.events import Finished

    data = open_dataset(write_colour_dataset(tmp_path / "colours", 6, size=32))
    config = FinetuneConfig(
        per_class=4, test_per_class=2, epochs=1, batch_size=6, freeze="last:1",
        mixed_precision=False,
    )  # fmt: skip
    for kind in ("deit", "dinov2_reg"):
        events = list(finetune(_load(folders[kind]), data, config))
        assert isinstance(events[-1], Finished)
        tuned = events[-1].result.model
        assert tuned.spec.class_names == ("blue", "green", "red")
        path = tmp_path / f"{kind}.safetensors"
        models.save_checkpoint(path, tuned)
        back = models.load_model(str(path), "default", "cpu")
        assert back.spec.has_classifier and back.spec.num_classes == 3
        x = _images()
        with torch.no_grad():
            torch.testing.assert_close(back.module(x), tuned.module.eval()(x), atol=0, rtol=0)


# --- checkpoints, analysis and the command line ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["deit", "dinov2_reg"])
def test_a_saved_checkpoint_loads_back(folders: dict[str, Path], tmp_path: Path, kind: str) -> None:
    loaded = _load(folders[kind])
    tuned = with_new_head(loaded, ("a", "b"), "tuned")
    with torch.no_grad():
        nn.init.normal_(adapter_for(tuned.module).get_classifier().weight)
    for model in (_load(folders[kind]), tuned):
        path = tmp_path / f"{kind}-{model.spec.num_classes}.safetensors"
        models.save_checkpoint(path, model)
        models.check_model_source(str(path))
        back = models.load_model(str(path), "default", "cpu")
        x = _images()
        with torch.no_grad():
            torch.testing.assert_close(back.module(x), model.module(x), atol=0, rtol=0)
        for field in ("name", "class_names", "prefix_kinds", "mean", "std", "resize_size"):
            assert getattr(back.spec, field) == getattr(model.spec, field), field
        assert back.spec.has_classifier == (model.spec.num_classes > 0)


def test_checkpoint_configs_are_checked() -> None:
    good = {
        "class": "ViTModel",
        "image_size": 32,
        "num_classes": 0,
        "hf": architecture_config(
            transformers.ViTConfig(image_size=32, intermediate_size=64, **COMMON)
        ),
    }
    assert check_config("hf:x", good) == (32, 0)
    bad = [
        ({"extra": 1}, "unknown setting"),
        ({"class": "SwinModel"}, "class 'SwinModel' is not one of"),
        ({"num_classes": -1}, "num_classes must be from 0"),
        ({"hf": {**good["hf"], "hidden_size": 10**6}}, "hf.hidden_size must be from 1 to 8192"),
        ({"hf": {**good["hf"], "num_attention_heads": 3}}, "not a multiple of 3 heads"),
        ({"hf": {**good["hf"], "hidden_act": "os.system"}}, "not an activation"),
        ({"hf": {**good["hf"], "model_type": "swin"}}, "hf.model_type is 'swin'"),
        ({"hf": {**good["hf"], "auto_map": {"x": "y"}}}, "hf.auto_map must be a number"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            check_config("hf:x", {**good, **change})


def test_analysis_of_a_model_without_a_classifier(folders: dict[str, Path]) -> None:
    loaded = _load(folders["dinov2_reg"])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8))
    analysis = analyze_image(loaded, image)
    assert analysis.logits.shape == (0,) and analysis.predictions == []
    assert analysis.attention.shape == (2, 2, 19, 19)


def test_cli_analyze_end_to_end(folders: dict[str, Path], tmp_path: Path) -> None:
    from vitexplorer.cli import main

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    model = f"hf:{folders['deit']}"
    assert (
        main(["analyze", str(image), "--model", model, "--out", str(out), "--device", "cpu"]) == 0
    )
    facts = json.loads((out / "photo.json").read_text())
    assert facts["prefix_tokens"] == ["CLS", "distillation"] and facts["grid"] == [4, 4]
    assert facts["predictions"][0]["name"] in ("cat", "dog", "eel")
    assert np.load(out / "photo.attention.npy").shape == (2, 2, 18, 18)
    assert (out / "photo.cls.png").is_file()


def test_cli_analyze_of_an_image_encoder(folders: dict[str, Path], tmp_path: Path, capsys) -> None:
    """DINOv2 with registers has no classifier: analyze writes its maps and says so; relevance
    is refused in one line, rollout works."""
    from vitexplorer.cli import main

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["analyze", str(image), "--model", f"hf:{folders['dinov2_reg']}", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--method", "rollout"]) == 0
    printed = capsys.readouterr()
    assert (
        printed.out.strip()
        == "photo: no classifier (an image encoder): the attention maps are written"
    )
    assert printed.err == ""
    facts = json.loads((out / "photo.json").read_text())
    assert facts["predictions"] == []
    assert facts["prefix_tokens"] == ["CLS", "register 1", "register 2"]
    rollout = np.load(out / "photo.rollout.npy")
    assert rollout.shape == tuple(facts["grid"]) and np.isfinite(rollout).all()
    assert main([*args, "--out", str(tmp_path / "out2"), "--method", "relevance"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no classifier, so there is no class score" in err[0]


def test_a_hub_name_offline_says_no_network_at_once(no_dns) -> None:
    """Not cached and the hub unreachable: one connection attempt, not the hub client's half
    minute of retries, and a message that says there is no network."""

    lookups = no_dns
    with pytest.raises(WeightsUnavailableError) as err:
        models.load_model("hf:vitexplorer-tests/not-cached-vit", "default", "cpu")
    message = str(err.value)
    assert message.startswith("no network: the Hugging Face hub cannot be reached for hf:")
    assert "name resolution" in message and "\n" not in message
    assert 1 <= len(lookups) <= 2 and set(lookups) == {"huggingface.co"}
