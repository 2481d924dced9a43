"""timm models that must be refused in one line before any work: architectures whose weights
would not fit the free memory (estimated on the meta device), pretrained weights asked for
without a network (one connection attempt, no retries), and every model problem an exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

timm = pytest.importorskip("timm")

from vitexplorer.cli import main  # noqa: E402
from vitexplorer.core.models import loading as models  # noqa: E402
from vitexplorer.core.models.checkpoint import WeightsFileError  # noqa: E402
from vitexplorer.core.models.download import DownloadError, WeightsUnavailableError  # noqa: E402
from vitexplorer.core.models.families import timm_weights  # noqa: E402
from vitexplorer.core.training import estimate  # noqa: E402

GIANT = "timm:vit_giant_patch14_dinov2"  # 1,136,479,232 parameters: 4.5 GB in float32
GIANT_PARAMETERS = 1_136_479_232


def _fake_free(monkeypatch: pytest.MonkeyPatch, free: int | None) -> None:
    monkeypatch.setattr(estimate, "free_ram", lambda: free)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names timm builds with real memory (not on the meta device), recorded."""
    real = timm.create_model
    seen: list[str] = []

    def create_model(name: str, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            seen.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    return seen


@pytest.mark.slow
def test_module_bytes_counts_each_tensor_once_in_its_dtype() -> None:
    layer = nn.Linear(10, 4)  # 44 float32 parameters
    module = nn.Sequential(layer, layer, nn.BatchNorm1d(4).half())  # shared: counted once
    # BatchNorm1d(4) in float16: weight, bias, running mean and variance (4 each, 2 bytes) and
    # num_batches_tracked (one int64)
    assert estimate.module_bytes(module) == 44 * 4 + 16 * 2 + 8
    with torch.device("meta"):
        skeleton = timm.create_model(GIANT.removeprefix("timm:"))
    assert estimate.module_bytes(skeleton) >= GIANT_PARAMETERS * 4


@pytest.mark.slow
def test_a_huge_random_build_is_refused_before_it_is_built(monkeypatch, builds) -> None:
    _fake_free(monkeypatch, 10**9)
    for attempt in (
        lambda: models.check_model_source(GIANT, "none"),
        lambda: models.load_model(GIANT, "none", "cpu"),
    ):
        with pytest.raises(estimate.ModelTooLargeError) as err:
            attempt()
        message = str(err.value)
        assert message.startswith(f"{GIANT} has {GIANT_PARAMETERS:,} parameters, about 4.5 GB ")
        assert "more than the 1.0 GB of memory free: choose a smaller model" in message
        assert "\n" not in message
    assert builds == []  # only ever on the meta device
    # a small one still loads: 2.0 GB free is plenty for test_vit's weights
    _fake_free(monkeypatch, 2 * 10**9)
    loaded = models.load_model("timm:test_vit", "none", "cpu")
    assert builds == ["test_vit"] and loaded.spec.num_layers == 6


def test_the_guard_lets_a_build_through_when_the_free_memory_is_unknown(monkeypatch) -> None:
    _fake_free(monkeypatch, None)
    models.check_model_source(GIANT, "none")  # nothing to hold it against: not refused


def test_a_huge_pretrained_model_is_refused_before_any_download(monkeypatch, builds) -> None:
    import huggingface_hub

    calls: list[str] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append("get"))
    monkeypatch.setattr(
        huggingface_hub, "get_hf_file_metadata", lambda *a, **k: calls.append("probe")
    )
    _fake_free(monkeypatch, 3 * 10**9)
    with pytest.raises(estimate.ModelTooLargeError, match="more than the 3.0 GB of memory"):
        models.load_model(GIANT, "default", "cpu")
    assert calls == [] and builds == []


def test_the_gpu_refusal_names_the_gpu_and_the_cpu_way_out(monkeypatch) -> None:
    monkeypatch.setattr(estimate, "free_bytes", lambda device: 25 * 10**6)
    module = nn.Linear(1000, 10_000)  # 10,010,000 parameters: 40 MB
    message = estimate.memory_refusal("timm:big", module, torch.device("cuda", 1))
    assert message == (
        "timm:big has 10,010,000 parameters, about 40 MB of weights, more than the 25 MB "
        "free on the GPU (cuda:1): choose a smaller model, free the GPU or use --device cpu"
    )
    monkeypatch.setattr(estimate, "free_bytes", lambda device: 41 * 10**6)
    assert estimate.memory_refusal("timm:big", module, torch.device("cuda", 1)) is None


def test_the_huge_build_on_the_command_line_is_exit_2_in_one_line(
    monkeypatch, tmp_path: Path, capsys, builds
) -> None:
    _fake_free(monkeypatch, 10**9)
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    out = tmp_path / "out"
    status = main(["analyze", str(image), "--model", GIANT, "--weights", "none", "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and builds == []
    assert lines[0].startswith(f"vitexplorer: {GIANT} has {GIANT_PARAMETERS:,} parameters")
    assert not out.exists() or not any(out.iterdir())


# --- no network ------------------------------------------------------------------------------


def _connect_error() -> BaseException:
    """The error the hub client raises when the host cannot be reached (its HTTP client's)."""
    from vitexplorer.core.models.families.hub import _connect_errors

    kind = next(k for k in _connect_errors() if k.__name__ == "ConnectError")
    return kind("[Errno -2] Name or service not known")


def test_offline_the_probe_fails_once_and_the_message_names_the_cache(
    monkeypatch, tmp_path: Path
) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    probes: list[str] = []
    downloads: list[str] = []

    def probe(url, **kwargs):
        probes.append(url)
        raise _connect_error()

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", probe)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: downloads.append(a))
    with pytest.raises(WeightsUnavailableError) as err:
        models.load_model("timm:test_vit", "default", "cpu")
    folder = tmp_path / "hub" / "models--timm--test_vit.r160_in1k"
    assert str(err.value) == (
        "no network (the Hugging Face hub cannot be reached: [Errno -2] Name or service not "
        f"known) and timm's test_vit.r160_in1k weights are not in the cache ({folder}); "
        "connect, or give a weights file in timm's layout with --weights FILE (or --weights "
        "none for random weights)"
    )
    assert len(probes) == 1 and downloads == []  # one attempt, no retry loop, no download
    cause = err.value.__cause__
    assert isinstance(cause, DownloadError) and cause.kind == "network"


def test_a_connection_lost_during_the_download_is_said_at_once(monkeypatch) -> None:
    """The probe answered, then the hub client's download lost the connection: its
    LocalEntryNotFoundError (caused by the connection error) is one 'no network' line, raised
    after one call, not after a retry per file."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list[str] = []

    def download(repo, filename, **kwargs):
        calls.append(filename)
        raise LocalEntryNotFoundError("cannot find the requested files") from _connect_error()

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(WeightsUnavailableError, match=r"^no network \(the Hugging Face"):
        models.load_model("timm:test_vit", "default", "cpu")
    assert calls == ["model.safetensors"]


def test_a_plain_url_source_offline_names_its_server_and_the_torch_hub_cache(
    monkeypatch, tmp_path: Path
) -> None:
    def offline(*args, **kwargs):
        raise DownloadError("[Errno -2] Name or service not known", "network")

    from vitexplorer.core.models import download

    monkeypatch.setattr(download, "download_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    source = timm_weights.Source("old_vit.in1k", None, None, (), "https://example.org/w/v.pth")
    with pytest.raises(WeightsUnavailableError) as err:
        source.download(None, None)
    message = str(err.value)
    assert message.startswith("no network (example.org cannot be reached: [Errno -2] Name")
    assert f"not in the cache ({tmp_path / 'checkpoints' / 'v.pth'})" in message


# --- model problems are exit 2 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("timm:nosuchmodel", "timm has no model 'nosuchmodel'"),
        ("timm:test_vit..x", "no pretrained tag '.x'; its tags are r160_in1k"),
        ("timm:vit_base_patch16_gap_224", "timm has no pretrained weights for vit_base_patch"),
        ("timm:convnext_tiny", "timm:convnext_tiny (ConvNeXt): it is not a Vision Transformer"),
        ("timm:" + "x" * 3000, "(3,000 characters)"),
    ],
)
def test_a_bad_name_with_the_default_weights_is_exit_2(
    name: str, words: str, tmp_path: Path, capsys
) -> None:
    """The default weights are described before the load (for the download line): a name that
    cannot be loaded was a traceback there (exit 1); now it is the load's one line, exit 2."""
    assert models.default_download(name) is None
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    status = main(["analyze", str(image), "--model", name, "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and words in lines[0] and len(lines[0]) < 300


def test_finetune_checks_a_name_without_pretrained_weights_up_front(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()  # a folder, empty: the model is refused before the dataset is read
    args = ["finetune", "--model", "timm:vit_base_patch16_gap_224", "--data", str(data)]
    status = main([*args, "--out", str(tmp_path / "m.safetensors")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and lines == [
        "vitexplorer: timm has no pretrained weights for vit_base_patch16_gap_224; use "
        "--weights none or a weights file"
    ]


def test_integer_weights_are_named_not_a_raw_load_error(tmp_path: Path) -> None:
    state = timm.create_model("test_vit", pretrained=False, img_size=32).state_dict()
    path = tmp_path / "ints.safetensors"
    save_file({k: (100 * v).to(torch.int32).contiguous() for k, v in state.items()}, path)
    with pytest.raises(WeightsFileError) as err:
        models.load_model("timm:test_vit", str(path), "cpu")
    assert str(err.value) == (
        "ints.safetensors: its blocks.0.attn.proj.bias holds int32 numbers where timm's "
        "test_vit has floating-point weights; it is not a weights file of this model"
    )
