"""What ``vitexplorer analyze`` writes must not change when the code is reshaped (issue 14 made it
cheaper). The manifest in tests/data/analyze-before records the files the code wrote before
issue 14 (commit 8d557dc, see its README): every .npy array's values, every PNG's pixels in
blocks, every JSON's content (less what differs between any two runs: timings, software
versions, where the files lie).

The same code gives other last bits with another CPU, BLAS or wheel (issue 21: 1e-7 apart on a
fresh install), so floats are compared within a tolerance, never by hashing their bytes: arrays
and JSON numbers within :data:`ATOL`, texts and whole numbers exactly. A PNG pixel can move
legitimately: a map value that lies on the edge between two colours of the table takes the other
one when its last bit moves, and then its whole patch is one table step (at most
:data:`TABLE_STEP` levels) lighter or darker. The PNGs are therefore held as sums over
:data:`BLOCK` x :data:`BLOCK` pixel blocks, and compared block by block: no block may move by
more than one table step on average, and all blocks together by no more than
:data:`MEAN_LEVELS` levels, which one or two patches moving a step stay under and a change of
colours, blending, layout or text does not.

Images go through the model in batches now; a batch of one is the computation as it was, and a
batch of several equals it to float rounding."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vitexplorer.cli import main

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

ROOT = Path(__file__).resolve().parents[2]
BEFORE = ROOT / "tests" / "data" / "analyze-before"
ARRAYS = BEFORE / "arrays.npz"  # the manifest's arrays, by key
SAMPLES = ROOT / "tests" / "data" / "cifar10-test-sample"
IMAGES = [
    SAMPLES / "airplane" / "00003.png",
    SAMPLES / "cat" / "00000.png",
    ROOT / "vitexplorer" / "resources" / "sample.png",
]
# the two runs of the manifest: their extra arguments
RUNS = {
    "crop": ["--method", "attention", "--method", "rollout", "--method", "relevance"],
    "keep": ["--method", "rollout", "--aspect", "keep", "--layer", "2", "--head", "1"],
}
VARIES = ("forward_seconds", "forward_batch", "software")  # differ between any two runs
VARIES += ("files",)  # a card's list of its files' sizes: PNG sizes vary with zlib (issue 22)
ATOL = 1e-5  # arrays and JSON numbers; the maps written here span at least 0.01
QUANTUM = 2.0**-20  # arrays are stored as whole multiples of it: within 5e-7, ATOL / 20
BLOCK = 16  # PNG pixels are held as sums over blocks of BLOCK x BLOCK
TABLE_STEP = 5  # levels: the largest step between neighbouring colours of the table (inferno)
MEAN_LEVELS = 0.05  # the most all blocks of a PNG may move together, in levels on average


def normalised(value: Any) -> Any:
    """A JSON document without what differs between two runs of the same command."""
    if isinstance(value, dict):
        return {
            key: Path(item).name if key in ("image", "file") and isinstance(item, str) else
            normalised(item)
            for key, item in value.items()
            if key not in VARIES
        }  # fmt: skip
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def block_sums(pixels: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) sums of a (H, W, 3) uint8 picture over :data:`BLOCK`-pixel blocks (the
    last row and column of blocks padded with black)."""
    height, width = pixels.shape[:2]
    rows, cols = -(-height // BLOCK), -(-width // BLOCK)
    padded = np.zeros((rows * BLOCK, cols * BLOCK, 3), np.uint32)
    padded[:height, :width] = pixels
    return padded.reshape(rows, BLOCK, cols, BLOCK, 3).sum(axis=(1, 3)).astype(np.uint16)


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def contents(folder: Path) -> dict[str, Any]:
    """What each file in ``folder`` holds: a .npy's array, a PNG's block sums, a JSON's
    normalised content."""
    found: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npy":
            found[path.name] = np.load(path, allow_pickle=False)
        elif path.suffix == ".png":
            found[path.name] = png_pixels(path)
        elif path.suffix == ".json":
            found[path.name] = normalised(json.loads(path.read_text()))
    return found


def expected_contents(run_name: str) -> dict[str, Any]:
    """The manifest of ``run_name``: arrays (float64, from the stored multiples of
    :data:`QUANTUM`), PNGs as (shape, block sums), JSON content."""
    manifest = json.loads((BEFORE / f"{run_name}.json").read_text())
    with np.load(ARRAYS, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    expected: dict[str, Any] = {}
    for name, entry in manifest.items():
        if name.endswith(".npy"):
            values = arrays[entry["values"]].astype(np.float64) * QUANTUM
            assert list(values.shape) == entry["shape"]
            expected[name] = (entry["dtype"], values)
        elif name.endswith(".png"):
            expected[name] = (entry["shape"], arrays[entry["block_sums"]])
        else:
            expected[name] = entry
    return expected


def run(out: Path, run_name: str, *extra: str) -> Path:
    code = main(
        ["analyze", *map(str, IMAGES), "--model", "demo", "--device", "cpu", "--out", str(out)]
        + RUNS[run_name]
        + list(extra)
    )
    assert code == 0
    return out


@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_one_image_at_a_time_writes_what_the_code_wrote_before(tmp_path, run_name, capsys):
    expected = expected_contents(run_name)
    found = contents(run(tmp_path, run_name, "--batch-size", "1"))
    assert sorted(found) == sorted(expected)  # the same files
    for name, content in expected.items():
        if name.endswith(".npy"):
            dtype, values = content
            assert str(found[name].dtype) == dtype, name
            assert found[name].shape == values.shape, name
            np.testing.assert_allclose(found[name], values, rtol=0, atol=ATOL, err_msg=name)
        elif name.endswith(".png"):
            shape, sums = content
            assert list(found[name].shape) == shape, name
            assert_blocks_close(block_sums(found[name]), sums, name)
        else:
            assert_close(found[name], content, name)
    assert capsys.readouterr().out.splitlines() == expected_lines(run_name)


def expected_lines(run_name: str) -> list[str]:
    return (BEFORE / f"{run_name}.out").read_text().splitlines()


@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_a_batch_writes_the_same_files_to_float_rounding(tmp_path, run_name, capsys):
    single = run(tmp_path / "single", run_name, "--batch-size", "1")
    batched = run(tmp_path / "batched", run_name)
    lines = capsys.readouterr().out.splitlines()
    assert lines[: len(lines) // 2] == lines[len(lines) // 2 :]  # the same lines, in order
    names = sorted(p.name for p in single.iterdir())
    assert names == sorted(p.name for p in batched.iterdir())
    for name in names:
        a, b = single / name, batched / name
        if name.endswith(".npy"):
            np.testing.assert_allclose(np.load(b), np.load(a), rtol=0, atol=1e-6)
        elif name.endswith(".png"):
            assert_pixels_close(png_pixels(b), png_pixels(a), name)
        else:
            facts = json.loads(b.read_text())
            assert facts.get("forward_batch", 1) >= 1
            assert_close(normalised(facts), normalised(json.loads(a.read_text())), name)
    facts = json.loads((batched / "00003.json").read_text())
    assert facts["forward_batch"] == (3 if run_name == "crop" else 2)  # the 32 px images share


def assert_pixels_close(found: np.ndarray, expected: np.ndarray, name: str) -> None:
    """Equal pictures, but for patches whose colour moved one step of the table: at most
    :data:`TABLE_STEP` levels, on at most 2% of the pixels (about one patch in an 8x8 map)."""
    assert found.shape == expected.shape, name
    moved = np.abs(found.astype(np.int16) - expected.astype(np.int16))
    assert moved.max() <= TABLE_STEP, name
    assert np.count_nonzero(moved.max(axis=-1)) <= 0.02 * moved.shape[0] * moved.shape[1], name


def assert_blocks_close(found: np.ndarray, expected: np.ndarray, name: str) -> None:
    """Block sums (:func:`block_sums`) of two pictures: no block moved by more than one table
    step on average, and all of them together by at most :data:`MEAN_LEVELS` levels."""
    assert found.shape == expected.shape, name
    moved = np.abs(found.astype(np.int64) - expected.astype(np.int64)) / BLOCK**2  # levels
    assert moved.max() <= TABLE_STEP, f"{name}: a block moved by {moved.max():.2f} levels"
    assert moved.mean() <= MEAN_LEVELS, f"{name}: the blocks moved by {moved.mean():.3f} levels"


def assert_close(found: Any, expected: Any, where: str = "") -> None:
    """Equal JSON: texts, whole numbers, booleans and nulls exactly, floats within ATOL."""
    if isinstance(expected, dict):
        assert sorted(found) == sorted(expected), where
        for key in expected:
            assert_close(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(found) == len(expected), where
        for i, (x, y) in enumerate(zip(found, expected, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(found, (int, float)) and not isinstance(found, bool), where
        assert found == pytest.approx(expected, rel=0, abs=ATOL), where
    else:
        assert type(found) is type(expected) and found == expected, where


def write_manifest(folders: dict[str, Path]) -> None:
    """Write the manifest of each run's folder (``run name -> folder``) into tests/data: the
    JSON of each run and one compressed file of the arrays, each array once however many files
    hold it. Only for when the outputs change on purpose: say so in the commit."""
    arrays: dict[str, np.ndarray] = {}

    def stored(array: np.ndarray) -> str:
        key = hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]
        arrays.setdefault(key, array)
        return key

    for run_name, folder in folders.items():
        manifest: dict[str, Any] = {}
        for name, content in contents(folder).items():
            if name.endswith(".npy"):
                whole = np.rint(content.astype(np.float64) / QUANTUM).astype(np.int32)
                manifest[name] = {
                    "dtype": str(content.dtype),
                    "shape": list(content.shape),
                    "values": stored(whole),
                }
            elif name.endswith(".png"):
                manifest[name] = {"shape": list(content.shape), "block_sums": stored(
                    block_sums(content)
                )}  # fmt: skip
            else:
                manifest[name] = content
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        (BEFORE / f"{run_name}.json").write_text(text)
    np.savez_compressed(ARRAYS, **arrays)


if __name__ == "__main__":  # python tests/core/test_outputs_unchanged.py CROP_DIR KEEP_DIR
    write_manifest({"crop": Path(sys.argv[1]), "keep": Path(sys.argv[2])})
