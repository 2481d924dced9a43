"""The demo model in the box: ``--model demo`` names the packaged checkpoint. The tests put a
checkpoint they make where the package keeps it (``spec.demo_path``), so they hold whether or
not this checkout carries the trained file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY
from vitexplorer.cli import main
from vitexplorer.core.models import spec as specs
from vitexplorer.core.models.loading import check_model_source, load_model, save_checkpoint


@pytest.fixture
def demo(tmp_path: Path, monkeypatch) -> Path:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / specs.DEMO_FILE
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(10)]})
    monkeypatch.setattr(specs, "demo_path", lambda: path)
    return path


def test_demo_names_the_packaged_checkpoint(demo: Path) -> None:
    loaded = load_model("demo", device="cpu")
    direct = load_model(str(demo), device="cpu")
    assert loaded.spec.display_name == "Demo ViT (CIFAR-10)"
    assert loaded.spec.name == "small_vit" and loaded.weights_file == demo.resolve()
    assert loaded.spec.class_names == direct.spec.class_names
    image = torch.rand(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.module(image), direct.module(image))
    check_model_source("demo")  # nothing to refuse


def test_a_missing_demo_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / specs.DEMO_FILE
    monkeypatch.setattr(specs, "demo_path", lambda: missing)
    with pytest.raises(ValueError, match="the demo model is not in this installation"):
        load_model("demo", device="cpu")
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(photo)
    assert main(["analyze", str(photo), "--model", "demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "demo model is not in this installation" in err[0]


def test_analyze_with_the_demo_offline(demo: Path, tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(photo)
    assert main(["analyze", str(photo), "--model", "demo", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "p.json").is_file()
