"""Fuzz: the output sets of ``analyze`` and ``compare`` under kill -9 and a full disk, and the
staging folders of other runs (issue 22, "Files lost").

Every card present after a run (``<stem>.json``, each method card, ``head_changes.json``) must
name only files that exist, of the sizes it says, and of its own run (an attention array with
the card's layers, a map of the card's shape); a full disk at any file of an image leaves that
image's older files as they were and says so in one line. A staging folder that is not provably
dead (another host's, another container's, another boot's written since this boot, a locked
one, an old-form one less than a week old) survives every write; a provably dead one goes."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fuzz.conftest import record
from vitexplorer.cli import main
from vitexplorer.core.io import files, staging
from vitexplorer.core.io.staging import TEMP_PREFIX

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = "outputs: kill -9 and full disk during analyze/compare"
STAGING = "staging entries of other runs"


def _checkpoint(folder: Path, depth: int, seed: int) -> Path:
    from vitexplorer.core.models.loading import load_model, save_checkpoint
    from vitexplorer.core.models.vit import SmallViTConfig

    torch.manual_seed(seed)
    config = SmallViTConfig(
        image_size=32, patch_size=8, width=32, depth=depth, heads=2, num_classes=5
    )
    model = load_model("small_vit", "none", "cpu", small_config=config)
    path = folder / f"d{depth}s{seed}.safetensors"
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(5)]})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("output-models")
    return {
        "two": _checkpoint(folder, 2, 0),
        "three": _checkpoint(folder, 3, 1),
        "other": _checkpoint(folder, 2, 2),
    }


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
    return [folder / f"im{i}.png" for i in range(count)]


def set_problems(folder: Path) -> list[str]:
    """Every card in ``folder`` that names a missing file, a file of another size, or a file of
    another run (an array whose shape its card does not say)."""
    problems = []
    for card in sorted(folder.glob("*.json")):
        facts = json.loads(card.read_bytes())
        listed = facts.get("files")
        if listed is None:
            problems.append(f"{card.name} names no files")
            continue
        for entry in listed:
            named = folder / entry["name"]
            if not named.is_file():
                problems.append(f"{card.name} names {entry['name']}, which is missing")
            elif named.stat().st_size != entry["bytes"]:
                problems.append(f"{card.name}: {entry['name']} is of another size than it says")
        if "attention_file" in facts and (folder / facts["attention_file"]).is_file():
            layers = np.load(folder / facts["attention_file"]).shape[0]
            if layers != facts["num_layers"]:
                problems.append(f"{card.name}: {facts['attention_file']} of another run")
        if "map" in facts and (folder / facts["map"]["file"]).is_file():
            if list(np.load(folder / facts["map"]["file"]).shape) != facts["map"]["shape"]:
                problems.append(f"{card.name}: {facts['map']['file']} of another run")
    return problems


def _contents(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith(prefix)}


def _full_disk(monkeypatch, position: int, failure: OSError) -> None:
    """The ``position``-th file written through core/files (from 0, any thread) fails."""
    real_open, count, lock = open, [0], threading.Lock()

    def opener(path, mode="r", *args, **kwargs):
        if "w" in mode:
            with lock:
                count[0] += 1
                if count[0] == position + 1:
                    raise failure
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", opener, raising=False)


POSITIONS = {"ENOSPC": range(12), "EDQUOT": range(0, 12, 2), "numpy's byte count": range(1, 12, 2)}


class _Usage:
    free = 4096


FAILURES: dict[str, Callable[[], OSError]] = {
    "ENOSPC": lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "EDQUOT": lambda: OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
    "numpy's byte count": lambda: OSError("1048576 requested and 4096 written"),
}


def test_a_full_disk_at_every_file_of_analyze(models, tmp_path, monkeypatch, capsys) -> None:
    images = _images(tmp_path / "in", 2)
    base = tmp_path / "old"
    args = ["analyze", *map(str, images), "--method", "rollout", "--device", "cpu"]
    assert main([*args, "--model", str(models["three"]), "--out", str(base)]) == 0
    per_image = 6  # two data files and a card of the image, two and a card of the method
    problems = []
    for name, failure in FAILURES.items():
        for position in POSITIONS[name]:
            case = f"analyze, {name} at file {position + 1} of {2 * per_image}"
            out = tmp_path / f"out-{name[:6]}-{position}"
            shutil.copytree(base, out)
            old = _contents(out)
            capsys.readouterr()
            with monkeypatch.context() as patch:
                _full_disk(patch, position, failure())
                if name == "numpy's byte count":
                    patch.setattr(files.shutil, "disk_usage", lambda folder: _Usage())
                try:
                    status = main([*args, "--model", str(models["two"]), "--out", str(out)])
                except BaseException:  # what the suite looks for
                    record(OUTPUTS, case, crash=True)
                    problems.append(f"{case}: crashed")
                    continue
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            found = set_problems(out)
            failed = [image.name for image in images if image.name in " ".join(err)]
            for image in images:  # the failed image's files are the old run's, every byte
                if image.name in failed and _contents(out, image.stem + ".") != {
                    k: v for k, v in old.items() if k.startswith(image.stem + ".")
                }:
                    found.append(f"{image.name}'s older files changed")
            lost = bool(found) or any(p.name.startswith(TEMP_PREFIX) for p in out.iterdir())
            clear = len(err) == 1 and len(failed) == 1 and "cannot write to" in err[0]
            clear = clear and ("no space left" in err[0].lower() or "quota" in err[0].lower())
            record(OUTPUTS, case, crash="Traceback" in "\n".join(err), lost=lost)
            if status != 1 or not clear or lost:
                problems.append(f"{case}: status {status}, {err}, {found}")
    assert not problems, "\n".join(problems)


def test_a_full_disk_at_every_file_of_compare(models, tmp_path, monkeypatch, capsys) -> None:
    images = _images(tmp_path / "in", 2)
    base = tmp_path / "old"
    pair = ["--model", str(models["two"]), "--model", str(models["other"])]
    old_args = ["compare", *map(str, images), *pair, "--method", "rollout", "--device", "cpu"]
    assert main([*old_args, "--out", str(base)]) == 0
    args = ["compare", *map(str, images), *pair, "--method", "attention", "--layer", "1"]
    positions = 2 * 9 + 2  # per image: A, B and B-A, each .npy, .png and card; the table
    problems = []
    for position in range(positions):
        case = f"compare, ENOSPC at file {position + 1} of {positions}"
        out = tmp_path / f"out-{position}"
        shutil.copytree(base, out)
        old = _contents(out)
        capsys.readouterr()
        with monkeypatch.context() as patch:
            _full_disk(patch, position, FAILURES["ENOSPC"]())
            try:
                status = main([*args, "--device", "cpu", "--out", str(out)])
            except BaseException:
                record(OUTPUTS, case, crash=True)
                problems.append(f"{case}: crashed")
                continue
        err = [
            line
            for line in capsys.readouterr().err.splitlines()
            if line.strip() and "note:" not in line
        ]
        found = set_problems(out)
        stems = [image.stem for image in images if image.name in " ".join(err)]
        if position >= positions - 2:
            stems = ["head_changes"]  # the table: the last set written
        for stem in stems:
            if _contents(out, stem + ".") != {
                k: v for k, v in old.items() if k.startswith(stem + ".")
            }:
                found.append(f"{stem}'s older files changed")
        lost = bool(found) or any(p.name.startswith(TEMP_PREFIX) for p in out.iterdir())
        expected = 2 if position >= positions - 2 else 1
        clear = len(err) == 1 and "No space left" in err[0] and len(stems) == 1
        record(OUTPUTS, case, crash="Traceback" in "\n".join(err), lost=lost)
        if status != expected or not clear or lost:
            problems.append(f"{case}: status {status}, {err}, {found}")
    assert not problems, "\n".join(problems)


_KILLER = """
import os, signal, sys, time
import torch  # imported once, no operation run: the forked runs start at once
import vitexplorer.cli.analyze, vitexplorer.core.explain.analysis, vitexplorer.core.render.figure
import vitexplorer.core.explain.methods, vitexplorer.core.models.loading
from vitexplorer.cli import main
for line in sys.stdin:
    start = time.monotonic()
    delay, *args = line.rstrip("\\n").split("\\t")
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        os._exit(main(args))
    if float(delay) >= 0:
        time.sleep(float(delay))
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print(status, round(time.monotonic() - start, 3), flush=True)
"""


@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_during_analyze(models, tmp_path) -> None:
    """One process imports vitexplorer once and forks a real ``analyze`` per trial, killed at a
    random moment; the runs differ (model depth, methods), so their files differ."""
    images = _images(tmp_path / "in", 8)
    out = tmp_path / "out"
    runs = [
        [str(models["three"]), "--method", "rollout"],
        [str(models["two"]), "--method", "rollout", "--method", "attention"],
        [str(models["two"]), "--method", "attention"],
    ]
    killer = subprocess.Popen(
        [sys.executable, "-c", _KILLER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert killer.stdin is not None and killer.stdout is not None
    rng = random.Random(2222)
    problems: list[str] = []
    statuses: list[str] = []

    def trial(delay: float, run: list[str]) -> tuple[str, float]:
        args = ["analyze", *map(str, images), "--device", "cpu", "--out", str(out), "--model", *run]
        killer.stdin.write("\t".join([str(delay), *args]) + "\n")
        killer.stdin.flush()
        status, _, seconds = killer.stdout.readline().strip().partition(" ")
        return status, float(seconds or 0)

    try:
        status, whole = trial(-1, runs[0])  # an older run, whole: how long a run takes
        assert status == "0" and len(list(out.glob("*.json"))) == 16
        for number in range(10):
            delay = rng.uniform(0.05, 1.0) * whole
            status, _ = trial(delay, runs[1 + number % 2])
            found = set_problems(out)
            case = f"kill -9 {delay:.2f} s into analyze, trial {number + 1}"
            record(OUTPUTS, case, lost=bool(found), hang=status == "")
            problems += [f"{case}: {p}" for p in found]
            statuses.append(status)
        assert trial(-1, runs[1])[0] == "0"  # a whole run after them: every image's set complete
        found = set_problems(out)
        if any(p.name.startswith(TEMP_PREFIX) for p in out.iterdir()):
            found.append("staging folders of the killed runs are left after a whole run")
        if len(list(out.glob("*.json"))) != 8 * 3:
            found.append("a whole run did not write every card")
        problems += found
    finally:
        killer.stdin.close()
        killer.wait(timeout=60)
    assert not problems, "\n".join(problems)
    print("kill statuses:", statuses, "a whole run:", whole)


# --- staging folders of other runs ----------------------------------------------------------


def _other(digits: str, flip: int = 1) -> str:
    return format(int(digits, 16) ^ flip, "08x")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _entry(folder: Path, owner: str, pid: int, age: float, lock: bool = True) -> Path:
    path = folder / f"{TEMP_PREFIX}{owner}-{pid}-q{len(os.listdir(folder))}.tmp"
    path.mkdir()
    (path / "staged.safetensors").write_bytes(b"a model being saved")
    if lock:
        (path / staging.LOCK_NAME).write_bytes(b"")
    _age(path, age)
    return path


def _age(path: Path, age: float) -> None:
    when = time.time() - age
    for item in (*path.iterdir(), path) if path.is_dir() else (path,):
        os.utime(item, (when, when), follow_symlinks=False)


DAY, WEEK = staging.STALE_AFTER + 60, staging.FOREIGN_STALE_AFTER + 60


def _kinds(folder: Path, held: list[int]) -> dict[str, tuple[Path, bool]]:
    """Each kind of staging entry, made in ``folder``: (its path, whether a write may remove
    it). ``held`` collects the descriptors of the locks held for the locked kinds."""
    me, dead, alive = staging.this_owner(), _dead_pid(), os.getppid()
    place, boot = me.place, me.boot
    kinds = {
        "ours, its process gone": (_entry(folder, me.id, dead, 0), True),
        "ours, its process alive": (_entry(folder, me.id, alive, 60), False),
        "ours, a day old (its pid may be another's)": (_entry(folder, me.id, alive, DAY), True),
        "ours, no lock file, process gone": (_entry(folder, me.id, dead, 0, lock=False), True),
        "another host, pid not alive here": (_entry(folder, _other(place) + boot, dead, 0), False),
        "another host, a day old": (_entry(folder, _other(place) + boot, dead, DAY), False),
        "another host, a week old": (_entry(folder, _other(place) + boot, dead, WEEK), True),
        "another container": (_entry(folder, _other(place, 4) + boot, dead, 3600), False),
        "another boot, before this boot": (_entry(folder, place + _other(boot), 1, 3 * DAY), True),
        "another boot, since this boot": (_entry(folder, place + _other(boot), 1, 0), False),
    }
    old_file = folder / f"{TEMP_PREFIX}{dead}-abc_1.tmp.npy"
    old_file.write_bytes(b"an older version's write")
    kinds["old form, a file"] = (old_file, False)
    old_week = folder / f"{TEMP_PREFIX}{dead}-abc_2.tmp.png"
    old_week.write_bytes(b"")
    _age(old_week, WEEK)
    kinds["old form, a week old"] = (old_week, True)
    old_dir = folder / f"{TEMP_PREFIX}{dead}-abc_3.tmp"
    old_dir.mkdir()
    kinds["old form, a folder"] = (old_dir, False)
    for name, owner, pid in (
        ("locked, ours, its process gone", me.id, dead),
        ("locked, another host, a week old", _other(place) + boot, dead),
    ):
        path = _entry(folder, owner, pid, WEEK)
        fd = os.open(path / staging.LOCK_NAME, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fd)
        kinds[name] = (path, False)
    link = folder / f"{TEMP_PREFIX}{me.id}-{dead}-lnk.tmp"
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "keep.txt").write_bytes(b"the user's file")
    link.symlink_to(outside)
    kinds["a link named like ours, process gone"] = (link, False)
    fifo = folder / f"{TEMP_PREFIX}{me.id}-{dead}-fif.tmp"
    os.mkfifo(fifo)
    kinds["a FIFO named like ours, process gone"] = (fifo, False)
    return kinds


def _doors(models: dict[str, Path], image: Path) -> dict[str, Callable[[Path], None]]:
    from vitexplorer.core.models.checkpoint import save_weights

    def analyze(folder: Path) -> None:
        args = ["analyze", str(image), "--model", str(models["two"]), "--out", str(folder)]
        assert main([*args, "--device", "cpu", "--method", "rollout"]) == 0

    def file_set(folder: Path) -> None:
        fs = files.FileSet()
        data = fs.add(folder / "a.npy", lambda f: f.write(b"new"))
        fs.card(folder / "a.json", [data], lambda listing: json.dumps(listing).encode())
        fs.write()

    return {
        "write_atomic": lambda folder: files.write_atomic(
            folder / "a.npy", lambda f: f.write(b"x")
        ),
        "a set of files": file_set,
        "a checkpoint save": lambda folder: save_weights(
            folder / "m.safetensors", {"w": torch.ones(2)}, {}
        ),
        "vitexplorer analyze": analyze,
    }


def test_staging_entries_of_other_runs_survive_every_write(
    models, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(staging, "boot_time", lambda: time.time() - 2 * DAY)
    image = _images(tmp_path / "in", 1)[0]
    problems = []
    for door, write in _doors(models, image).items():
        folder = tmp_path / door.replace(" ", "-")
        folder.mkdir()
        held: list[int] = []
        try:
            kinds = _kinds(folder, held)
            before = {name: _node(path) for name, (path, _) in kinds.items()}
            try:
                write(folder)
            except BaseException as exc:
                problems.append(f"{door}: {exc!r}")
            for name, (path, removable) in kinds.items():
                gone = not os.path.lexists(path)
                kept = not gone and _node(path) == before[name]
                wrong = gone != removable or (not removable and not kept)
                record(STAGING, f"{door}: {name}", lost=wrong and not removable)
                if wrong:
                    problems.append(f"{door}: {name}: {'removed' if gone else 'kept'}")
        finally:
            for fd in held:
                os.close(fd)
    capsys.readouterr()
    assert not problems, "\n".join(problems)


def _node(path: Path) -> tuple[int, bytes]:
    """An entry's type and, for a regular file or a folder's staged file, its bytes."""
    mode = os.lstat(path).st_mode
    inside = path / "staged.safetensors"
    if path.is_dir() and not path.is_symlink() and inside.is_file():
        return mode, inside.read_bytes()
    if not path.is_symlink() and path.is_file():
        return mode, path.read_bytes()
    return mode, b""
