"""Model descriptions, weights files, checkpoints and the default-weights download path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import get_model_weights

from tests.conftest import TINY, TV_DOWNLOAD
from vitexplorer.core.explain.analysis import analyze_image, top_predictions
from vitexplorer.core.models import loading as models
from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.download import (
    DownloadCancelled,
    WeightsDownload,
    WeightsUnavailableError,
    download_weights,
)
from vitexplorer.core.models.loading import load_model, save_checkpoint


@pytest.mark.slow
def test_torchvision_spec_comes_from_the_weights_metadata() -> None:
    spec = load_model("vit_b_32", "none", "cpu").spec
    meta = get_model_weights("vit_b_32").DEFAULT
    assert (spec.image_size, spec.patch_size, spec.grid) == (224, 32, (7, 7))
    assert (spec.num_layers, spec.num_heads, spec.num_prefix_tokens, spec.num_tokens) == (
        12,
        12,
        1,
        50,
    )
    assert spec.class_names == tuple(meta.meta["categories"])
    assert spec.mean == tuple(meta.transforms().mean) and spec.resize_size == 256
    assert spec.weights == "random initialisation"


def test_small_vit_spec() -> None:
    spec = load_model("small_vit", "none", "cpu", small_config=TINY).spec
    assert (spec.grid, spec.num_tokens, spec.num_layers, spec.num_heads) == ((4, 4), 17, 2, 2)
    assert spec.class_names == tuple(f"class {i}" for i in range(10))


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'vit_x'"):
        load_model("vit_x", "none", "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads(vit_b_32_state, tmp_path: Path, suffix: str) -> None:
    _, state = vit_b_32_state
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)  # nested, as training scripts often save
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = load_model("vit_b_32", str(path), "cpu")
    loaded = model.module.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.spec.weights == f"file {path.name}"


def test_weights_of_another_architecture_name_the_mismatch(vit_b_32_state) -> None:
    path, _ = vit_b_32_state
    with pytest.raises(WeightsFileError) as err:
        load_model("vit_b_16", str(path), "cpu")
    message = str(err.value)
    assert "do not fit ViT-B/16" in message and "conv_proj.weight" in message


@pytest.mark.slow
def test_missing_and_unexpected_keys_are_listed(vit_b_32_state, tmp_path: Path) -> None:
    _, state = vit_b_32_state
    broken = dict(state)
    del broken["encoder.ln.weight"]
    broken["extra.bias"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(WeightsFileError, match=r"1 missing key.*encoder\.ln\.weight.*extra\.bias"):
        load_model("vit_b_32", str(path), "cpu")


class _Payload:
    def __reduce__(self):  # code that would run if the pickle were trusted
        return (Path("/tmp/vitexplorer-pwned").touch, ())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(WeightsFileError, match="cannot be loaded safely|not a PyTorch"):
        load_model("vit_b_32", str(path), "cpu")
    assert not Path("/tmp/vitexplorer-pwned").exists()


def test_not_a_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("hello")
    with pytest.raises(WeightsFileError, match="not a valid safetensors file"):
        load_model("vit_b_32", str(path), "cpu")


def test_checkpoint_round_trip_gives_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model)
    again = load_model(str(path), device="cpu")
    assert again.spec.grid == (4, 4) and again.spec.num_heads == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.module(x), again.module(x))
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]  # no temp file left


def test_plain_state_dict_as_model_explains_what_to_do(vit_b_32_state) -> None:
    path, _ = vit_b_32_state
    # the layout is recognised from the keys and shapes, and the way to open it said
    with pytest.raises(WeightsFileError, match="looks like a torchvision ViT .*--model vit_b_32"):
        load_model(str(path), device="cpu")


def _download_for(path: Path, cache: Path) -> WeightsDownload:
    return WeightsDownload("vit_b_32", path.as_uri(), cache / path.name, 0.3, "test weights")


@pytest.mark.slow
def test_default_weights_download_into_cache(vit_b_32_state, tmp_path: Path, monkeypatch) -> None:
    source, state = vit_b_32_state
    download = _download_for(source, tmp_path / "hub" / "checkpoints")
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    seen: list[tuple[int, int]] = []
    model = load_model("vit_b_32", "default", "cpu", progress=lambda d, t: seen.append((d, t)))
    assert download.cached and seen[-1][0] == seen[-1][1] == source.stat().st_size
    assert torch.equal(model.module.state_dict()["heads.head.weight"], state["heads.head.weight"])
    # the second time comes from the cache: no download, no progress
    seen.clear()
    load_model("vit_b_32", "default", "cpu", progress=lambda d, t: seen.append((d, t)))
    assert seen == []


def test_no_network_points_to_the_alternatives(tmp_path: Path, monkeypatch) -> None:
    download = WeightsDownload(
        "vit_b_32", "http://127.0.0.1:9/vit_b_32-d86f8d99.pth", tmp_path / "x.pth", 336.6, "w"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    with pytest.raises(WeightsUnavailableError, match="local weights file.*--weights none"):
        load_model("vit_b_32", "default", "cpu")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WeightsUnavailableError, match="not downloaded"):
        load_model("vit_b_32", "default", "cpu", allow_download=False)


@pytest.mark.slow
def test_corrupt_download_is_rejected_and_removed(vit_b_32_state, tmp_path: Path) -> None:
    source, _ = vit_b_32_state
    wrong = tmp_path / "vit_b_32-00000000.pth"
    wrong.write_bytes(source.read_bytes())
    cache = tmp_path / "cache"
    with pytest.raises(WeightsUnavailableError, match="checksum"):
        download_weights(_download_for(wrong, cache))
    assert list(cache.iterdir()) == []


def test_cancelled_download_leaves_nothing(vit_b_32_state, tmp_path: Path) -> None:
    source, _ = vit_b_32_state
    cache = tmp_path / "cache"
    with pytest.raises(DownloadCancelled):
        download_weights(_download_for(source, cache), cancelled=lambda: True)
    assert list(cache.iterdir()) == []


def test_top_predictions_order_and_ties() -> None:
    probs = np.array([0.1, 0.3, 0.05, 0.3, 0.25], dtype=np.float32)
    names = ("a", "b", "c", "d", "e")
    top = top_predictions(probs, names, k=3)
    assert [(p.index, p.name) for p in top] == [(1, "b"), (3, "d"), (4, "e")]
    assert top[0].probability == pytest.approx(0.3)


@pytest.mark.slow
def test_analyze_image_matches_plain_forward() -> None:
    from PIL import Image

    from vitexplorer.core.models.preprocessing import preprocess

    torch.manual_seed(5)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    result = analyze_image(model, image)
    with torch.inference_mode():
        logits = model.module(preprocess(image, model.spec).unsqueeze(0))[0]
    np.testing.assert_allclose(result.logits, logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.probabilities.sum(), 1.0, atol=1e-6)
    assert result.predictions[0].index == int(logits.argmax())
    assert result.attention.shape == (2, 2, 17, 17)
    assert result.display.shape[2] == 3 and result.display.dtype == np.uint8


def test_checkpoint_with_broken_metadata_is_a_clear_error(tmp_path: Path) -> None:
    from vitexplorer.core.models.checkpoint import save_weights

    path = tmp_path / "broken.safetensors"
    save_weights(path, {"w": torch.zeros(2)}, {"architecture": "small_vit"})  # no config
    with pytest.raises(WeightsFileError, match="invalid vitexplorer metadata"):
        load_model(str(path), device="cpu")


@pytest.mark.parametrize("device", ["gpu0", "cuda:7"])
def test_bad_device_is_a_value_error(device: str) -> None:
    with pytest.raises(ValueError, match="device|CUDA|cuda"):
        models.resolve_device(device)


def test_unwritable_cache_is_a_clear_error(vit_b_32_state, tmp_path: Path) -> None:
    source, _ = vit_b_32_state
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WeightsUnavailableError, match="cannot write to the weights cache"):
        download_weights(_download_for(source, blocker / "checkpoints"))
