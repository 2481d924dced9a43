"""Hugging Face model folders checked before any library opens them (core/families/hf_files.py):
configs bounded before transformers reads them, links that stay inside the folder (or the hub
cache's model folder) followed, pickles refused without PyTorch's advice, processor sizes
bounded. The fuzz suite (tests/fuzz/test_fuzz_hf.py) tries the many hostile variants."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vitexplorer.core.models import loading as models  # noqa: E402
from vitexplorer.core.models.families.family import UnsupportedModel  # noqa: E402
from vitexplorer.core.models.families.hf_config import preprocessing  # noqa: E402
from vitexplorer.core.models.families.hf_files import HFFolderError, model_bytes  # noqa: E402


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf-hostile") / "vit"
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def _copy(vit: Path, tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(vit, tmp_path / name, symlinks=True))


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_huge_label_count_is_refused_before_transformers_reads_the_config(
    vit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(vit, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["id2label"], config["label2id"]
    config["num_labels"] = 10**9
    (folder / "config.json").write_text(json.dumps(config))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("transformers read a config that should have been refused")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", never)
    for call in (models.check_model_source, models.load_model):
        with pytest.raises(HFFolderError, match=r"config\.json gives num_labels 1000000000, not"):
            call(f"hf:{folder}")


def test_a_huge_resize_is_refused_before_any_image(vit: Path, tmp_path: Path) -> None:
    folder = _copy(vit, tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 10**5}}))
    with pytest.raises(HFFolderError, match=r"preprocessor_config\.json gives size\.shortest_edge"):
        models.load_model(f"hf:{folder}")
    # ConvNext's processor resizes to shortest_edge / crop_pct: bounded after that division too
    proc = {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 300},
            "crop_pct": 0.05}  # fmt: skip
    with pytest.raises(UnsupportedModel, match="resizes images to 6000 px, more than 4096"):
        preprocessing("vit", 32, proc)
    assert preprocessing("vit", 32, {**proc, "crop_pct": 0.875}).resize_size == 342


def test_links_inside_the_folder_are_followed_and_links_out_refused(
    vit: Path, tmp_path: Path
) -> None:
    expected = models.load_model(f"hf:{vit}", "default", "cpu").module
    folder = _copy(vit, tmp_path)
    (folder / "weights").mkdir()
    (folder / "model.safetensors").rename(folder / "weights" / "real.safetensors")
    (folder / "model.safetensors").symlink_to(Path("weights") / "real.safetensors")
    loaded = models.load_model(f"hf:{folder}", "default", "cpu").module
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded(x), expected(x))
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "weights" / "real.safetensors").rename(outside)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(HFFolderError, match="is a link to .*, outside the model folder"):
        models.load_model(f"hf:{folder}")


def test_a_hub_cache_snapshot_may_link_to_its_blobs(vit: Path, tmp_path: Path) -> None:
    """The hub cache keeps files in models--ORG--NAME/blobs, linked from snapshots/REVISION:
    a snapshot folder opens, its links staying inside the model's cache folder."""
    repo = tmp_path / "models--someone--tiny-vit"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for n, file in enumerate(sorted(vit.iterdir())):
        blob = repo / "blobs" / f"blob{n}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    loaded = models.load_model(f"hf:{snapshot}", "default", "cpu")
    assert loaded.spec.class_names == ("cat", "dog")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(tmp_path / "outside.json")
    (tmp_path / "outside.json").write_text((vit / "config.json").read_text())
    with pytest.raises(HFFolderError, match="config.json is a link to .*, outside"):
        models.load_model(f"hf:{snapshot}")


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_with_code_is_refused_without_torch_loads_advice(
    vit: Path, tmp_path: Path
) -> None:
    folder = _copy(vit, tmp_path)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save(
        {"w": torch.zeros(2), "hook": _System(f"touch {marker}")}, folder / "pytorch_model.bin"
    )
    for payload in (None, pickle.dumps({"w": _System(f"touch {marker}")}, protocol=2)):
        if payload is not None:
            (folder / "pytorch_model.bin").write_bytes(payload)
        with pytest.raises(HFFolderError) as refused:
            models.load_model(f"hf:{folder}")
        text = str(refused.value)
        assert "pytorch_model.bin contains Python code or objects" in text
        assert "weights_only" not in text and "\n" not in text
        assert not marker.exists()


@pytest.mark.slow
def test_good_pickled_weights_load_as_the_safetensors_do(vit: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = _copy(vit, tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = models.load_model(f"hf:{folder}", "default", "cpu").module(x)
    want = models.load_model(f"hf:{vit}", "default", "cpu").module(x)
    torch.testing.assert_close(got, want)


def test_weights_far_larger_than_the_config_are_refused(vit: Path, tmp_path: Path) -> None:
    config = json.loads((vit / "config.json").read_text())
    params = sum(
        p.numel() for p in models.load_model(f"hf:{vit}", "none", "cpu").module.parameters()
    )
    estimate = model_bytes(config)
    assert estimate is not None and 4 * params <= estimate <= 8 * params  # about the float32 size
    folder = _copy(vit, tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["padding"] = torch.zeros(5_000_000)  # 20 MB in float32, against about 0.1 MB
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(HFFolderError, match=r"holds 20\.\d MB of tensors, far more than"):
        models.load_model(f"hf:{folder}")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_check_source_refuses_a_named_pipe_without_opening_it(vit: Path, tmp_path: Path) -> None:
    folder = _copy(vit, tmp_path)
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    code = (
        "import sys; from vitexplorer.core.models import loading as models\n"
        "try:\n    models.check_model_source(sys.argv[1])\n"
        "except ValueError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, f"hf:{folder}"], capture_output=True, text=True, timeout=100
    )
    assert "config.json is a named pipe (FIFO), not a regular file" in done.stdout, done.stderr


# the fields of a config written by transformers 4 for a whole CLIP model (text tower included,
# with the generation settings configs carried then), as on the hub
_TOWER = {
    "bad_words_ids": None, "chunk_size_feed_forward": 0, "diversity_penalty": 0.0,
    "do_sample": False, "early_stopping": False, "finetuning_task": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "is_decoder": False, "is_encoder_decoder": False, "length_penalty": 1.0, "max_length": 20,
    "num_beams": 1, "output_attentions": False, "output_hidden_states": False, "prefix": None,
    "problem_type": None, "pruned_heads": {}, "return_dict": True, "temperature": 1.0,
    "tie_word_embeddings": True, "tokenizer_class": None, "top_k": 50, "top_p": 1.0,
    "torch_dtype": None, "torchscript": False, "transformers_version": "4.26.0.dev0",
    "use_bfloat16": False, "dropout": 0.0, "attention_dropout": 0.0, "hidden_act": "quick_gelu",
    "initializer_factor": 1.0, "initializer_range": 0.02, "layer_norm_eps": 1e-05,
    "num_attention_heads": 12, "num_hidden_layers": 12,
}  # fmt: skip
HUB_CLIP = {
    "architectures": ["CLIPModel"], "initializer_factor": 1.0, "logit_scale_init_value": 2.6592,
    "model_type": "clip", "projection_dim": 512, "text_config_dict": None,
    "vision_config_dict": None, "torch_dtype": "float32", "transformers_version": None,
    "text_config": {**_TOWER, "model_type": "clip_text_model", "vocab_size": 49408,
                    "max_position_embeddings": 77, "hidden_size": 512, "intermediate_size": 2048,
                    "projection_dim": 512, "bos_token_id": 0, "eos_token_id": 2,
                    "pad_token_id": 1, "num_attention_heads": 8},
    "vision_config": {**_TOWER, "model_type": "clip_vision_model", "hidden_size": 768,
                      "intermediate_size": 3072, "image_size": 224, "patch_size": 32,
                      "num_channels": 3, "projection_dim": 512},
}  # fmt: skip
HUB_PROCESSORS = [
    {"do_normalize": True, "do_resize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
     "resample": 2, "size": 224, "feature_extractor_type": "ViTFeatureExtractor"},
    {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
     "feature_extractor_type": "CLIPFeatureExtractor", "resample": 3, "size": 224,
     "image_mean": [0.48145466, 0.4578275, 0.40821073],
     "image_std": [0.26862954, 0.26130258, 0.27577711]},
    {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
     "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485] * 3,
     "image_processor_type": "BitImageProcessor", "image_std": [0.229] * 3, "resample": 3,
     "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}},
]  # fmt: skip


def test_the_configs_transformers_writes_pass_the_checks() -> None:
    """The checks refuse no config a supported class writes (its defaults, every field), nor
    a hub config of the transformers 4 era, nor the image processors' own configs."""
    from vitexplorer.core.models.families.hf_fields import config_problem, processor_problem

    configs = [
        transformers.ViTConfig(num_labels=1000), transformers.DeiTConfig(),
        transformers.Dinov2Config(), transformers.Dinov2WithRegistersConfig(),
        transformers.CLIPConfig(), transformers.CLIPVisionConfig(),
    ]  # fmt: skip
    raw = [json.loads(c.to_json_string(use_diff=False)) for c in configs] + [HUB_CLIP]
    for config in raw:
        assert config_problem(config) is None, config["model_type"]
        for key in ("vision_config", "text_config"):
            if key in config:
                assert config_problem({"model_type": key, **config[key]}) is None, key
    names = ("ViTImageProcessor", "DeiTImageProcessor", "BitImageProcessor", "CLIPImageProcessor")
    processors = [json.loads(getattr(transformers, n)().to_json_string()) for n in names]
    for settings in processors + HUB_PROCESSORS:
        assert processor_problem(settings) is None, settings
    assert config_problem({**HUB_CLIP, "projection_dim": "512"}) is not None  # and can fail


def test_a_downloaded_config_is_checked_before_transformers_reads_it(
    vit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub model not in the cache: its config.json comes down alone and is checked in the
    cache as a folder's is, before transformers reads it (no network: the hub is stood in for)."""
    import huggingface_hub

    from vitexplorer.core.models.families import hf

    snapshot = tmp_path / "models--someone--evil" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    config = json.loads((vit / "config.json").read_text())
    config.update(num_labels=10**9, id2label=None, label2id=None)
    read = []

    def download(repo: str, filename: str, **kwargs: object) -> str:
        (snapshot / filename).write_text(json.dumps(config))
        return str(snapshot / filename)

    def from_pretrained(where: str, **kwargs: object) -> object:
        read.append(kwargs.get("local_files_only"))
        raise OSError("not in the cache")  # what transformers says offline for a hub name

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hf, "probe", lambda repo, filename: None)  # the hub "answers"
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    with pytest.raises(HFFolderError, match=r"hf:someone/evil: config\.json gives num_labels"):
        models.load_model("hf:someone/evil")
    assert read == [True]  # the cache was asked; the downloaded file was never read by it
    config.update(num_labels=2, model_type=["vit"])
    with pytest.raises(HFFolderError, match="config.json gives model_type as a list"):
        models.load_model("hf:someone/evil")
