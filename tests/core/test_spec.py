"""The torch-free model description: names, families, prefix tokens, rectangular grids."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from tests.conftest import tiny_spec
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.families.registry import LIBRARY_FAMILIES, library_family
from vitexplorer.core.models.spec import MODEL_NAMES


def test_prefix_tokens_are_named_and_labelled() -> None:
    spec = replace(tiny_spec(), num_prefix_tokens=6, prefix_kinds=("cls", "dist", *["reg"] * 4))
    assert spec.prefix_names() == (
        "CLS",
        "distillation",
        "register 1",
        "register 2",
        "register 3",
        "register 4",
    )
    assert spec.token_label(0) == "the CLS token"
    assert spec.token_label(1) == "the distillation token"
    assert spec.token_label(3) == "register 2"
    # rows and columns counted from 1, as everywhere people read them
    assert spec.token_label(6) == "patch row 1, col 1"
    assert spec.token_label(6 + 4 + 3) == "patch row 2, col 4"  # a 4x4 grid, row-major
    assert spec.num_tokens == 6 + 16
    # the JSON names them as the README and the app do
    assert spec.describe()["prefix_tokens"] == [
        "CLS",
        "distillation",
        "register 1",
        "register 2",
        "register 3",
        "register 4",
    ]
    # without kinds said, every prefix token is a class token (the models before families)
    assert tiny_spec().prefix_labels == ("cls",)


def test_a_model_without_prefix_tokens_starts_on_the_centre_patch() -> None:
    spec = replace(tiny_spec(), num_prefix_tokens=0, grid_shape=(3, 5))
    assert spec.grid == (3, 5) and spec.num_tokens == 15
    assert spec.default_token() == 1 * 5 + 2
    assert spec.token_label(spec.default_token()) == "patch row 2, col 3"  # the middle of 3x5
    selection = Selection(layer=0, head=None, token=9)
    selection.fit(spec)
    assert selection.token == 7
    selection.fit(tiny_spec())
    assert selection.token == 0  # back to CLS
    described = spec.describe()
    assert described["grid"] == [3, 5] and described["input_size"] == [24, 40]


def test_family_names() -> None:
    assert library_family("timm:vit_tiny_patch16_224") is LIBRARY_FAMILIES["timm"]
    assert library_family("hf:/models/vit") is LIBRARY_FAMILIES["hf"]
    assert library_family("vit_b_16") is None
    assert library_family("C:\\\\weights\\\\model.pth") is None  # a Windows path, not a family
    assert "small_vit" in MODEL_NAMES
    assert LIBRARY_FAMILIES["timm"].missing_message() == (
        'timm models need the timm package: pip install "vitexplorer[timm]"'
    )


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path) -> None:
    from vitexplorer.cli import main
    from vitexplorer.core.models.families import family as family_module

    monkeypatch.setattr(family_module.importlib.util, "find_spec", lambda name: None)
    out = str(tmp_path / "out")
    status = main(["analyze", "x.png", "--model", "timm:vit_tiny_patch16_224", "--out", out])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err == 'vitexplorer: timm models need the timm package: pip install "vitexplorer[timm]"'


@pytest.mark.parametrize("module", ["vitexplorer.core.models.spec", "vitexplorer.cli"])
def test_the_description_needs_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
