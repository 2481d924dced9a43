"""``vitexplorer train --probes`` records a time-lapse in its checkpoint, and ``vitexplorer
timelapse`` writes it out: a GIF, a PNG per epoch and a .npy with its card per probe, and the
per-head statistics of every epoch as CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_colour_splits
from tests.core.test_train_cli import QUICK, SMALL
from vitexplorer.cli import main
from vitexplorer.core.training.timelapse import read_timelapse
from vitexplorer.core.training.timelapse_frames import probe_maps


def _quiet(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-epoch run from scratch that follows 3 test images."""
    root = tmp_path_factory.mktemp("tl-cli")
    data = write_colour_splits(root / "colours")
    out = root / "m.safetensors"
    status, stdout, stderr = _quiet(
        ["train", "--data", str(data), "--out", str(out), "--device", "cpu", *SMALL, *QUICK,
         "--probes", "3", "--no-mixed-precision"]
    )  # fmt: skip
    assert status == 0, stderr
    return out, stdout


@pytest.mark.slow
def test_train_saves_the_time_lapse_and_says_so(run: tuple[Path, str]) -> None:
    out, stdout = run
    timelapse = read_timelapse(out)
    assert timelapse is not None and timelapse.epochs == [0, 1, 2]
    assert timelapse.labels.tolist() == [0, 1, 0]  # blue, red, blue: the classes in turn
    final = json.loads(stdout.splitlines()[-1])
    assert final["timelapse"] == {"epochs": [0, 1, 2], "probes": timelapse.sources}


@pytest.mark.slow
def test_export_writes_every_format_and_the_numbers_are_the_saved_ones(
    run: tuple[Path, str], tmp_path: Path
) -> None:
    checkpoint, _ = run
    status, stdout, stderr = _quiet(["timelapse", str(checkpoint), "--out", str(tmp_path)])
    assert status == 0, stderr
    timelapse = read_timelapse(checkpoint)
    stems = sorted(p.name.removesuffix(".rollout.npy") for p in tmp_path.glob("*.rollout.npy"))
    assert len(stems) == 3 and all(s.startswith(f"probe-0{i + 1}-") for i, s in enumerate(stems))
    for probe, stem in enumerate(stems):
        maps = np.load(tmp_path / f"{stem}.rollout.npy")
        expected = timelapse.stacked("rollout")[:, probe].reshape(3, 4, 4)
        np.testing.assert_array_equal(maps, expected)  # the saved float16, as float32
        card = json.loads((tmp_path / f"{stem}.rollout.json").read_text())
        assert card["method"] == "rollout" and card["map"]["shape"] == [3, 4, 4]
        assert card["timelapse"]["epochs"] == [0, 1, 2]
        assert card["image"] == timelapse.sources[probe]
        assert card["model"]["weights"]["file"] == str(checkpoint)
        with Image.open(tmp_path / f"{stem}.rollout.gif") as gif:
            assert gif.n_frames == 3 and gif.info["loop"] == 0
        pngs = sorted((tmp_path / f"{stem}.rollout").glob("*.png"))
        assert [p.name for p in pngs] == ["epoch-000.png", "epoch-001.png", "epoch-002.png"]
    rows = list(csv.DictReader((tmp_path / "timelapse-heads.csv").open()))
    assert len(rows) == 3 * 2 * 2  # epochs x layers x heads
    last = [r for r in rows if r["epoch"] == "2" and r["layer"] == "2" and r["head"] == "1"][0]
    frame = timelapse.frames[-1]
    assert float(last["mean_distance_px"]) == pytest.approx(frame.distance[:, 1, 0].mean(), 1e-3)
    assert float(last["entropy_nats"]) == pytest.approx(frame.entropy[:, 1, 0].mean(), 1e-3)
    assert str(tmp_path / "timelapse-heads.csv") in stdout


def test_export_of_one_head_in_one_layer(run: tuple[Path, str], tmp_path: Path) -> None:
    checkpoint, _ = run
    argv = ["timelapse", str(checkpoint), "--out", str(tmp_path), "--map", "attention"]
    status, _, stderr = _quiet([*argv, "--layer", "1", "--head", "2", "--format", "npy"])
    assert status == 0, stderr
    timelapse = read_timelapse(checkpoint)
    maps = np.load(next(tmp_path.glob("probe-01-*.attention.npy")))
    cls = timelapse.stacked("cls_attention")[:, 0, 0, 1].reshape(3, 4, 4)
    np.testing.assert_array_equal(maps, cls)
    np.testing.assert_array_equal(maps, probe_maps(timelapse, 0, "attention", 0, 1))
    assert not list(tmp_path.glob("*.gif")) and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--map", "attention", "--layer", "3"], "layers 1 to 2"),
        (["--map", "attention", "--head", "0"], "heads are numbered from 1"),
    ],
)
def test_impossible_options_are_one_line(
    run: tuple[Path, str], tmp_path: Path, extra: list[str], words: str
) -> None:
    checkpoint, _ = run
    status, _, stderr = _quiet(["timelapse", str(checkpoint), "--out", str(tmp_path), *extra])
    assert status == 2 and words in stderr and len(stderr.splitlines()) == 1


def test_a_checkpoint_without_one_or_not_a_checkpoint(
    run: tuple[Path, str], tmp_path: Path
) -> None:
    from vitexplorer.core.models.loading import load_model, save_checkpoint

    plain = tmp_path / "plain.safetensors"
    save_checkpoint(plain, load_model(str(run[0]), device="cpu"))
    status, _, stderr = _quiet(["timelapse", str(plain), "--out", str(tmp_path / "o")])
    assert status == 2 and "holds no time-lapse" in stderr and len(stderr.splitlines()) == 1
    status, _, stderr = _quiet(["timelapse", str(tmp_path), "--out", str(tmp_path / "o")])
    assert status == 2 and "folder" in stderr and len(stderr.splitlines()) == 1
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    status, _, stderr = _quiet(["timelapse", str(junk), "--out", str(tmp_path / "o")])
    assert status == 2 and "junk.safetensors" in stderr and len(stderr.splitlines()) == 1
