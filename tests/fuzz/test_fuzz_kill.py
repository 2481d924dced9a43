"""kill -9 in the middle of saving a checkpoint, at random moments: the file at the output path
is always the previous complete one, and the next save into the folder removes what the killed
ones left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fuzz.conftest import record
from vitexplorer.core.io.staging import TEMP_PREFIX
from vitexplorer.core.models.checkpoint import save_weights

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

TRIALS = 12

_SAVER = """
import sys, torch
from vitexplorer.core.models.checkpoint import save_weights
target, start = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
for n in range(start, start + 1000):
    save_weights(target, {"w": torch.full((1_500_000,), float(n))}, {"n": n})
"""


def test_a_checkpoint_killed_mid_save_is_never_corrupt(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    save_weights(target, {"w": torch.full((1_500_000,), -1.0)}, {"n": -1})
    rng = random.Random(3)
    problems = []
    for trial in range(TRIALS):
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(target), str(trial * 1000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        try:
            values = load_file(str(target))["w"]
            whole = bool((values == values[0]).all())
        except Exception as exc:  # a corrupt file is what is looked for
            whole, values = False, exc
        record("kill -9 while saving", f"trial {trial}", lost=not whole)
        if not whole:
            problems.append(f"trial {trial}: {values!r}")
    assert not problems, problems
    save_weights(target, {"w": torch.zeros(3)}, {"n": "last"})
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())
