"""Issue 14 made ``vitexplorer analyze`` cheaper; what it writes must not change. The manifest
in tests/data/analyze-before was made from the files the code wrote before issue 14 (commit
8d557dc, see its README): every .npy bit for bit, every PNG's pixels, every JSON's content
(less what differs between any two runs: timings, software versions, where the files lie).
Images go through the model in batches now; a batch of one is the computation as it was, and
a batch of several equals it to float rounding."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vitexplorer.cli import main

ROOT = Path(__file__).resolve().parents[2]
BEFORE = ROOT / "tests" / "data" / "analyze-before"
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


def manifest(folder: Path) -> dict[str, Any]:
    """What each file in ``folder`` holds: a .npy's bytes and a PNG's pixels as their sha256,
    a JSON's normalised content."""
    found: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npy":
            found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".png":
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            found[path.name] = [list(pixels.shape), hashlib.sha256(pixels.tobytes()).hexdigest()]
        elif path.suffix == ".json":
            found[path.name] = normalised(json.loads(path.read_text()))
    return found


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
    expected = json.loads((BEFORE / f"{run_name}.json").read_text())
    found = manifest(run(tmp_path, run_name, "--batch-size", "1"))
    assert sorted(found) == sorted(expected)  # the same files
    for name, content in expected.items():
        assert found[name] == content, name
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
            with Image.open(a) as x, Image.open(b) as y:
                np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
        else:
            facts = json.loads(b.read_text())
            assert facts.get("forward_batch", 1) >= 1
            assert_close(normalised(facts), normalised(json.loads(a.read_text())))
    facts = json.loads((batched / "00003.json").read_text())
    assert facts["forward_batch"] == (3 if run_name == "crop" else 2)  # the 32 px images share


def assert_close(found: Any, expected: Any) -> None:
    """Equal JSON, floats within 1e-6."""
    if isinstance(expected, dict):
        assert sorted(found) == sorted(expected)
        for key in expected:
            assert_close(found[key], expected[key])
    elif isinstance(expected, list):
        assert len(found) == len(expected)
        for x, y in zip(found, expected, strict=True):
            assert_close(x, y)
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=0, abs=1e-6)
    else:
        assert found == expected
