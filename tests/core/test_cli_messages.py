"""The training commands' refusals, each one line naming the file, the cause and what to do,
before any work; a file named like an option; model problems as exit 2; and Ctrl-C pressed
again while the interrupted run saves and exits."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_colour_splits

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--width", "16", "--depth", "1", "--heads", "2", "--patch-size", "8",
              "--per-class", "6", "--test-per-class", "2", "--batch-size", "4",
              "--probes", "0", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_splits(tmp_path_factory.mktemp("colours"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_ctrl_c_after_the_save_is_absorbed(colours: Path, tmp_path: Path) -> None:
    """Ctrl-C after the first epoch, then again right after the "saved" line: exit 130, one
    "interrupted" line, no traceback, and the checkpoint whole."""
    from vitexplorer.core.models.loading import load_model

    out = tmp_path / "m.safetensors"
    command = [sys.executable, "-m", "vitexplorer", "train", "--data", str(colours),
               "--out", str(out), "--epochs", "500", *TINY_TRAIN]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()
        assert '"epoch": 1' in first, first
        child.send_signal(signal.SIGINT)
        err = []
        for line in child.stderr:
            err.append(line)
            if "was saved to" in line:
                child.send_signal(signal.SIGINT)  # at once, while the program exits
                break
        rest_out, rest_err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    text = "".join(err) + rest_err
    assert child.returncode == 130, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert sum("interrupted" in line for line in text.splitlines()) == 1, text
    model = load_model(str(out), "default", "cpu")  # whole: it loads, with the dataset's classes
    assert model.spec.class_names == ("blue", "red")


def _run(args: list[str], capsys) -> tuple[int, list[str]]:
    from vitexplorer.cli import main

    status = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.strip()]


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), *TINY_TRAIN, *extra]


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building or loading any model fails the test: the refusals come before any work."""
    from vitexplorer.core.models import loading as models

    def refused(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(models, "load_model", refused)


def test_a_missing_probe_image_is_refused_before_any_work(
    colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _no_model(monkeypatch)
    out = tmp_path / "m.safetensors"
    missing = tmp_path / "probe.png"
    status, lines = _run(_train_args(colours, out, "--probe-image", str(missing)), capsys)
    assert status == 2
    assert lines == [
        f"vitexplorer: --probe-image {missing} does not exist; give an image file (or leave it out)"
    ]
    (tmp_path / "text.png").write_text("not an image")
    status, lines = _run(_train_args(colours, out, "--probe-image", str(tmp_path / "text.png")),
                         capsys)  # fmt: skip
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith("vitexplorer: --probe-image: text.png: ")
    assert lines[0].endswith("; give an image file (or leave it out)")
    assert not out.exists()


def test_a_file_that_exists_but_cannot_be_read_says_permission_denied(
    colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Tests run as root, whom chmod does not stop: ``os.open`` refuses as it would."""
    _no_model(monkeypatch)
    locked = tmp_path / "locked.csv"
    locked.write_text("pixel0\n1\n")
    real = os.open

    def refusing(path, flags, *args, **kwargs):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    extra = ["--test-csv", str(locked), "--predictions", str(tmp_path / "p.csv")]
    status, lines = _run(_train_args(colours, tmp_path / "m.safetensors", *extra), capsys)
    assert status == 2
    assert lines == [
        f"vitexplorer: --test-csv {locked}: permission denied (the file exists but cannot be "
        f"read); make it readable or give another file"
    ]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "folder",
            "{path} is a folder; give a weights file (.pth or .safetensors), default or none",
        ),
        ("fifo", "{path} is a named pipe (FIFO), not a regular file; give a weights file"),
        ("dangling", "{path} is a link to {tmp}/gone.pth, which does not exist; give a weights"),
        ("loop", "{path} is a link loop (it leads back to itself); give a weights file"),
    ],
)
def test_finetune_weights_that_are_no_file_are_named_with_the_cause(
    colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, kind: str, message: str
) -> None:
    _no_model(monkeypatch)
    path = tmp_path / "w.pth"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone.pth")
    else:
        path.symlink_to(path)
    args = ["finetune", "--model", "small_vit", "--weights", str(path), "--data", str(colours),
            "--out", str(tmp_path / "m.safetensors"), "--device", "cpu"]  # fmt: skip
    status, lines = _run(args, capsys)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"vitexplorer: --weights {message.format(path=path, tmp=tmp_path)}")
    assert kind != "fifo" or stat.S_ISFIFO(os.lstat(path).st_mode)  # the FIFO is left as it was


def test_an_out_that_is_a_fifo_is_refused_and_kept(
    colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _no_model(monkeypatch)
    out = tmp_path / "m.safetensors"
    os.mkfifo(out)
    status, lines = _run(_train_args(colours, out), capsys)
    assert status == 2
    assert lines == [
        f"vitexplorer: --out {out} is not a regular file (a FIFO or a device); a checkpoint must "
        f"be a file: give another name"
    ]
    assert stat.S_ISFIFO(os.lstat(out).st_mode)


def test_a_data_root_that_is_no_folder_is_refused_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from vitexplorer.core.training import datasets

    def no_download(*args, **kwargs):
        raise AssertionError("a download started")

    monkeypatch.setattr(datasets, "download_cifar10", no_download)
    root = tmp_path / "root"
    root.write_text("a file")
    args = ["train", "--data", "cifar10", "--data-root", str(root),
            "--out", str(tmp_path / "m.safetensors"), *TINY_TRAIN]  # fmt: skip
    status, lines = _run(args, capsys)
    assert status == 2
    assert lines == [
        f"vitexplorer: --data-root {root} is a file, not a folder; give the folder where "
        f"CIFAR-10 is (or will be) kept"
    ]


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["-x.png"], "put -- before it or write ./-x.png"),
        (["analyze", "-x.png", "--model", "demo", "--out", "o"],
         "put -- before it or write ./-x.png"),
        (["train", "--data", "d", "--out", "m.safetensors", "--probe-image", "-x.png"],
         "write --probe-image ./-x.png or --probe-image=-x.png"),
        (["train", "--data", "d", "--out", "m.safetensors", "-x.png"],
         "write it as ./-x.png after the option it is for"),
    ],
)  # fmt: skip
def test_a_file_named_like_an_option_gets_the_way_to_pass_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, args: list[str], hint: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-x.png").write_bytes(b"")
    status, lines = _run(args, capsys)
    assert status == 2
    assert lines[-1].endswith(
        f"; -x.png is a file: to pass a file whose name starts with '-', {hint}"
    )
    (tmp_path / "-x.png").unlink()  # without such a file, argparse's own line, unchanged
    status, lines = _run(args, capsys)
    assert status == 2 and "-x.png is a file" not in lines[-1]


def test_a_model_error_that_escapes_a_command_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from vitexplorer.cli import analyze
    from vitexplorer.core.models.checkpoint import WeightsFileError

    def failing(options):
        raise WeightsFileError("m.safetensors: the header is not JSON; save the model again")

    monkeypatch.setattr(analyze, "run_analyze", failing)
    args = ["analyze", "x.png", "--model", "demo", "--out", "o"]
    status, lines = _run(args, capsys)
    assert status == 2
    assert lines == ["vitexplorer: m.safetensors: the header is not JSON; save the model again"]

    def buggy(options):
        raise ZeroDivisionError("a bug, not an input")

    monkeypatch.setattr(analyze, "run_analyze", buggy)
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        _run(args, capsys)
