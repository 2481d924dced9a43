"""Method cards: enough facts to make a figure again."""

from __future__ import annotations

import hashlib
import json
import os

import torch

from tests.conftest import TINY
from vitexplorer.core.explain.provenance import file_sha256, method_card
from vitexplorer.core.models.loading import load_model, save_checkpoint


def test_file_sha256_is_the_files_hash_and_follows_changes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    path.write_bytes(b"different, and longer than before")
    os.utime(path, ns=(1, 1))  # even with a reused timestamp the size differs
    assert file_sha256(path) == hashlib.sha256(b"different, and longer than before").hexdigest()


def test_card_of_a_checkpoint_names_its_file_hash_and_preprocessing(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, load_model("small_vit", "none", "cpu", small_config=TINY))
    model = load_model(str(path), device="cpu")
    assert model.weights_file == path.resolve()

    card = method_card(model, "rollout", {"head_fusion": "max", "discard_ratio": 0.5}, "a.png")
    text = json.dumps(card)  # JSON-ready as it is
    again = json.loads(text)
    assert again["method"] == "rollout"
    assert again["parameters"] == {"head_fusion": "max", "discard_ratio": 0.5}
    assert again["model"]["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert again["model"]["weights"]["file"] == str(path.resolve())
    assert again["model"]["grid"] == [4, 4]  # 32 px in 8 px patches
    assert again["preprocessing"]["mean"] == list(model.spec.mean)
    assert again["preprocessing"]["center_crop"] == 32
    assert again["image"] == "a.png"
    assert again["software"]["torch"] == torch.__version__


def test_card_of_random_weights_says_there_is_no_file():
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    assert model.weights_file is None
    weights = method_card(model, "attention", {})["model"]["weights"]
    assert weights["file"] is None and weights["sha256"] is None
    assert "random" in weights["note"]


def test_card_says_when_the_weights_file_has_gone(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, load_model("small_vit", "none", "cpu", small_config=TINY))
    model = load_model(str(path), device="cpu")
    path.unlink()
    weights = method_card(model, "attention", {})["model"]["weights"]
    assert weights["sha256"] is None
    assert "could not be read" in weights["note"]
