"""Dropout and stochastic depth in the small ViT: identity in eval, stochastic in training,
absent from older checkpoints' metadata without harm."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.checkpoint import save_weights
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.vit import DropPath, SmallViT, SmallViTConfig


def _pair() -> tuple[SmallViT, SmallViT]:
    plain = SmallViT(TINY)
    regular = SmallViT(replace(TINY, dropout=0.3, drop_path=0.5))
    regular.load_state_dict(plain.state_dict())  # same weights: they add none
    return plain, regular


def test_dropout_and_drop_path_are_identity_in_eval() -> None:
    torch.manual_seed(0)
    plain, regular = _pair()
    x = torch.randn(3, 3, 32, 32)
    plain.eval(), regular.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), regular(x))


def test_dropout_and_drop_path_act_in_training() -> None:
    torch.manual_seed(0)
    plain, regular = _pair()
    x = torch.randn(3, 3, 32, 32)
    plain.train(), regular.train()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x))  # no randomness without them
        assert not torch.equal(regular(x), plain(x))


def test_drop_path_rises_linearly_with_depth() -> None:
    model = SmallViT(replace(TINY, depth=5, drop_path=0.2))
    rates = [block.drop_path.rate for block in model.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    path = DropPath(0.5).train()
    torch.manual_seed(1)
    out = path(torch.ones(1000, 4))
    kept = out[:, 0] != 0
    assert set(out.unique().tolist()) == {0.0, 2.0}  # whole samples, kept ones scaled
    assert (out[kept] == 2.0).all() and 400 < int(kept.sum()) < 600


def test_explicit_attention_path_matches_in_eval() -> None:
    torch.manual_seed(0)
    plain, regular = _pair()
    x = torch.randn(2, 3, 32, 32)
    plain.eval(), regular.eval()
    logits, maps = forward_with_attention(regular, x)
    again, maps_plain = forward_with_attention(plain, x)
    assert torch.allclose(logits, again) and torch.allclose(maps, maps_plain)
    with torch.no_grad():
        assert torch.allclose(logits, regular(x), atol=1e-5)


@pytest.mark.parametrize("field", ["dropout", "drop_path"])
@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan"), True, "0.1"])
def test_bad_rates_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SmallViTConfig(**{field: value})


def test_checkpoint_records_the_rates_and_loads_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = replace(TINY, dropout=0.1, drop_path=0.2)
    model = load_model("small_vit", "none", "cpu", small_config=config)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    again = load_model(str(path), device="cpu")
    assert again.module.config == config
    assert again.spec.config["dropout"] == 0.1 and again.spec.config["drop_path"] == 0.2


def test_old_checkpoint_without_the_new_fields_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    old_config = {k: v for k, v in TINY.to_dict().items() if k not in ("dropout", "drop_path")}
    meta = {
        "format": 1,
        "architecture": "small_vit",
        "config": old_config,
        "class_names": list(model.spec.class_names),
        "mean": list(model.spec.mean),
        "std": list(model.spec.std),
        "resize_size": model.spec.resize_size,
        "interpolation": model.spec.interpolation,
    }
    path = tmp_path / "old.safetensors"
    save_weights(path, model.module.state_dict(), meta)
    again = load_model(str(path), device="cpu")
    assert again.module.config.dropout == 0.0 and again.module.config.drop_path == 0.0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.module.eval()(x), again.module(x))
