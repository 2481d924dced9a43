"""Model families as typed boundaries: one table finds every family, each family is a class
with its adapter, no family imports the loader above it, a loaded model carries the adapter its
family gave it, and random weights are a fact of the spec rather than its label's words."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY
from vitexplorer.core.explain.analysis import analyze_images
from vitexplorer.core.explain.relevance import capture_with_gradients
from vitexplorer.core.models import loading
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.families import registry
from vitexplorer.core.models.families.family import Family, FamilyInfo
from vitexplorer.core.models.families.small_vit import SmallViTAdapter
from vitexplorer.core.models.spec import MODEL_NAMES, RANDOM
from vitexplorer.core.training.finetune_model import with_new_head

FAMILIES_DIR = Path(loading.__file__).parent / "families"


def test_the_table_finds_every_family_by_its_names_and_prefix() -> None:
    assert [f.name for f in registry.FAMILIES] == ["small_vit", "torchvision", "timm", "hf"]
    for name in MODEL_NAMES:  # every built-in name has exactly one family
        assert sum(name in f.names for f in registry.FAMILIES) == 1
    assert registry.info_for("vit_l_32") is registry.family_named("torchvision")
    assert registry.info_for("small_vit") is registry.family_named("small_vit")
    assert registry.info_for("timm:deit_tiny_patch16_224") is registry.family_named("timm")
    assert registry.info_for("HF:/models/vit") is registry.family_named("hf")
    assert registry.info_for("demo") is None and registry.info_for("vit_b_99") is None
    assert registry.info_for("C:\\weights\\model.pth") is None  # a Windows path


@pytest.mark.parametrize("info", registry.FAMILIES, ids=lambda f: f.name)
def test_each_family_is_a_class_with_its_entry_and_its_adapter(info: FamilyInfo) -> None:
    if not info.installed:
        pytest.skip(f"{info.library} is not installed")
    family = registry.implementation(info)
    assert isinstance(family, Family)  # the protocol's members, checked at run time too
    assert type(family).info is info  # the class says which entry it is
    assert family.adapter_type.family == info.name
    assert registry.implementation(info) is family  # imported and made once
    # the table's torch-free fact agrees with the class: only these offer a download
    assert info.downloads == (type(family).default_download is not Family.default_download)


def test_a_missing_library_is_refused_naming_the_extra(monkeypatch) -> None:
    from vitexplorer.core.models.families import family as family_module

    monkeypatch.setattr(family_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError) as err:
        registry.family_for("hf:google/vit-base-patch16-224")
    assert str(err.value) == (
        'hf models need the transformers package: pip install "vitexplorer[hf]"'
    )
    assert registry.family_for("small_vit") is not None  # vitexplorer's own needs nothing


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(FAMILIES_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_family_file_imports_the_loader_above_it(path: Path) -> None:
    imported = _imports(path)
    assert "vitexplorer.core.models.loading" not in imported, path.name
    assert not any(name.startswith("vitexplorer.gui") for name in imported), path.name


@pytest.mark.parametrize(
    "module",
    ["vitexplorer.core.models.families.registry", "vitexplorer.core.models.families"],
)
def test_the_table_needs_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def _image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_a_loaded_model_carries_its_adapter_and_capture_never_decides_again(
    monkeypatch,
) -> None:
    torch.manual_seed(0)
    model = loading.load_model("small_vit", "none", "cpu", small_config=TINY)
    assert type(model.adapter) is SmallViTAdapter and model.adapter.module is model.module
    batch = torch.rand(1, 3, 32, 32)
    _, expected = forward_with_attention(model.module, batch)  # a bare module: found by type

    def decided_again(module):
        raise AssertionError("the family was decided again after the load")

    monkeypatch.setattr(registry, "adapter_for", decided_again)
    _, attention = forward_with_attention(model.adapter, batch)
    torch.testing.assert_close(attention, expected)
    assert attention.shape == (1, 2, 2, 17, 17)
    (analysis,) = analyze_images(model, [_image()])
    assert analysis.attention.shape == (2, 2, 17, 17)
    np.testing.assert_allclose(analysis.attention.sum(-1), 1.0, atol=1e-5)
    logits, maps, gradients = capture_with_gradients(model, batch, target=3)
    assert maps.shape == gradients.shape == (2, 2, 17, 17) and logits.shape == (10,)
    assert np.abs(gradients).sum() > 0  # the head is random: the gradient reaches the maps


def test_a_loaded_model_made_by_hand_finds_its_family_once(monkeypatch) -> None:
    from vitexplorer.core.models.vit import SmallViT

    module = SmallViT(TINY).eval()
    spec = loading.load_model("small_vit", "none", "cpu", small_config=TINY).spec
    model = loading.LoadedModel(module, spec, torch.device("cpu"))
    calls: list[object] = []
    real = registry.adapter_for

    def counted(found):
        calls.append(found)
        return real(found)

    monkeypatch.setattr(registry, "adapter_for", counted)
    first = model.adapter
    assert model.adapter is first and calls == [module]


def test_random_weights_are_a_fact_with_the_same_label(tmp_path: Path) -> None:
    torch.manual_seed(0)
    random = loading.load_model("small_vit", "none", "cpu", small_config=TINY)
    assert random.spec.random_weights and random.spec.weights == RANDOM
    path = tmp_path / "tiny.safetensors"
    loading.save_checkpoint(path, random)
    trained = loading.load_model(str(path), "default", "cpu")
    assert not trained.spec.random_weights and trained.spec.weights == f"file {path.name}"
    shaped = loading.load_model(str(path), "none", "cpu")  # the checkpoint's shape, untrained
    assert shaped.spec.random_weights and shaped.spec.weights == RANDOM
    tuned = with_new_head(random, ("cat", "dog"), "fine-tuned on pets")
    assert not tuned.spec.random_weights and tuned.spec.weights == "fine-tuned on pets"
    assert type(tuned.adapter) is SmallViTAdapter
    assert tuned.adapter.get_classifier().out_features == 2
