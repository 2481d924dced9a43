"""Every hostile image, through the image reader, through ``vitexplorer analyze`` (one batch, in
a process of its own, with a time limit) and its outputs: a clear line for each refusal, the
good images written, nothing hung, nothing run, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz.conftest import record
from tests.fuzz.hostile import MARKER, HostileImage, all_image_cases, upright_picture
from vitexplorer.cli.common import unique_stems
from vitexplorer.core.io.images import ImageLoadError, load_image

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

HANG_SECONDS = 20


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[HostileImage]:
    return all_image_cases(tmp_path_factory.mktemp("hostile-images"))


def _load_with_deadline(path: Path) -> tuple[str, object]:
    """("ok", image), ("refused", message), ("crash", exception) or ("hang", None)."""
    outcome: list[tuple[str, object]] = []

    def run() -> None:
        try:
            outcome.append(("ok", load_image(path)))
        except ImageLoadError as exc:
            outcome.append(("refused", str(exc)))
        except BaseException as exc:  # anything else is the bug being looked for
            outcome.append(("crash", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    return outcome[0] if outcome else ("hang", None)


def test_the_reader_refuses_or_shows_every_hostile_image(cases: list[HostileImage]) -> None:
    failures = []
    for case in cases:
        kind, value = _load_with_deadline(case.path)
        record("image reader (core)", case.case, crash=kind == "crash", hang=kind == "hang")
        if kind in ("crash", "hang"):
            failures.append(f"{case.case}: {kind} {value!r}")
        elif kind == "refused":
            message = str(value)
            if case.expect == "shown":
                failures.append(f"{case.case}: refused ({message})")
            elif "\n" in message or len(message) > 300 or case.words not in message.lower():
                failures.append(f"{case.case}: unclear refusal {message!r}")
        elif case.expect == "refused":
            failures.append(f"{case.case}: decoded, but should have been refused")
        else:
            assert value.mode == "RGB" and min(value.size) >= 1, case.case
    assert not failures, "\n".join(failures)
    assert not (cases[0].path.parent / MARKER).exists()


def test_every_exif_orientation_comes_out_upright(cases: list[HostileImage]) -> None:
    upright = np.asarray(upright_picture())
    exif = [c for c in cases if c.case.startswith("exif orientation")]
    assert len(exif) == 8
    for case in exif:
        assert np.array_equal(np.asarray(load_image(case.path)), upright), case.case


def test_analyze_refuses_each_bad_image_in_a_line_and_writes_the_good_ones(
    cases: list[HostileImage], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    kept = out / "notes.txt"
    kept.write_text("a file of the user's, already in the output folder\n")
    good = next(c for c in cases if c.case == "mode-RGBA.png")
    inputs = [c for c in cases if c is not good] + [good]  # the last input must still be done
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vitexplorer", "analyze", *[str(c.path) for c in inputs],
             "--model", str(tiny_checkpoint), "--device", "cpu", "--out", str(out)],
            capture_output=True, timeout=300, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        for case in inputs:
            record("vitexplorer analyze", case.case, hang=True)
        raise
    stderr = done.stderr.decode("utf-8", "replace")
    stdout = done.stdout.decode("utf-8", "replace")
    crashed = "Traceback" in stderr or done.returncode not in (0, 1)
    code_ran = (good.path.parent / MARKER).exists() or "hello from ghostscript" in stdout
    lines = [line for line in stderr.splitlines() if line.strip()]
    written = {p.name for p in out.iterdir()}
    failures = []
    for case, stem in zip(inputs, unique_stems([c.path for c in inputs]), strict=True):
        shown = f"{stem}.json" in written and f"{stem}.cls.png" in written
        refusals = [line for line in lines if _names(line, case.path)]
        lost = case.expect == "shown" and not shown
        record("vitexplorer analyze", case.case, crash=crashed, lost=lost, code=code_ran)
        if case.expect == "refused":
            if len(refusals) != 1 or case.words not in refusals[0].lower():
                failures.append(f"{case.case}: {refusals}")
        elif case.expect == "shown" and not shown:
            failures.append(f"{case.case}: no outputs ({refusals})")
    assert not crashed, stderr[-3000:]
    assert done.returncode == 1  # some inputs failed, the rest were written
    assert not code_ran
    assert kept.read_text() == "a file of the user's, already in the output folder\n"
    assert not [n for n in written if n.startswith(".")], "temporary files left behind"
    for name in (f"{good.path.stem}.json", f"{good.path.stem}.cls.png"):
        assert name in written
    assert not failures, "\n".join(failures)


def _names(line: str, path: Path) -> bool:
    """Whether an error line is about ``path`` (its name, as the CLI escapes it)."""
    from vitexplorer.core.io.images import _display_name

    return line.startswith(f"vitexplorer: {_display_name(path)}:")
