"""Every script in benchmarks/ smoke-run with tiny settings, as a user runs it (a fresh process):
it exits 0 and prints its result lines, whose numbers are finite and not negative (and positive
where the printed precision allows). The figures themselves are measured by hand for the README;
this only keeps the scripts working as the code they measure changes."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
HELPERS = {"gpu_check_training.py"}  # imported by gpu_check.py, not a script of its own
N = r"(?P<{}>\d+(?:\.\d+)?)"  # a printed number, named


def number(name: str) -> str:
    return N.format(name)


# script -> (arguments, [(result line pattern, the groups that must be positive)]);
# {data}: train/ and test/ folders of 10 classes (15 + 3 images each, 32 px); {photos}: one photo
CASES: dict[str, tuple[list[str], list[tuple[str, set[str]]]]] = {
    "analyze_throughput.py": (
        ["{photos}", "--models", "vit_b_32", "--counts", "1", "--repeats", "1"],
        [
            (
                rf"^vit_b_32, 1 photo\(s\): analyze {number('analyze')} s, minimal script "
                rf"{number('minimal')} s: {number('ratio')}x$",
                {"analyze", "minimal", "ratio"},
            )
        ],
    ),
    "capture_overhead.py": (
        ["--families", "small", "--runs", "1", "--batch", "1"],
        [
            (
                rf"^small\s+small_vit\s+{number('plain')}\s+{number('captured')}\s+"
                rf"{number('ratio')}$",
                {"plain", "captured", "ratio"},
            )
        ],
    ),
    "drop_many.py": (
        ["--count", "20", "--settle", "0.2"],
        [
            (
                rf"^new: 20 images; drop call returned in {number('returned')} ms; first 10 ms "
                rf"tick after {number('tick')} ms; all in the strip after {number('all_in')} s; "
                rf"longest stall {number('stall')} ms",
                {"tick", "stall"},
            )
        ],
    ),
    "finetune_speed.py": (
        ["--data", "{data}", "--per-class", "4", "--test-per-class", "2", "--epochs", "1"]
        + ["--workers", "0"],
        [
            (
                rf"^\s*engine, float32\s*: wall\s+{number('wall')} s, train phase\s+"
                rf"{number('train')} s, test pass\s+{number('test')} s, test accuracy\s+"
                rf"{number('accuracy')}%$",
                {"wall", "train", "test"},
            ),
            (
                rf"^\s*baseline\s*: wall\s+{number('wall')} s, train phase\s+{number('train')} s,"
                rf" test pass\s+{number('test')} s, test accuracy\s+{number('accuracy')}%$",
                {"wall", "train", "test"},
            ),
            (rf"^\s*engine, float32: {number('speed')}x the baseline's speed", {"speed"}),
        ],
    ),
    "fit_title.py": (
        ["--chars", "300", "--repeats", "1"],
        [
            (rf"^\s*linear \(old\)\s+{number('old')} ms$", {"old"}),
            (rf"^\s*bisection\s+{number('new')} ms$", {"new"}),
            (rf"^\s*old / new\s+{number('ratio')}x$", {"ratio"}),
        ],
    ),
    "folder_scan.py": (
        ["--files", "50", "--classes", "2", "--repeats", "1"],
        [
            (
                rf"^{number('files')} files in 2 class folders \(warm cache, median of 1\): rglob"
                rf" \+ is_file {number('before')} s, os.scandir {number('now')} s: "
                rf"{number('ratio')}x$",
                {"files", "ratio"},
            )
        ],
    ),
    "gpu_check.py": (["--quick", "--device", "cpu"], []),  # skipped below: run in-process
    "gui_latency.py": (
        ["--model", "small_vit", "--clicks", "5", "--switch", "small_vit"],
        [
            (rf"^first analysis on screen\s+{number('seconds')} s$", {"seconds"}),
            (
                rf"^redraw per click/layer\s+median {number('median')} ms, 95th percentile "
                rf"{number('p95')} ms, max {number('max')} ms$",
                {"max"},
            ),
            (
                rf"^switch to small_vit\s+model ready\s+{number('ready')} s, first analysis on "
                rf"screen\s+{number('first')} s$",
                {"first"},
            ),
        ],
    ),
    "gui_training_responsiveness.py": (
        ["--data", "{data}", "--per-class", "4", "--test-per-class", "2", "--epochs", "1"]
        + ["--batch-size", "8", "--baseline", "0.2"],
        [
            (
                rf"^run .* 1 epochs, batch 8: {number('steps')} steps, test accuracy "
                rf"{number('accuracy')}%",
                {"steps"},
            ),
            (rf"^whole run\s+{number('seconds')} s\s+max gap\s+{number('gap')} ms", {"gap"}),
        ],
    ),
    "load_time.py": (
        ["--models", "small_vit", "--repeats", "1"],
        [
            (
                rf"^small_vit \({number('mb')} MB\): random init then copy {number('before')} s,"
                rf" meta device and assign {number('now')} s: {number('ratio')}x$",
                {"mb", "before", "ratio"},
            )
        ],
    ),
    "method_cost.py": (  # a tiny torchvision ViT at 32 px; --max-load: never refused here
        ["--size", "32", "--runs", "1", "--warmup", "0", "--max-load", "1000"],
        [
            (
                rf"^{name}\s+ours\s+{number('ours')} passes \({number('seconds')} s/image\)\s+"
                rf"reference -\s+load {number('before')} -> {number('after')}\s+\(none published",
                {"ours"},
            )
            for name in ("attention", "rollout", "relevance", "grad-attention")
        ]
        + [
            (
                rf"^{name}\s+ours\s+{number('ours')} passes \({number('seconds')} s/image\)\s+"
                rf"reference\s+{number('theirs')} passes \({number('their_s')} s/image\)\s+ratio "
                rf"min {number('low')} median {number('median')} max {number('high')}\s+load "
                rf"{number('before')} -> {number('after')}$",
                {"ours", "low", "median", "high"},
            )
            for name in (
                "integrated-gradients",
                "smoothgrad",
                "occlusion",
                "gradcam",
                "attnlrp",
                "chefer-lrp",
                "cp-lrp",
                "legrad",
            )
        ],
    ),
    "rollout_latency.py": (
        ["--quick", "--clicks", "5", "--repeats", "1"],
        [
            (r"^attention \(2, 2, 17, 17\) float32", set()),
            (rf"^\s*fusion mean discard 0\.9\s+{number('ms')} ms$", set()),
            (
                rf"^\s*fusion max\s+discard 0\.0\s+median\s+{number('median')} ms\s+p95\s+"
                rf"{number('p95')} ms\s+max\s+{number('max')} ms$",
                set(),  # a 4x4 grid's click takes microseconds: printed as 0.00 ms
            ),
        ],
    ),
    "subset_loading.py": (
        ["--data", "{data}", "--per-class", "4", "--test-per-class", "2", "--repeats", "1"],
        [
            (rf"^\S+: {number('images')} images, 4 \+ 2 per class$", {"images"}),
            (
                rf"^1 thread\(s\): best {number('seconds')} s of 1 \({number('rate')} images/s\)$",
                {"rate"},
            ),
        ],
    ),
    "timelapse_overhead.py": (
        ["--quick", "--runs", "scratch", "--repeats", "1", "--data", "{data}"],
        [
            (
                rf"^\s*from scratch: 10 probes, {number('frames')} frames: {number('seconds')} s",
                {"frames", "seconds"},
            ),
            (
                rf"^from scratch: {number('without')} s without probes, {number('with')} s with "
                rf"10: {number('ratio')}x; the frames' own time {number('share')}%",
                {"without", "with", "ratio", "share"},
            ),
        ],
    ),
    "train_from_scratch.py": (
        ["{data}", "--per-class", "13", "--test-per-class", "2"],
        [
            (
                rf"^{name}\s+{number('rate')} images/s\s+{number('seconds')} s training\s+test "
                rf"accuracy {number('accuracy')}%\s+peak memory {number('mb')} MB$",
                {"rate", "seconds", "mb"},
            )
            for name in ("engine", "plain")
        ]
        + [(rf"^engine / plain loop: {number('ratio')}x images per second$", {"ratio"})],
    ),
}
SKIPPED = {
    "gpu_check.py": "smoke-run on the CPU with --quick, in-process, by tests/core/test_gpu_check.py"
}


def test_every_benchmark_has_a_smoke_run() -> None:
    """A new script in benchmarks/ needs its tiny settings here."""
    scripts = {path.name for path in BENCHMARKS.glob("*.py")} - HELPERS
    assert scripts == set(CASES)
    assert set(SKIPPED) <= set(CASES)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{data}: noisy solid colours, one colour per class; {photos}: the bundled sample photo."""
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    for c in range(10):
        colour = rng.integers(0, 256, 3)
        for split, count in (("train", 15), ("test", 3)):
            folder = root / "data" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(colour + rng.normal(0, 40, (32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    photos = root / "photos"
    photos.mkdir()
    (photos / "sample.png").write_bytes((ROOT / "vitexplorer/resources/sample.png").read_bytes())
    return {"data": str(root / "data"), "photos": str(photos)}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_smoke_run(script: str, folders: dict[str, str], tmp_path: Path) -> None:
    if script in SKIPPED:
        pytest.skip(SKIPPED[script])
    arguments, patterns = CASES[script]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(BENCHMARKS / script)]
    command += [argument.format(**folders) for argument in arguments]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for pattern, positive in patterns:
        found = [m for m in map(re.compile(pattern).search, lines) if m]
        assert found, f"no line matching {pattern!r} in:\n{done.stdout}"
        for match in found:
            values = {name: float(text) for name, text in match.groupdict().items()}
            assert all(math.isfinite(v) and v >= 0 for v in values.values()), match.group(0)
            assert all(values[name] > 0 for name in positive), match.group(0)
    if script == "fit_title.py":  # it names the package it measured: this checkout's
        assert lines[0] == f"vitexplorer from {ROOT / 'vitexplorer'}"
