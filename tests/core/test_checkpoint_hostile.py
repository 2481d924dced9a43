"""Hostile weights files: lying metadata, damaged files, pickles with code, things that are not
files. Each is refused before any model is built, with one short line, and through the command
line with exit status 2, one line on stderr and no traceback.

``HOSTILE_CHECKPOINTS`` lists the cases as ``(case_id, make)`` pairs, ``make(tmp_path) -> Path``,
so that other suites (a fuzzer, the GUI's) can reuse the generators. A case is passed as
``--model PATH`` unless :data:`WEIGHTS_FOR` names the architecture it is the weights of.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import get_model

from tests.conftest import TINY
from vitexplorer.cli import main
from vitexplorer.core.models import loading as models
from vitexplorer.core.models.checkpoint import METADATA_KEY, WeightsFileError, read_weights
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.metadata import check_checkpoint_metadata
from vitexplorer.core.models.vit import SmallViT

MARKER = "pwned"  # the file a pickle's code would create in the case's folder


# ---------------------------------------------------------------------------------------------
# The generators


def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return load_model("small_vit", "none", "cpu", small_config=TINY).module.state_dict()


def _tiny_meta() -> dict[str, Any]:
    """The metadata ``save_checkpoint`` writes for the tiny small ViT, with a fine-tune record."""
    return {
        "format": 1,
        "architecture": "small_vit",
        "config": TINY.to_dict(),
        "class_names": [f"class {i}" for i in range(10)],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize_size": 32,
        "interpolation": "bilinear",
        "finetune": {"history": [], "metrics": {"test_acc": 0.5}, "freeze_policy": "head"},
    }


def _with_raw_metadata(raw: str, transpose_head: bool = False) -> Callable[[Path], Path]:
    """The tiny model's real tensors under the metadata text ``raw`` (with the head's weight
    transposed: as many numbers as the metadata implies, in the wrong shape)."""

    def make(tmp_path: Path) -> Path:
        path = tmp_path / "lying.safetensors"
        tensors = {k: v.contiguous() for k, v in _tiny_state().items()}
        if transpose_head:
            tensors["head.weight"] = tensors["head.weight"].t().contiguous()
        save_file(tensors, str(path), metadata={METADATA_KEY: raw})
        return path

    return make


def _with_metadata(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], Path]:
    """The tiny checkpoint with its metadata changed by ``change`` (which edits it in place, or
    returns something to use instead)."""
    meta = _tiny_meta()
    replaced = change(meta)
    return _with_raw_metadata(json.dumps(meta if replaced is None else replaced))


def _config(**changes: object) -> Callable[[Path], Path]:
    return _with_metadata(lambda meta: meta["config"].update(changes))


def _field(key: str, value: object) -> Callable[[Path], Path]:
    return _with_metadata(lambda meta: meta.__setitem__(key, value))


def _without(key: str) -> Callable[[Path], Path]:
    def change(meta: dict[str, Any]) -> None:
        del meta[key]

    return _with_metadata(change)


def _torchvision_meta(**config: object) -> Callable[[Path], Path]:
    def change(meta: dict[str, Any]) -> None:
        meta.update(architecture="vit_b_16", config=config, class_names=["a"])

    return _with_metadata(change)


def _good_checkpoint(tmp_path: Path) -> Path:
    return _with_metadata(lambda meta: None)(tmp_path)


def _truncated(where: str | int) -> Callable[[Path], Path]:
    """The tiny checkpoint cut at a byte offset (an int) or a named place (a str)."""

    def make(tmp_path: Path) -> Path:
        data = _good_checkpoint(tmp_path).read_bytes()
        header_end = 8 + int.from_bytes(data[:8], "little")
        offsets = {
            "mid header": header_end // 2,
            "header end": header_end,
            "mid data": (header_end + len(data)) // 2,
            "last byte": len(data) - 1,
        }
        cut = offsets[where] if isinstance(where, str) else where
        path = tmp_path / "cut.safetensors"
        path.write_bytes(data[:cut])
        return path

    return make


def _header(header: object, data: bytes = b"", length: int | None = None) -> Callable[[Path], Path]:
    """A safetensors file with this JSON header (or raw bytes) and data."""

    def make(tmp_path: Path) -> Path:
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        size = len(raw) if length is None else length
        path = tmp_path / "forged.safetensors"
        path.write_bytes(size.to_bytes(8, "little") + raw + data)
        return path

    return make


class _System:
    """Pickled as ``os.system(command)``: what a malicious weights file runs when trusted."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _pickle_with_code(tmp_path: Path) -> Path:
    path = tmp_path / "evil.pth"
    payload = {"weight": _System(f"touch {tmp_path / MARKER}")}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def _zip_with_code(tmp_path: Path) -> Path:
    path = tmp_path / "evil_zip.pth"
    torch.save({"weight": torch.zeros(3), "hook": _System(f"touch {tmp_path / MARKER}")}, path)
    return path


def _pickle_with_objects(tmp_path: Path) -> Path:
    path = tmp_path / "objects.pt"
    path.write_bytes(pickle.dumps({"weight": Path("x")}))  # protocol 5, a class from pathlib
    return path


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def _truncated_zip(tmp_path: Path) -> Path:
    path = tmp_path / "cut.pth"
    torch.save(_tiny_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_tensors(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.pth"
    torch.save({"lr": 0.1, "epoch": 3}, path)
    return path


def _torchvision_state(pos_positions: int, num_classes: int = 10) -> dict[str, torch.Tensor]:
    """A ViT-B/16 state dict whose position embedding and head claim these sizes. The tensors are
    views of one small storage (stride 0), so the file stays small whatever they claim."""
    torch.manual_seed(0)
    with torch.device("meta"):
        skeleton = get_model("vit_b_16", weights=None)
    state = {k: torch.zeros(1).expand(v.shape) for k, v in skeleton.state_dict().items()}
    state["encoder.pos_embedding"] = torch.zeros(1, 1, 768).expand(1, pos_positions, 768)
    state["heads.head.weight"] = torch.zeros(1, 768).expand(num_classes, 768)
    state["heads.head.bias"] = torch.zeros(1).expand(num_classes)
    return state


def _torchvision_weights(pos_positions: int, num_classes: int = 10) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "vit_b_16_lying.pth"
        torch.save(_torchvision_state(pos_positions, num_classes), path)
        return path

    return make


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "folder.safetensors"
    path.mkdir()
    return path


def _device(tmp_path: Path) -> Path:
    path = tmp_path / "zero.safetensors"
    path.symlink_to("/dev/zero")
    return path


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)  # opening it would block until someone writes: it must never be opened
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.safetensors"


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    return path


_NAN = float("nan")
HOSTILE_CHECKPOINTS: list[tuple[str, Callable[[Path], Path]]] = [
    # metadata that lies about the model's size or shape
    ("width 16384 depth 64", _config(width=16384, depth=64)),
    ("width 4096 depth 64", _config(width=4096, depth=64, heads=64)),
    ("patch size 0", _config(patch_size=0)),
    ("heads 0", _config(heads=0)),
    ("negative width", _config(width=-32)),
    ("patch size not dividing", _config(patch_size=7)),
    ("width not divisible by heads", _config(heads=3)),
    ("image size huge", _config(image_size=10**30)),
    ("image size 160000", _config(image_size=160000, patch_size=16)),
    ("depth a float", _config(depth=2.0)),
    ("depth true", _config(depth=True)),
    ("width a string", _config(width="32")),
    ("mlp ratio nan", _config(mlp_ratio=_NAN)),
    ("mlp ratio a string", _config(mlp_ratio="4")),
    ("num classes 0", _config(num_classes=0)),
    ("unknown config key", _config(hidden_dim=32)),
    ("same count other shapes", _with_raw_metadata(json.dumps(_tiny_meta()), transpose_head=True)),
    # metadata of the wrong kind
    ("metadata a number", _with_raw_metadata("5")),
    ("metadata a list", _with_raw_metadata("[1, 2]")),
    ("metadata a string", _with_raw_metadata('"small_vit"')),
    ("metadata null", _with_raw_metadata("null")),
    ("metadata not json", _with_raw_metadata("{architecture: small_vit")),
    ("metadata deeply nested", _with_raw_metadata("[" * 100_000 + "]" * 100_000)),
    ("config missing", _without("config")),
    ("config a number", _field("config", 7)),
    ("config a list", _field("config", [1, 2])),
    ("architecture missing", _without("architecture")),
    ("architecture unknown", _field("architecture", "resnet50")),
    ("architecture a list", _field("architecture", ["small_vit"])),
    ("format from the future", _field("format", 99)),
    ("class names too few", _field("class_names", ["a", "b"])),
    ("class names not texts", _field("class_names", list(range(10)))),
    ("mean of two", _field("mean", [0.5, 0.5])),
    ("std zero", _field("std", [0.2, 0.0, 0.2])),
    ("mean nan", _field("mean", [_NAN, 0.5, 0.5])),
    ("mean huge", _field("mean", [10**400, 0.5, 0.5])),
    ("resize 200000", _field("resize_size", 200000)),
    ("resize below the image size", _field("resize_size", 16)),
    ("resize null", _field("resize_size", None)),
    ("interpolation unknown", _field("interpolation", "sinc")),
    ("torchvision image size 160000", _torchvision_meta(image_size=160000, num_classes=1)),
    ("torchvision image size not a multiple", _torchvision_meta(image_size=100, num_classes=1)),
    ("torchvision config extra", _torchvision_meta(image_size=32, num_classes=1, hidden_dim=8)),
    # torchvision state dicts whose tensors imply absurd models
    ("torchvision pos_embedding for 160000 px", _torchvision_weights(10000 * 10000 + 1)),
    ("torchvision pos_embedding not square", _torchvision_weights(11)),
    ("torchvision head of 10 million classes", _torchvision_weights(197, 10_000_000)),
    # damaged safetensors files
    ("truncated at 4 bytes", _truncated(4)),
    ("truncated at 8 bytes", _truncated(8)),
    ("truncated mid header", _truncated("mid header")),
    ("truncated at the header's end", _truncated("header end")),
    ("truncated mid data", _truncated("mid data")),
    ("truncated by one byte", _truncated("last byte")),
    ("header length huge", _header({}, length=2**63)),
    ("header not json", _header(b"{not json}")),
    ("header not utf-8", _header(b"\xff\xfe{}")),
    ("header a list", _header([1, 2])),
    ("header metadata not texts", _header({"__metadata__": {METADATA_KEY: 5}})),
    (
        "offsets beyond the file",
        _header(
            {"w": {"dtype": "F32", "shape": [250 * 10**9], "data_offsets": [0, 10**12]}}, bytes(16)
        ),
    ),
    (
        "shape larger than its data",
        _header({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 16]}}, bytes(16)),
    ),
    ("random bytes", _bytes("noise.safetensors", np.random.default_rng(0).bytes(4096))),
    # pickles and other .pth files
    ("pickle with code", _pickle_with_code),
    ("zip pickle with code", _zip_with_code),
    ("pickle with objects", _pickle_with_objects),
    ("pth of random bytes", _bytes("noise.pth", np.random.default_rng(1).bytes(4096))),
    ("pth of text", _bytes("notes.pth", b"not a pickle")),
    ("pth truncated zip", _truncated_zip),
    ("pth of numbers", _not_tensors),
    # paths that are not weights files
    ("folder", _folder),
    ("device", _device),
    ("fifo", _fifo),
    ("missing", _missing),
    ("empty", _empty),
]

# cases that are weights for a named architecture (--model NAME --weights PATH)
WEIGHTS_FOR = {
    "torchvision pos_embedding for 160000 px": "vit_b_16",
    "torchvision pos_embedding not square": "vit_b_16",
    "torchvision head of 10 million classes": "vit_b_16",
}

# a part of each case's message: it says what is wrong
EXPECTED = {
    "width 16384 depth 64": "width must be from 1 to 8192, not 16384",
    "width 4096 depth 64": "parameters but the file holds",
    "patch size 0": "patch_size must be from 1 to 32, not 0",
    "heads 0": "heads must be from 1 to 32, not 0",
    "negative width": "width must be from 1 to 8192, not -32",
    "patch size not dividing": "not a multiple of patch size 7",
    "width not divisible by heads": "not divisible by 3 heads",
    "image size huge": "image_size must be from 1 to 4096",
    "image size 160000": "image_size must be from 1 to 4096, not 160000",
    "depth a float": "depth must be a whole number, not 2.0",
    "depth true": "depth must be a whole number, not true",
    "width a string": "width must be a whole number, not the text '32'",
    "mlp ratio nan": "mlp_ratio must be above 0",
    "mlp ratio a string": "mlp_ratio must be a number",
    "num classes 0": "num_classes must be from 1 to",
    "unknown config key": "unknown setting 'hidden_dim'; a small_vit config has image_size",
    "same count other shapes": "lying.safetensors: the weights do not fit Small ViT (2x32, /8)",
    "metadata a number": "it is 5, not a JSON object",
    "metadata a list": "it is a list, not a JSON object",
    "metadata a string": "not a JSON object",
    "metadata null": "it is null, not a JSON object",
    "metadata not json": "unreadable vitexplorer metadata: it is not valid JSON",
    "metadata deeply nested": "unreadable vitexplorer metadata",
    "config missing": "it has no config",
    "config a number": "config is 7, not a JSON object",
    "config a list": "config is a list, not a JSON object",
    "architecture missing": "it names no architecture",
    "architecture unknown": "architecture 'resnet50' is unknown",
    "architecture a list": "architecture a list is unknown",
    "format from the future": "format 99, newer than this vitexplorer reads",
    "class names too few": "class_names has 2 names for 10 classes",
    "class names not texts": "class_names must be a list of texts",
    "mean of two": "mean must be a list of three numbers from -1000 to 1000",
    "std zero": "std must be at least 1e-06 for every channel",
    "mean nan": "mean must be a list of three numbers from -1000 to 1000",
    "mean huge": "mean must be a list of three numbers from -1000 to 1000",
    "resize 200000": "resize_size must be from 32 to 64, not 200000",
    "resize below the image size": "resize_size must be from 32 to 64, not 16",
    "resize null": "resize_size must be a whole number, not null",
    "interpolation unknown": "interpolation 'sinc' is not one of",
    "torchvision image size 160000": "image_size must be from 16 to 4096, not 160000",
    "torchvision image size not a multiple": "not a multiple of ViT-B/16's 16 px patches",
    "torchvision config extra": "unknown setting 'hidden_dim'; a vit_b_16 config has image_size",
    "torchvision pos_embedding for 160000 px": "implies must be from 1 to 4096, not 160000",
    "torchvision pos_embedding not square": "has 11 positions, not one plus a square grid",
    "torchvision head of 10 million classes": "must be from 1 to 100000, not 10000000",
    "truncated at 4 bytes": "not a valid safetensors file: it is only 4 bytes long",
    "truncated at 8 bytes": "not a valid safetensors file: its header claims",
    "truncated mid header": "(a truncated file, or not safetensors)",
    "truncated at the header's end": "is truncated: its tensors need",
    "truncated mid data": "is truncated: its tensors need",
    "truncated by one byte": "is truncated: its tensors need",
    "header length huge": "its header claims 9,223,372,036,854,775,808 bytes",
    "header not json": "its header is not valid JSON",
    "header not utf-8": "its header is not valid JSON",
    "header a list": "its header is not a JSON object",
    "header metadata not texts": "its __metadata__ is not an object of texts",
    "offsets beyond the file": "is truncated: its tensors need 1,000,000,000,000 bytes",
    "shape larger than its data": "the shape of tensor w does not match the size of its data",
    "random bytes": "not a valid safetensors file: its header claims",
    "pickle with code": "contains Python code or objects that cannot be loaded safely",
    "zip pickle with code": "contains Python code or objects that cannot be loaded safely",
    "pickle with objects": "contains Python code or objects that cannot be loaded safely",
    "pth of random bytes": "is not a PyTorch weights file: it is neither a zip archive nor a",
    "pth of text": "is not a PyTorch weights file: it is neither a zip archive nor a pickle",
    "pth truncated zip": "not a PyTorch weights file that can be read: it is damaged or truncated",
    "pth of numbers": "does not hold a state dict of tensors",
    "folder": "folder.safetensors is a folder, not a weights file",
    "device": "zero.safetensors is a device, not a weights file",
    "fifo": "pipe.safetensors is a named pipe (FIFO), not a weights file",
    "missing": "weights file not found: ",
    "empty": "empty.safetensors is empty, not a weights file",
}

CASE_IDS = [case_id for case_id, _ in HOSTILE_CHECKPOINTS]


def _model_args(case_id: str, path: Path) -> tuple[str, str]:
    """(``--model``, ``--weights``) for a case."""
    if case_id in WEIGHTS_FOR:
        return WEIGHTS_FOR[case_id], str(path)
    return str(path), "default"


# what finetune's check of its --model file (cli/inputs.py) says, naming the option
FINETUNE_INPUT_CHECK = {
    "folder": "folder.safetensors is a folder;",
    "device": "zero.safetensors is a device, not a regular file;",
    "fifo": "pipe.safetensors is a named pipe (FIFO), not a regular file;",
    "missing": "missing.safetensors does not exist;",
}


def _assert_one_clear_line(message: str, case_id: str) -> None:
    assert "\n" not in message and len(message) < 300, message
    assert "weights_only" not in message and "Traceback" not in message, message
    assert EXPECTED[case_id] in message, message


def _no_marker(tmp_path: Path) -> None:
    assert not list(tmp_path.rglob(MARKER)), "a pickle ran code"


# ---------------------------------------------------------------------------------------------
# The tests


def test_every_case_has_an_expected_message() -> None:
    assert len(set(CASE_IDS)) == len(CASE_IDS)
    assert set(CASE_IDS) == set(EXPECTED)
    assert set(WEIGHTS_FOR) <= set(CASE_IDS)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("case_id", "make"), HOSTILE_CHECKPOINTS, ids=CASE_IDS)
def test_core_refuses_with_one_clear_line(case_id: str, make, tmp_path: Path) -> None:
    path = make(tmp_path)
    name, weights = _model_args(case_id, path)
    with pytest.raises(WeightsFileError) as err:
        load_model(name, weights, "cpu")
    _assert_one_clear_line(str(err.value), case_id)
    _no_marker(tmp_path)


@pytest.mark.parametrize(("case_id", "make"), HOSTILE_CHECKPOINTS, ids=CASE_IDS)
def test_analyze_exits_2_with_one_line(case_id: str, make, tmp_path: Path, capsys) -> None:
    image = tmp_path / "image.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    name, weights = _model_args(case_id, make(tmp_path))
    args = ["analyze", str(image), "--model", name, "--weights", weights, "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    notes = [line for line in lines if line.startswith("vitexplorer: note:")]
    errors = [line for line in lines if line not in notes]
    assert len(errors) == 1 and errors[0].startswith("vitexplorer: "), captured.err
    _assert_one_clear_line(errors[0], case_id)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    _no_marker(tmp_path)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of six small images: enough for --per-class 4 --test-per-class 2."""
    root = tmp_path_factory.mktemp("colours")
    for name, colour in {"red": (220, 40, 40), "blue": (40, 60, 220)}.items():
        (root / name).mkdir()
        for i in range(6):
            Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(("case_id", "make"), HOSTILE_CHECKPOINTS, ids=CASE_IDS)
def test_finetune_exits_2_with_one_line(
    case_id: str, make, tmp_path: Path, colour_folder: Path, capsys
) -> None:
    name, weights = _model_args(case_id, make(tmp_path))
    out = tmp_path / "out.safetensors"
    args = ["finetune", "--model", name, "--weights", weights, "--data", str(colour_folder)]
    options = ["--per-class", "4", "--test-per-class", "2", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(out), *options]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("vitexplorer: note:")]
    assert len(errors) == 1, captured.err
    if case_id in FINETUNE_INPUT_CHECK:  # train and finetune check their files before any work
        assert errors[0].startswith("vitexplorer: --model "), errors[0]
        assert FINETUNE_INPUT_CHECK[case_id] in errors[0], errors[0]
        assert "give a checkpoint file (.safetensors) or a model's name" in errors[0], errors[0]
    else:
        _assert_one_clear_line(errors[0], case_id)
    assert not out.exists() and captured.out == ""
    _no_marker(tmp_path)


@pytest.mark.parametrize(("case_id", "make"), HOSTILE_CHECKPOINTS, ids=CASE_IDS)
def test_check_model_source_refuses_without_reading_tensors(
    case_id: str, make, tmp_path: Path, monkeypatch
) -> None:
    """Before a dataset download: everything but the inside of a .pth file is found out from
    the path and the safetensors header alone."""
    path = make(tmp_path)
    name, weights = _model_args(case_id, path)

    def no_tensors(*args: object, **kwargs: object) -> None:
        raise AssertionError("tensors were read")

    monkeypatch.setattr("vitexplorer.core.models.checkpoint.load_file", no_tensors)
    monkeypatch.setattr(torch, "load", no_tensors)
    if path.suffix == ".pth" or path.suffix == ".pt":
        models.check_model_source(name, weights)  # only its being a file is checked
        return
    with pytest.raises(WeightsFileError) as err:
        models.check_model_source(name, weights)
    _assert_one_clear_line(str(err.value), case_id)


def test_no_model_is_built_from_lying_metadata(tmp_path: Path, monkeypatch) -> None:
    """The parameter count is compared on a skeleton (the meta device): nothing real is built."""
    path = _config(width=4096, depth=64, heads=64)(tmp_path)
    built: list[object] = []
    real_init = SmallViT.__init__

    def init(self, config=None) -> None:
        real_init(self, config)
        built.append(self.cls_token.device)

    monkeypatch.setattr(SmallViT, "__init__", init)
    with pytest.raises(WeightsFileError, match="parameters but the file holds"):
        load_model(str(path), device="cpu")
    assert built == [torch.device("meta")]


def test_paths_that_are_not_files_are_named(tmp_path: Path) -> None:
    for path, what in [(tmp_path, "a folder"), (Path("/dev/zero"), "a device")]:
        with pytest.raises(WeightsFileError) as err:
            load_model("vit_b_32", str(path), "cpu")
        assert str(err.value) == f"{path} is {what}, not a weights file"


def test_pickle_message_never_suggests_turning_safety_off(tmp_path: Path) -> None:
    path = _zip_with_code(tmp_path)
    with pytest.raises(WeightsFileError) as err:
        read_weights(path)
    assert str(err.value) == (
        "evil_zip.pth contains Python code or objects that cannot be loaded safely, so they are "
        "not loaded; vitexplorer reads safetensors files and PyTorch state dicts of tensors "
        "(.pth/.pt/.bin)"
    )
    _no_marker(tmp_path)


def test_what_the_app_writes_still_loads(tmp_path: Path) -> None:
    """A checkpoint with everything a fine-tune run records, the defaults of a small ViT, and a
    safetensors file under a .pth name."""
    path = _good_checkpoint(tmp_path)
    loaded = load_model(str(path), device="cpu")
    assert loaded.spec.class_names[3] == "class 3" and loaded.spec.resize_size == 32
    torch.manual_seed(1)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    saved = tmp_path / "saved.safetensors"
    save_checkpoint(saved, model, {"finetune": {"settings": {"lr": 0.01}, "history": [{}]}})
    again = load_model(str(saved), device="cpu")
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.module(x), again.module(x))
    models.check_model_source(str(saved))
    renamed = tmp_path / "saved_as.pth"
    renamed.write_bytes(saved.read_bytes())
    assert read_weights(renamed)[1]["architecture"] == "small_vit"


def test_metadata_check_accepts_defaults_and_extra_keys() -> None:
    meta = {"architecture": "small_vit", "config": {}, "anything": {"else": [1, 2]}}
    assert check_checkpoint_metadata(meta) is meta
    tv = {"architecture": "vit_b_16", "config": {"image_size": 384, "num_classes": 1000}}
    check_checkpoint_metadata({**tv, "resize_size": 384, "interpolation": "bicubic"})


@pytest.mark.slow
def test_command_line_process_has_no_traceback(tmp_path: Path) -> None:
    """The real process: a bare-number metadata checkpoint, and a device as weights."""
    checkpoint = _with_raw_metadata("5")(tmp_path)
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for model, weights in [(str(checkpoint), "default"), ("vit_b_32", "/dev/zero")]:
        command = [sys.executable, "-m", "vitexplorer", "analyze", str(image), "--model", model]
        command += ["--weights", weights, "--out", str(tmp_path / "o"), "--device", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
