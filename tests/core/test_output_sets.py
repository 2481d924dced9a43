"""Sets of files all from one run (issue 22): a card is written last and names its files with
their sizes; a full disk at any file leaves the old set whole; kill -9 at any moment leaves no
card beside another run's files. Staging folders of other hosts, containers and boots, and live
(locked) ones, survive the cleanup; provably dead ones go."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitexplorer.cli import main
from vitexplorer.core.io import files, staging
from vitexplorer.core.io.staging import TEMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def _set(folder: Path, tag: str, size: int) -> files.FileSet:
    """Two data files holding ``tag`` and a card naming them, tagged too."""
    fs = files.FileSet()
    data = [
        fs.add(folder / f"x.{ext}", lambda f, n=n: f.write(f"{tag}|".encode() * (size + n)))
        for n, ext in enumerate(("npy", "png"))
    ]
    fs.card(
        folder / "x.json", data, lambda listing: json.dumps({"run": tag, "files": listing}).encode()
    )
    return fs


def card_problems(folder: Path) -> list[str]:
    """What is wrong with the cards in ``folder``: a named file missing, or of another size
    than its card says."""
    problems = []
    for card in sorted(folder.glob("*.json")):
        facts = json.loads(card.read_bytes())
        for entry in facts.get("files", []):
            named = folder / entry["name"]
            if not named.is_file():
                problems.append(f"{card.name} names {entry['name']}, which is missing")
            elif named.stat().st_size != entry["bytes"]:
                problems.append(f"{card.name}: {entry['name']} is of another size")
    return problems


def test_the_card_is_written_last_and_names_each_file_with_its_size(tmp_path, monkeypatch):
    _set(tmp_path, "old", 10).write()
    order: list[str] = []
    real_replace, real_unlink = os.replace, Path.unlink
    monkeypatch.setattr(
        files.os, "replace", lambda a, b: (order.append(Path(b).name), real_replace(a, b))[1]
    )
    monkeypatch.setattr(
        Path, "unlink", lambda p, **k: (order.append(f"-{p.name}"), real_unlink(p, **k))[1]
    )
    written = _set(tmp_path, "new", 20).write(0o640)
    assert [p.name for p in written] == ["x.npy", "x.png", "x.json"]
    assert order[:4] == ["-x.json", "x.npy", "x.png", "x.json"]  # old card gone before any data
    card = json.loads((tmp_path / "x.json").read_bytes())
    assert card["files"] == [{"name": "x.npy", "bytes": 4 * 20}, {"name": "x.png", "bytes": 4 * 21}]
    assert (tmp_path / "x.png").read_bytes() == b"new|" * 21
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.npy", "x.png"]
    assert (tmp_path / "x.npy").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("position", range(3))
def test_a_full_disk_at_any_file_leaves_the_old_set_whole(tmp_path, monkeypatch, position):
    _set(tmp_path, "old", 10).write()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    opened = []
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode:
            opened.append(path)
            if len(opened) == position + 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", full_disk, raising=False)
    with pytest.raises(OSError) as caught:
        _set(tmp_path, "new", 20).write()
    assert caught.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing else left


_WRITER = """
import json, os, sys
from pathlib import Path
from vitexplorer.core.io.files import FileSet
out, run = Path(sys.argv[1]), 0
print("ready", flush=True)
while True:
    run += 1
    tag = f"{os.getpid()}-{run}"
    for image in range(4):
        fs = FileSet()
        size = [3000 * (1 + (run + n) % 5) for n in range(3)]
        data = [fs.add(out / f"{image}.{n}.npy", lambda f, k=k: f.write(f"{tag}|".encode() * k))
                for n, k in enumerate(size)]
        text = lambda listing: json.dumps({"run": tag, "files": listing}).encode()
        fs.card(out / f"{image}.json", data, text)
        fs.write()
"""


def run_problems(folder: Path) -> list[str]:
    """:func:`card_problems`, and each named file's bytes from the card's own run."""
    problems = card_problems(folder)
    for card in folder.glob("*.json"):
        facts = json.loads(card.read_bytes())
        for entry in facts["files"]:
            named = folder / entry["name"]
            if named.is_file() and not named.read_bytes().startswith(f"{facts['run']}|".encode()):
                problems.append(
                    f"{card.name} (run {facts['run']}) names {entry['name']} of another run"
                )
    return problems


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_at_random_moments_never_leaves_a_card_beside_another_runs_files(tmp_path):
    rng = random.Random(22)
    problems = []
    for trial in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.kill()
            child.wait(timeout=60)
        problems += [f"trial {trial}: {p}" for p in run_problems(tmp_path)]
    assert not problems, "\n".join(problems)
    assert list(tmp_path.glob("*.json"))  # sets were written (a killed one may have no card)
    _set(tmp_path, "last", 1).write()  # the next write removes what the killed ones left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


# --- analyze and compare ----------------------------------------------------------------------


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
        paths.append(folder / f"im{i}.png")
    return paths


def test_analyzes_cards_name_every_file_of_the_image_with_its_size(checkpoint, tmp_path, capsys):
    images = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["analyze", *map(str, images), "--model", str(checkpoint), "--out", str(out)]
    assert main(args + ["--method", "rollout", "--method", "attention"]) == 0
    card = json.loads((out / "im0.json").read_bytes())
    named = [entry["name"] for entry in card["files"]]
    assert sorted(named) == sorted(
        ["im0.attention_all.npy", "im0.cls.png"]
        + [f"im0.{m}.{x}" for m in ("rollout", "attention") for x in ("npy", "png", "json")]
    )
    method = json.loads((out / "im0.rollout.json").read_bytes())
    assert [entry["name"] for entry in method["files"]] == ["im0.rollout.npy", "im0.rollout.png"]
    assert card_problems(out) == []
    assert np.load(out / "im0.attention_all.npy").shape[0] == card["num_layers"]


def test_a_full_disk_in_analyze_keeps_the_older_runs_files(
    checkpoint, tmp_path, monkeypatch, capsys
):
    images = _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    args = ["analyze", str(images[0]), "--model", str(checkpoint), "--out", str(out)]
    assert main(args + ["--method", "rollout"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    real_open, count = open, []

    def full_disk(path, mode="r", *a, **k):
        if "w" in mode and len(count) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        count.append(path)
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(files, "open", full_disk, raising=False)
    assert main(args + ["--method", "rollout", "--layer", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vitexplorer: im0.png: cannot write to {out}: No space left on device"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- staging folders of other runs -------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def other(digits: str, flip: int = 1) -> str:
    """Another 8-hex-digit id than ``digits``."""
    return format(int(digits, 16) ^ flip, "08x")


def entry(folder: Path, owner: str, pid: int, age: float = 0.0, lock_file: bool = True) -> Path:
    path = folder / f"{TEMP_PREFIX}{owner}-{pid}-k{len(list(folder.iterdir()))}.tmp"
    path.mkdir()
    (path / "staged.safetensors").write_bytes(b"a model being saved")
    if lock_file:
        (path / staging.LOCK_NAME).write_bytes(b"")
    when = time.time() - age
    for item in (*path.iterdir(), path):
        os.utime(item, (when, when))
    return path


def test_the_staging_name_carries_this_hosts_owner_and_pid(tmp_path):
    with files.atomic_path(tmp_path / "m.npy") as tmp:
        name = tmp.parent.name
        assert name.startswith(f"{TEMP_PREFIX}{staging.this_owner().id}-{os.getpid()}-")
        assert not staging.is_dead(name, time.time())  # this process's own
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["m.npy"]


def test_another_hosts_live_save_survives_a_write_and_a_dead_one_of_ours_goes(
    tmp_path, monkeypatch
):
    me = staging.this_owner()
    gone = dead_pid()
    foreign = entry(tmp_path, other(me.place) + me.boot, gone)  # another node: its pid is not ours
    container = entry(tmp_path, other(me.place, 2) + me.boot, gone)  # another PID namespace
    ours_dead = entry(tmp_path, me.id, gone)
    ours_live = entry(tmp_path, me.id, os.getppid())
    old_form = tmp_path / f"{TEMP_PREFIX}{gone}-k3y.tmp.npy"
    old_form.write_bytes(b"an older vitexplorer's save")
    files.write_atomic(tmp_path / "out.npy", lambda f: f.write(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [foreign.name, container.name, ours_live.name, old_form.name, "out.npy"]
    )
    assert not ours_dead.exists()
    assert (foreign / "staged.safetensors").read_bytes() == b"a model being saved"
    # a week untouched: no write lasts that long
    week = staging.FOREIGN_STALE_AFTER + 60
    for path in (foreign, container, old_form):
        os.utime(path, (time.time() - week,) * 2)
        for item in path.iterdir() if path.is_dir() else ():
            os.utime(item, (time.time() - week,) * 2)
    assert sorted(staging.remove_stale_temporaries(tmp_path)) == sorted(
        [foreign, container, old_form]
    )


def test_another_boots_entry_goes_only_when_older_than_this_boot(tmp_path, monkeypatch):
    me = staging.this_owner()
    monkeypatch.setattr(staging, "boot_time", lambda: time.time() - 3600)
    before = entry(tmp_path, me.place + other(me.boot), 1, age=7200)
    after = entry(tmp_path, me.place + other(me.boot), 1, age=60)  # newer than our boot
    elsewhere = entry(tmp_path, other(me.place) + other(me.boot), 1, age=7200)
    assert staging.remove_stale_temporaries(tmp_path) == [before]
    assert after.exists() and elsewhere.exists()


def test_a_locked_entry_survives_even_when_it_looks_dead(tmp_path, monkeypatch):
    me = staging.this_owner()
    monkeypatch.setattr(staging, "this_owner", lambda: staging.Owner("feedbeef", me.boot))
    live = staging.Staging(tmp_path)  # made as another owner, and locked
    monkeypatch.undo()
    dead = entry(tmp_path, me.id, dead_pid(), lock_file=False)
    week = staging.FOREIGN_STALE_AFTER + 60
    for item in (*live.path.iterdir(), live.path):
        os.utime(item, (time.time() - week,) * 2)
    assert staging.is_dead(live.path.name, time.time() - week)
    assert staging.remove_stale_temporaries(tmp_path) == [dead]
    assert live.path.is_dir()
    live.close()
    assert not live.path.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "card", "named"),
    [
        ("stats", "head_stats.json", ["head_stats.csv", "distance_vs_depth.png"]),
        ("sanity", "im0.sanity.json", ["im0.sanity.csv", "im0.sanity.npy"]),
        ("faithfulness", "faithfulness.json", ["faithfulness.csv"]),
    ],
)
def test_every_commands_card_names_its_files(checkpoint, tmp_path, capsys, command, card, named):
    images = _images(tmp_path / "in", 2 if command != "sanity" else 1)
    out = tmp_path / "out"
    args = [command, *map(str, images), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    facts = json.loads((out / card).read_bytes())
    assert [entry["name"] for entry in facts["files"]] == named
    assert card_problems(out) == []
    assert all(entry["bytes"] > 0 for entry in facts["files"])


_OTHER_NODE_SAVE = """
import os, sys, types
from pathlib import Path
from vitexplorer.core.io import staging
staging.this_owner = lambda: staging.Owner("0badf00d", "0badf00d")  # another node of a cluster
staging.os = types.SimpleNamespace(**{**vars(os), "getpid": lambda: int(sys.argv[2])})
from vitexplorer.core.io.files import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"the trained model")
    print(tmp.parent.name, flush=True)
    sys.stdin.readline()  # until the other run has written into the same folder
print("saved", flush=True)
"""


@pytest.mark.timeout(120)
def test_another_nodes_live_save_with_a_pid_dead_here_is_saved(tmp_path):
    """The issue's case: a shared home, another node's save in progress whose PID names no
    process here; a write of this node into the same folder leaves it, and the model is saved."""
    target = tmp_path / "model.safetensors"
    child = subprocess.Popen(
        [sys.executable, "-c", _OTHER_NODE_SAVE, str(target), str(dead_pid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        name = child.stdout.readline().strip()
        assert name.startswith(f"{TEMP_PREFIX}0badf00d0badf00d-")
        files.write_atomic(tmp_path / "other.npy", lambda f: f.write(b"this node's write"))
        assert (tmp_path / name).is_dir()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "saved"
    finally:
        child.kill()
        child.wait(timeout=60)
    assert target.read_bytes() == b"the trained model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "other.npy"]


def test_a_card_that_names_another_card_is_renamed_after_it(tmp_path, monkeypatch) -> None:
    """analyze's image card names its method cards: renamed before them, a kill in between
    would leave it naming a card not yet in place (the fuzz suite's kill -9 found it)."""
    import vitexplorer.core.io.files as files_module

    renamed: list[str] = []
    own_commit = files_module._commit
    monkeypatch.setattr(
        files_module,
        "_commit",
        lambda tmp, path, *rest: (renamed.append(path.name), own_commit(tmp, path, *rest)),
    )
    files = files_module.FileSet()
    data = files.add(tmp_path / "im.attention.npy", lambda f: f.write(b"map"))
    image_card = tmp_path / "im.json"
    method_card = tmp_path / "im.attention.json"
    files.card(image_card, [data, method_card], lambda listing: b"{}")  # added first
    files.card(method_card, [data], lambda listing: b"{}")
    removed: list[str] = []
    own_unlink = Path.unlink
    monkeypatch.setattr(
        Path, "unlink", lambda self, *a, **k: (removed.append(self.name), own_unlink(self, *a, **k))
    )
    for old in (image_card, method_card):  # an earlier run's cards
        old.write_bytes(b"old")
    files.write()
    # the old image card goes before the old method card it names, the new one after it
    assert [name for name in removed if name.endswith(".json")][:2] == [
        "im.json",
        "im.attention.json",
    ]
    assert renamed == ["im.attention.npy", "im.attention.json", "im.json"]
    assert image_card.read_bytes() == b"{}" and method_card.read_bytes() == b"{}"
