"""The one atomic-write helper: any legal name, the umask's permissions, leftovers of killed
writes removed by the next write, a full disk named as such."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitexplorer.core.io import files, staging
from vitexplorer.core.io.staging import STALE_AFTER, TEMP_PREFIX, remove_stale_temporaries
from vitexplorer.core.models.checkpoint import save_weights


def test_a_name_of_the_longest_legal_length_can_be_written(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    target = tmp_path / ("n" * (limit - len(".safetensors")) + ".safetensors")
    save_weights(target, {"w": torch.ones(3)}, {"k": 1})
    assert torch.equal(load_file(str(target))["w"], torch.ones(3))
    long_npy = tmp_path / ("a" * 230 + ".npy")  # the 234-character name of the report
    files.write_atomic(long_npy, lambda f: f.write(b"data"))
    assert long_npy.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, long_npy.name])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_writer_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        files.write_atomic(tmp_path / "a.json", lambda f: f.write(b"{}"))
        save_weights(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, {})
        with files.atomic_path(tmp_path / "p.png") as tmp:
            tmp.write_bytes(b"png")
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(old)
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.json", "m.safetensors", "p.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_the_temporary_file_keeps_the_suffix_for_exporters(tmp_path: Path) -> None:
    with files.atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent.parent == tmp_path
        assert tmp.parent.name.startswith(TEMP_PREFIX)
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError, match="writer broke"):
        files.write_atomic(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_numpys_byte_count_on_a_full_disk_becomes_no_space(tmp_path: Path, monkeypatch) -> None:
    class Usage:
        free = 4096

    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: Usage)

    def numpy_like(handle):
        raise OSError("10000 requested and 4096 written")

    with pytest.raises(OSError) as caught:
        files.write_atomic(tmp_path / "x.npy", numpy_like)
    assert caught.value.errno == errno.ENOSPC
    assert "no space left" in str(caught.value) and str(tmp_path) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_safetensors_failure_on_a_full_disk_is_an_os_error(tmp_path: Path, monkeypatch) -> None:
    from safetensors import SafetensorError

    from vitexplorer.core.models import checkpoint

    class Usage:
        free = 0

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28 })")

    monkeypatch.setattr(checkpoint, "save_file", full)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: Usage)
    with pytest.raises(OSError) as caught:
        save_weights(tmp_path / "m.safetensors", {"w": torch.zeros(1)}, {})
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_free_space_problem_names_needed_and_free(tmp_path: Path, monkeypatch) -> None:
    assert files.free_space_problem(tmp_path, 1000) is None

    class Usage:
        free = 50_000_000

    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: Usage)
    message = files.free_space_problem(tmp_path, 340_000_000)
    assert message is not None
    assert "340.0 MB needed" in message and "50.0 MB free" in message and str(tmp_path) in message
    assert "keeps 16.8 MB free beyond each file" in message  # the margin that refused it
    assert files.free_space_problem(tmp_path, 50_000_000 - files.ROOM_MARGIN) is None


_SLOW_SAVE = """
import sys, time
from pathlib import Path
from vitexplorer.core.io.files import atomic_path
target = Path(sys.argv[1])
with atomic_path(target) as tmp:
    with open(tmp, "wb") as handle:
        handle.write(b"partial")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_leftovers_of_a_killed_write_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    save_weights(target, {"w": torch.ones(4)}, {"v": 1})
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(leftovers) == 1 and (leftovers[0] / "staged.safetensors").read_bytes() == b"partial"
    assert torch.equal(load_file(str(target))["w"], torch.ones(4))  # never half written

    # a live writer's staging folder (this owner, a live process) is left alone
    live = tmp_path / f"{TEMP_PREFIX}{staging.this_owner().id}-{os.getppid()}-abc.tmp"
    live.mkdir()
    (live / "staged.npy").write_bytes(b"in use")
    save_weights(target, {"w": torch.full((4,), 2.0)}, {"v": 2})
    assert not leftovers[0].exists()
    assert (live / "staged.npy").read_bytes() == b"in use"
    assert torch.equal(load_file(str(target))["w"], torch.full((4,), 2.0))

    # ... unless it is a day old
    old = time.time() - STALE_AFTER - 10
    os.utime(live / "staged.npy", (old, old))
    os.utime(live, (old, old))
    assert remove_stale_temporaries(tmp_path) == [live]


def _fifo_with_reader(path: Path) -> int:
    """A FIFO at ``path`` and a non-blocking reader on it, so a writer's open does not wait."""
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


@pytest.mark.parametrize("through_link", [False, True])
def test_a_fifo_target_is_written_as_a_stream_and_stays_a_fifo(
    tmp_path: Path, through_link: bool
) -> None:
    fifo = tmp_path / "pipe"
    reader = _fifo_with_reader(fifo)
    target = fifo
    if through_link:
        target = tmp_path / "link.csv"
        target.symlink_to(fifo)
    try:
        staged = []

        def write(handle):
            staged.append(Path(handle.name))
            handle.write(b"a,b\n1,2\n")

        files.write_atomic(target, write)
        assert os.read(reader, 1024) == b"a,b\n1,2\n"
        # staged in the system's temporary folder, not beside the node (think of /dev)
        assert staged[0].parent != tmp_path and not staged[0].exists()
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    if through_link:
        assert target.is_symlink() and os.readlink(target) == str(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["pipe"] + (["link.csv"] if through_link else [])
    )


def test_a_character_device_target_is_streamed_into_not_renamed_over(
    tmp_path: Path, monkeypatch
) -> None:
    # a regular file that os.stat reports as a character device: its inode must survive
    device = tmp_path / "device"
    device.write_bytes(b"old contents")
    inode = device.stat().st_ino
    real_stat = os.stat

    def fake_stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if Path(path) == device:
            mode = stat.S_IFCHR | stat.S_IMODE(result.st_mode)
            return os.stat_result((mode, *tuple(result)[1:]))
        return result

    monkeypatch.setattr(files.os, "stat", fake_stat)
    files.write_atomic(device, lambda handle: handle.write(b"new"))
    monkeypatch.undo()
    assert device.stat().st_ino == inode
    assert device.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["device"]


def test_a_folder_or_socket_target_is_refused_before_writing(tmp_path: Path) -> None:
    import socket

    folder = tmp_path / "out.csv"
    folder.mkdir()
    sock_path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    called = []
    try:
        for target in (folder, sock_path):
            with pytest.raises(OSError, match="give a file's name") as caught:
                files.write_atomic(target, lambda handle: called.append(handle))
            assert "\n" not in str(caught.value)
    finally:
        server.close()
    assert called == []
    assert folder.is_dir() and stat.S_ISSOCK(os.stat(sock_path).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "s"]
