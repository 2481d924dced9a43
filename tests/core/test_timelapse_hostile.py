"""A time-lapse is checked against the model saved beside it (one place, for the command line and
the window); outputs are written as sets (all or none); ``sanity`` and ``timelapse`` print names
with their escape sequences escaped, and a write that fails is one line with nothing half
written. (Every tampered block: tests/fuzz/test_fuzz_timelapse.py.)"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY
from tests.fuzz.timelapse_blocks import CLASSES, GOOD, Case, good_block, regrid, write_block
from vitexplorer.cli import main
from vitexplorer.core.io.all_or_none import AllOrNone
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.training.timelapse import TimeLapseError, read_timelapse

ESCAPE = "\x1b]52;c;aGVsbG8=\x07"  # OSC 52: would write the terminal's clipboard


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory):
    """The state and metadata of the model the blocks of tests/fuzz/timelapse_blocks.py fit."""
    torch.manual_seed(0)
    config = replace(TINY, num_classes=CLASSES)
    path = tmp_path_factory.mktemp("tl") / "tiny.safetensors"
    save_checkpoint(path, load_model("small_vit", "none", "cpu", small_config=config))
    return read_weights(path)


def test_a_block_that_holds_but_is_not_the_models_is_refused_only_against_the_model(
    parts,
    tmp_path: Path,
) -> None:
    path = write_block(tmp_path / "other.safetensors", Case("2x8", regrid(2, 8)), parts)
    alone = read_timelapse(path)  # it holds together on its own...
    assert alone is not None and alone.grid == (2, 8) and alone.epochs == [0, 1]
    spec = load_model(str(path), device="cpu").spec
    with pytest.raises(TimeLapseError) as caught:  # ...but not with the model it came with
        read_timelapse(path, spec)
    assert str(caught.value) == (
        "the time-lapse in other.safetensors is damaged: its patch grid is 2x8 but the model's "
        "is 4x4"
    )


def test_the_good_block_reads_back_as_written(parts, tmp_path: Path) -> None:
    path = write_block(tmp_path / "good.safetensors", GOOD, parts)
    tensors, meta = good_block()
    back = read_timelapse(path, load_model(str(path), device="cpu").spec)
    assert back is not None and back.epochs == meta["epochs"] and back.best_epoch == 1
    np.testing.assert_array_equal(back.images, tensors["images"].numpy())
    np.testing.assert_array_equal(back.labels, [1, -1])
    np.testing.assert_allclose(
        back.frames[1].distance, tensors["distance"][1].float().numpy(), rtol=0, atol=0
    )


def test_a_file_set_is_all_or_nothing(tmp_path: Path) -> None:
    old = tmp_path / "a.txt"
    old.write_bytes(b"old")
    with pytest.raises(OSError, match="full"), AllOrNone() as files:
        files.write(old, lambda f: f.write(b"new"))
        files.write(files.folder(tmp_path / "made" / "inner") / "b.txt", lambda f: f.write(b"b"))
        raise OSError(errno.ENOSPC, "full")
    assert old.read_bytes() == b"old"  # not replaced: the set failed
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # no temporary, no folder it made
    with AllOrNone() as files:
        files.write(old, lambda f: f.write(b"new"))
        files.write(files.folder(tmp_path / "made") / "b.txt", lambda f: f.write(b"b"))
    assert old.read_bytes() == b"new" and (tmp_path / "made" / "b.txt").read_bytes() == b"b"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "made"]


def test_timelapse_prints_escaped_names(parts, tmp_path: Path, capsys) -> None:
    def named(_, meta) -> None:
        meta["sources"] = [f"{ESCAPE}evil.png", "caf\udce9.png"]

    path = write_block(tmp_path / "run.safetensors", Case("names", named), parts)
    out = tmp_path / "out"
    assert main(["timelapse", str(path), "--out", str(out), "--format", "npy"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed
    assert "probe-01-\\x1b]52;c;aGVsbG8=\\x07evil.rollout.npy" in printed
    assert "probe-02-caf\\xe9.rollout.npy" in printed  # a name that is not UTF-8, as bytes
    assert len(list(out.glob("probe-0[12]-*.rollout.npy"))) == 2


def _photo(path: Path) -> Path:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_sanity_prints_an_escaped_name(checkpoint: Path, tmp_path: Path, capsys) -> None:
    photo = _photo(tmp_path / f"{ESCAPE}photo.png")
    out = tmp_path / "out"
    assert main(["sanity", str(photo), "--model", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed
    assert printed.startswith("\\x1b]52;c;aGVsbG8=\\x07photo: Spearman of the rollout map")
    assert len(list(out.glob("*photo.sanity.*"))) == 3


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS])
def test_sanity_write_failure_is_one_line_and_nothing_half_written(
    checkpoint: Path,
    tmp_path: Path,
    capsys,
    monkeypatch,
    number: int,
) -> None:
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.sanity.csv").write_text("an earlier run")
    failure = OSError(number, os.strerror(number))
    monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(failure))
    status = main(["sanity", str(photo), "--model", str(checkpoint), "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"vitexplorer: cannot write to {out}: {os.strerror(number)}; ")
    assert sorted(os.listdir(out)) == ["photo.sanity.csv"]  # the csv before the npy: not kept
    assert (out / "photo.sanity.csv").read_text() == "an earlier run"


def test_a_run_on_images_smaller_than_the_input_passes_the_model_check(tmp_path: Path) -> None:
    """Training keeps square images no larger than the input as they are (CIFAR-10's 32 px for
    a 224 px model): such probes are the model's, not damage."""
    from tests.conftest import write_colour_dataset
    from tests.core.test_timelapse import QUICK, _small_vit
    from vitexplorer.core.training.config import FinetuneConfig
    from vitexplorer.core.training.datasets import open_dataset
    from vitexplorer.core.training.engine import finetune

    data = write_colour_dataset(tmp_path / "colours", 20, size=16)
    config = FinetuneConfig(**{**QUICK.to_dict(), "epochs": 1})
    result = list(finetune(_small_vit(), open_dataset(data), config))[-1].result
    path = tmp_path / "small.safetensors"
    save_checkpoint(path, result.model, result.metadata(), result.timelapse)
    spec = load_model(str(path), device="cpu").spec
    back = read_timelapse(path, spec)
    assert spec.image_size == 32 and back is not None and back.images.shape[1:] == (16, 16, 3)
    assert back.epochs == [0, 1]
