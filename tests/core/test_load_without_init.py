"""Issue 14: loading a checkpoint builds the model on the meta device and takes the file's
tensors, so no random initialisation is computed only to be overwritten; the model is the same."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tests.conftest import TINY
from vitexplorer.core.models import load_model, save_checkpoint


def test_a_checkpoint_loads_without_initialising_and_gives_the_same_logits(
    tmp_path: Path,
    monkeypatch,  # noqa: ANN001
) -> None:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    calls = []
    original = torch.nn.init.trunc_normal_
    monkeypatch.setattr(
        torch.nn.init, "trunc_normal_", lambda t, *a, **k: calls.append(t) or original(t, *a, **k)
    )
    again = load_model(str(path), device="cpu")
    assert [t for t in calls if not t.is_meta] == []  # initialised nothing real
    tensors = [*again.module.parameters(), *again.module.buffers()]
    assert not any(t.is_meta for t in tensors) and all(
        p.requires_grad for p in again.module.parameters()
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.module(x), again.module(x))  # bit for bit


def test_a_float16_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    halved = {k: v.half() for k, v in load_file(path).items()}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(halved, str(path), metadata=metadata)
    again = load_model(str(path), device="cpu")
    assert all(p.dtype == torch.float32 for p in again.module.parameters())
    expected = {k: v.half().float() for k, v in model.module.state_dict().items()}
    for key, value in again.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
