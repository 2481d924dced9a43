"""The names the app's timm and Hugging Face lists offer: timm's registry filtered to the ViTs
vitexplorer loads, and the ViTs in a Hugging Face hub cache (a real cache layout built here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import tiny_hf_config
from vitexplorer.core.models.names import cached_hf_names, timm_vit_names


@pytest.mark.slow
def test_timm_names_are_its_vits_and_deits_only() -> None:
    timm = pytest.importorskip("timm")
    names = timm_vit_names()
    for name in (
        "vit_base_patch16_224",
        "deit_small_distilled_patch16_224",
        "deit3_base_patch16_224",
    ):
        assert name in names
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(name in timm.list_models() for name in names)
    assert not [n for n in names if not n.startswith(("vit_", "deit"))]


def _cache_repo(hub: Path, repo_id: str, config: dict | None, files: dict[str, str]) -> None:
    """A repo as huggingface_hub's download leaves it: blobs, a snapshot of links, refs/main."""
    import json

    owner, name = repo_id.split("/")
    repo = hub / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / "cafe0123"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    if config is not None:
        files = {**files, "config.json": json.dumps(config)}
    for file_name, text in files.items():
        blob = repo / "blobs" / f"{abs(hash((repo_id, file_name)))}"
        blob.write_text(text)
        (snapshot / file_name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("cafe0123")


def test_cached_hugging_face_names_are_the_loadable_vits(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    hub = tmp_path / "hub"
    _cache_repo(hub, "a/vit", tiny_hf_config().to_dict(), {})
    _cache_repo(hub, "b/dino", tiny_hf_config("Dinov2Config").to_dict(), {})
    _cache_repo(hub, "c/bert", {"model_type": "bert", "architectures": ["BertModel"]}, {})
    _cache_repo(hub, "d/swin", {"model_type": "swin", "architectures": ["SwinModel"]}, {})
    _cache_repo(hub, "e/noconfig", None, {"README.md": "no config here"})
    _cache_repo(hub, "f/broken", None, {"config.json": "{not json"})
    assert cached_hf_names(hub) == ["a/vit", "b/dino"]


@pytest.mark.timeout(120)
def test_a_named_pipe_in_the_cache_is_skipped_not_read(tmp_path: Path) -> None:
    """A config.json that is a FIFO would block the listing (and the window's model menu) for
    good if it were opened; it is skipped, and the good repository is still listed."""
    pytest.importorskip("transformers")
    hub = tmp_path / "hub"
    _cache_repo(hub, "a/vit", tiny_hf_config().to_dict(), {})
    _cache_repo(hub, "g/pipe", None, {"config.json": "placeholder"})
    blob = next((hub / "models--g--pipe" / "blobs").iterdir())
    blob.unlink()
    os.mkfifo(blob)
    assert cached_hf_names(hub) == ["a/vit"]
    assert stat.S_ISFIFO(os.lstat(blob).st_mode)


def test_no_cache_gives_no_names(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    assert cached_hf_names(tmp_path / "absent") == []
