"""A path written '~nouser/...' is refused in one line, never a traceback (issue 22)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitexplorer.cli import main
from vitexplorer.core.io.paths import UserPathError, expand_user

NOUSER = "~nosuchuser_xyz"


def test_expand_user_expands_the_home_and_names_the_missing_user(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/tmp/some-home")
    assert expand_user("~/a.png") == Path("/tmp/some-home/a.png")
    assert expand_user("plain/a.png") == Path("plain/a.png")
    with pytest.raises(UserPathError) as caught:
        expand_user(f"{NOUSER}/a.png")
    assert str(caught.value) == f"{NOUSER}/a.png: there is no user 'nosuchuser_xyz' on this machine"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "argv, shown",
    [
        (["analyze", f"{NOUSER}/a.png", "--model", "x", "--out", "OUT"], f"{NOUSER}/a.png"),
        (["stats", f"{NOUSER}/a.png", "--model", "x", "--out", "OUT"], f"{NOUSER}/a.png"),
        (["analyze", "IMG", "--model", "x", "--out", f"{NOUSER}/o"], f"{NOUSER}/o"),
        (["train", "--data", f"{NOUSER}/d", "--out", "OUT/m.safetensors"], f"{NOUSER}/d"),
        (
            ["finetune", "--model", "x", "--data", "cifar10", "--out", f"{NOUSER}/m.safetensors"],
            f"{NOUSER}/m.safetensors",
        ),
        (["timelapse", f"{NOUSER}/m.safetensors", "--out", "OUT"], f"{NOUSER}/m.safetensors"),
    ],
)
def test_cli_refuses_a_missing_user_in_one_line(argv, shown, tmp_path, capsys) -> None:
    image = Path(__file__).parents[1] / "data" / "cifar10-test-sample"
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    argv = [a.replace("OUT/", f"{tmp_path}/") for a in argv]
    argv = [str(image) if a == "IMG" else a for a in argv]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines == [f"vitexplorer: {shown}: there is no user 'nosuchuser_xyz' on this machine"]
    assert not os.listdir(tmp_path)
