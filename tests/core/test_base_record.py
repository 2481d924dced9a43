"""A fine-tune records its base as a loadable request (family, name, weights, the file's SHA-256):
a timm base read from a weights file is found again from the checkpoint, a changed file is
refused in one line, and a checkpoint that records only the label keeps working as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import write_colour_dataset
from vitexplorer.cli import main
from vitexplorer.core.models import base_record
from vitexplorer.core.models.base_record import (
    BaseRecordError,
    BaseRequest,
    loadable_base,
    read_record,
)
from vitexplorer.core.models.checkpoint import read_safetensors_header
from vitexplorer.core.models.loading import load_model


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    """timm's test_vit at 32 px saved as a weights file, fine-tuned on the command line."""
    folder = tmp_path_factory.mktemp("base-record")
    torch.manual_seed(5)
    module = timm.create_model("test_vit", pretrained=False, img_size=32, num_classes=10).eval()
    for p in module.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    weights = folder / "bases" / "test_vit.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, weights)
    data = write_colour_dataset(folder / "colours", 6, size=32)
    out = folder / "tuned.safetensors"
    args = ["finetune", "--model", "timm:test_vit", "--weights", str(weights), "--data",
            str(data), "--out", str(out), "--device", "cpu", "--per-class", "4",
            "--test-per-class", "2", "--epochs", "1", "--batch-size", "4", "--probes", "0",
            "--no-mixed-precision"]  # fmt: skip
    assert main(args) == 0
    return out, weights, module


def _record(checkpoint: Path) -> dict:
    return read_safetensors_header(checkpoint)[1]["finetune"]


def test_the_checkpoint_records_the_request_that_loads_the_base(tuned) -> None:
    out, weights, module = tuned
    finetune = _record(out)
    assert finetune["base"].endswith(f"file {weights.name}")  # the label, as before
    recorded = read_record(finetune)
    assert recorded == BaseRequest(
        "timm", "timm:test_vit", str(weights.resolve()), base_record.file_sha256(weights)
    )
    found = loadable_base(recorded, out)
    base = load_model(found.name, found.weights, "cpu")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(base.module(images), module(images), atol=1e-6)


def test_a_base_moved_beside_the_checkpoint_is_found_there(tuned, tmp_path: Path) -> None:
    out, weights, _ = tuned
    recorded = read_record(_record(out))
    moved = tmp_path / "tuned.safetensors"
    shutil.copy(out, moved)
    missing = BaseRequest(recorded.family, recorded.name, str(tmp_path / "gone" / weights.name),
                          recorded.sha256)  # fmt: skip
    with pytest.raises(BaseRecordError) as err:
        loadable_base(missing, moved)
    assert "not there any more" in str(err.value) and "\n" not in str(err.value)
    shutil.copy(weights, tmp_path / weights.name)
    assert loadable_base(missing, moved).weights == str(tmp_path / weights.name)


def test_a_base_file_that_changed_is_refused_in_one_line(tuned, tmp_path: Path) -> None:
    out, weights, _ = tuned
    recorded = read_record(_record(out))
    changed = tmp_path / weights.name
    shutil.copy(weights, changed)
    with open(changed, "r+b") as handle:  # one byte of a tensor, not the header
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    there = BaseRequest(recorded.family, recorded.name, str(changed), recorded.sha256)
    with pytest.raises(BaseRecordError) as err:
        loadable_base(there, out)
    message = str(err.value)
    assert "\n" not in message and str(changed) in message and "SHA-256" in message
    assert "has changed since tuned.safetensors was fine-tuned from it" in message


def test_old_and_hostile_records_leave_the_label_to_decide() -> None:
    label_only = {"base": "Demo ViT (CIFAR-10), trained on CIFAR-10"}
    assert read_record(label_only) is None
    good = {"family": "timm", "name": "timm:test_vit", "weights": "default", "sha256": None}
    assert read_record({"base_request": good}) == BaseRequest("timm", "timm:test_vit", "default")
    for bad in ({**good, "name": 3}, {**good, "sha256": "abc"}, {**good, "weights": ""}, [good]):
        assert read_record({"base_request": bad}) is None


def test_random_weights_cannot_be_had_again(tmp_path: Path) -> None:
    with pytest.raises(BaseRecordError, match="random weights, which cannot be had again"):
        loadable_base(BaseRequest("timm", "timm:test_vit", "none"), tmp_path / "m.safetensors")
    by_name = base_record.base_request("timm:test_vit", "default", "timm")
    assert by_name == BaseRequest("timm", "timm:test_vit", "default", None)
    assert loadable_base(by_name, tmp_path / "m.safetensors") == by_name
