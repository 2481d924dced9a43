"""Every hostile pixel CSV (tests/core/test_csv_dataset.py) through ``vitexplorer finetune
--data`` and through the test-CSV reader: one clear line naming the file, exit 2, no checkpoint
written, never a traceback or a hang."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from tests.core.test_csv_dataset import HOSTILE_CSVS
from tests.fuzz.cli_run import run_cli
from tests.fuzz.conftest import record
from vitexplorer.core.training.pixel_csv import PixelCSVError, read_unlabelled_csv

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

FINE_AS_TEST_CSVS = {"no label column"}  # bad training data, a good test CSV


def test_every_hostile_csv_through_finetune(tmp_path: Path, capsys) -> None:
    problems = []
    for n, (case, labelled, make, message) in enumerate(HOSTILE_CSVS):
        if not labelled:
            continue
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        data = make(folder)
        out = folder / "model.safetensors"
        args = ["finetune", "--model", "small_vit", "--weights", "none", "--data", str(data)]
        status, _, lines, crashed = run_cli(
            [*args, "--out", str(out), "--epochs", "1"], capsys, drop_notes=True
        )
        record("pixel CSVs: vitexplorer finetune", case, crash=crashed, lost=out.exists())
        if crashed or status != 2 or lines != [f"vitexplorer: {message}"] or out.exists():
            problems.append(f"{case}: status {status}, {lines}")
    assert not problems, "\n".join(problems)


def test_every_hostile_csv_through_the_test_csv_reader(tmp_path: Path) -> None:
    problems = []
    for n, (case, _, make, _) in enumerate(HOSTILE_CSVS):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = make(folder)
        crashed = False
        try:
            read_unlabelled_csv(path)
            if case not in FINE_AS_TEST_CSVS:
                problems.append(f"{case}: read without complaint")
        except PixelCSVError as exc:
            if "\n" in str(exc) or not str(exc).startswith(f"{path.name}: "):
                problems.append(f"{case}: {exc}")
        except BaseException:  # what the suite looks for
            traceback.print_exc()
            crashed = True
            problems.append(f"{case}: crashed")
        record("pixel CSVs: the test-CSV reader", case, crash=crashed)
    assert not problems, "\n".join(problems)
