"""The fuzz suite's tally: every hostile input tried, through which door, and what went wrong
(a crash, a hang, a file lost, code executed). The tests assert each input's outcome; the tally
is printed at the end of the run, and its figures are the README's reliability table."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections import defaultdict
from dataclasses import dataclass, field

from tests.gui.conftest import collect_closed_windows  # noqa: F401  (autouse here too)

PROBLEMS = ("crashes", "hangs", "files lost", "code executed")


@dataclass
class Door:
    tried: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


TALLY: dict[str, Door] = defaultdict(Door)


def record(door: str, case: str, **problems: bool) -> None:
    """One input tried through ``door`` (e.g. "analyze", "window"); keyword flags name what went
    wrong: crash, hang, lost, code."""
    names = {"crash": "crashes", "hang": "hangs", "lost": "files lost", "code": "code executed"}
    entry = TALLY[door]
    entry.tried += 1
    for flag, happened in problems.items():
        if happened:
            entry.problems[names[flag]].append(case)


def pytest_terminal_summary(terminalreporter) -> None:
    if not TALLY:
        return
    write = terminalreporter.write_line
    write("")
    write("fuzz suite: hostile inputs tried, and what went wrong")
    width = max(34, *(len(door) + 2 for door in TALLY))
    header = f"{'door':<{width}}{'inputs':>8}" + "".join(f"{p:>15}" for p in PROBLEMS)
    write(header)
    total = Door()
    for door in sorted(TALLY):
        entry = TALLY[door]
        total.tried += entry.tried
        counts = [len(entry.problems.get(p, [])) for p in PROBLEMS]
        for p in PROBLEMS:
            total.problems[p].extend(entry.problems.get(p, []))
        write(f"{door:<{width}}{entry.tried:>8}" + "".join(f"{c:>15}" for c in counts))
    counts = [len(total.problems.get(p, [])) for p in PROBLEMS]
    write(f"{'all':<{width}}{total.tried:>8}" + "".join(f"{c:>15}" for c in counts))


# --- a tiny model, as the other suites use ---------------------------------------------------

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from vitexplorer.core.models.loading import load_model, save_checkpoint
    from vitexplorer.core.models.vit import SmallViTConfig

    torch.manual_seed(0)
    config = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=5)
    model = load_model("small_vit", "none", "cpu", small_config=config)
    path = tmp_path_factory.mktemp("fuzz-model") / "tiny.safetensors"
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(5)]})
    return path
