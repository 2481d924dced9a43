"""Hostile dataset folders and hostile path options through ``vitexplorer train`` and
``vitexplorer finetune``: links to ``/``, outside the dataset, loops, dangling ones, FIFOs and
devices as images and as class folders, unreadable folders; every path option missing, a
folder, a FIFO, a device, unreadable, named like an option, ``~nouser``, oddly named. Each is
refused in one line naming the file before any work (nothing written), or gives the good result
(a node that is no image is not counted: the count in the refusal of too large a subset says
so, without training)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fuzz.cli_run import run_cli
from tests.fuzz.conftest import record
from vitexplorer.cli.common import terminal_text
from vitexplorer.core.io import folders

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

DATA_DOOR = "dataset folders: vitexplorer train/finetune"
PATH_DOOR = "path options: train/finetune"
TINY = ["--device", "cpu", "--epochs", "1", "--batch-size", "4", "--probes", "0"]
TRAIN_TINY = ["--width", "16", "--depth", "1", "--heads", "2", "--patch-size", "8"]
# without train/ and test/, 3 + 2 images a class are asked of folders of 4: always refused after
# the scan, with each class's count, so a case never trains and its count shows what was taken
TOO_MANY = ["--per-class", "3", "--test-per-class", "2"]


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of four 32 px images, no train/ and test/."""
    root = tmp_path_factory.mktemp("template") / "data"
    for c, name in enumerate(("blue", "red")):
        for i in range(4):
            _image(root / name / f"{i}.png", 40 + 120 * c + i)
    return root


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


# --- the dataset door ----------------------------------------------------------------------------

# (case, make(root, outside), what the one line must say: a regex, or "count" for the good result)
Maker = Callable[[Path, Path], None]


def _link(rel: str, target: str | Callable[[Path, Path], object]) -> Maker:
    def make(root: Path, outside: Path) -> None:
        where = root / rel
        where.parent.mkdir(parents=True, exist_ok=True)
        pointed = target(root, outside) if callable(target) else target
        where.symlink_to(pointed)

    return make


def _fifo(rel: str) -> Maker:
    return lambda root, outside: os.mkfifo(root / rel)


def _device(rel: str) -> Maker:
    return lambda root, outside: os.mknod(root / rel, stat.S_IFCHR | 0o600, os.makedev(1, 3))


def _socket(rel: str) -> Maker:
    def make(root: Path, outside: Path) -> None:
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(root / rel))
        finally:
            server.close()

    return make


def _nested(*makers: Maker) -> Maker:
    def make(root: Path, outside: Path) -> None:
        for maker in makers:
            maker(root, outside)

    return make


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


def _moved_out(split: str) -> Maker:
    """``split`` moved outside the dataset, a link to it left in its place."""

    def make(root: Path, outside: Path) -> None:
        away = outside / f"{split}-{root.parent.name}"
        shutil.move(root / split, away)
        (root / split).symlink_to(away)

    return make


def _split(root: Path, outside: Path) -> None:
    """train/ and test/, the classes inside, for the cases that link them."""
    for split in ("train", "test"):
        (root / split).mkdir()
        for name in ("blue", "red"):
            shutil.copytree(root / name, root / split / name)
    for name in ("blue", "red"):
        shutil.rmtree(root / name)


OUT = r"is a link to .*, outside .*: a dataset may only link inside"
LOOP = r"is a link loop \(it leads back to itself\): remove or mend the link"
COUNT = "count"
DATASET_CASES: list[tuple[str, Maker, str]] = [
    ("class folder linked to /", _link("green", "/"), OUT),
    ("class folder linked to /etc", _link("green", "/etc"), OUT),
    ("class folder linked to /dev", _link("green", "/dev"), OUT),
    ("class folder linked to /proc/self", _link("green", "/proc/self"), OUT),
    ("class folder linked outside", _link("green", lambda r, o: o), OUT),
    ("class folder linked outside, relative", _link("green", lambda r, o: _rel(o, r)), OUT),
    ("class folder linked to the dataset's parent", _link("green", ".."), OUT),
    ("class folder linked to the dataset itself", _link("green", "."), "count"),
    ("class folder linked inside", _link("green", "blue"), "count"),
    ("class folder linked to itself", _link("green", "green"), LOOP),
    ("class folders linked to each other", _nested(_link("g1", "g2"), _link("g2", "g1")), LOOP),
    ("class folder dangling", _link("green", "nowhere"), COUNT),
    ("class folder a FIFO", _fifo("green"), COUNT),
    ("class folder a device", _device("green"), COUNT),
    ("class folder a socket", _socket("green"), COUNT),
    ("class folder linked to a FIFO outside", _link("green", lambda r, o: o / "pipe"), OUT),
    ("train/ linked outside", _nested(_split, _moved_out("train")), OUT),
    ("test/ linked outside", _nested(_split, _moved_out("test")), OUT),
    ("train/green linked to /", _nested(_split, _link("train/green", "/")), OUT),
    ("image linked to /etc/passwd", _link("blue/x.png", "/etc/passwd"), OUT),
    ("image linked to /dev/zero", _link("blue/x.png", "/dev/zero"), OUT),
    ("image linked to /dev/null", _link("blue/x.png", "/dev/null"), OUT),
    ("image linked to /proc/self/environ", _link("blue/x.png", "/proc/self/environ"), OUT),
    ("image linked to an outside image", _link("blue/x.png", lambda r, o: o / "x.png"), OUT),
    (
        "image linked outside, relative",
        _link("blue/x.png", lambda r, o: _rel(o, r / "blue") + "/x.png"),
        OUT,
    ),
    ("image linked to a FIFO outside", _link("blue/x.png", lambda r, o: o / "pipe"), OUT),
    ("image linked to itself", _link("blue/x.png", "x.png"), LOOP),
    (
        "images linked to each other",
        _nested(_link("blue/a.png", "b.png"), _link("blue/b.png", "a.png")),
        LOOP,
    ),  # fmt: skip
    ("image linked in a loop of folders", _link("blue/x.png", "../blue/x.png"), LOOP),
    ("image dangling", _link("blue/x.png", "nowhere.png"), COUNT),
    ("image linked inside", _link("blue/x.png", "../red/0.png"), "count5"),
    ("image a FIFO", _fifo("blue/x.png"), COUNT),
    ("image a device", _device("blue/x.png"), COUNT),
    ("image a socket", _socket("blue/x.png"), COUNT),
    ("image a folder", lambda r, o: (r / "blue" / "x.png").mkdir(), COUNT),
    ("deeper folder linked to / (not walked)", _link("blue/deep/root", "/"), COUNT),
    ("deeper folder loop (not walked)", _link("blue/deep/loop", ".."), COUNT),
    ("hidden class folder linked to /", _link(".hidden", "/"), COUNT),
    ("image linked outside, deep", _link("blue/a/b/c/x.png", "/etc/hostname"), OUT),
]


def _counts(line: str, blue: int) -> bool:
    return f"blue has {blue}" in line and "red has 4" in line


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_every_hostile_dataset_folder(
    command: str, template: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    outside = tmp_path / "elsewhere"
    _image(outside / "x.png", 7)
    os.mkfifo(outside / "pipe")
    problems = []
    for n, (case, make, expected) in enumerate(DATASET_CASES):
        root = tmp_path / f"case{n}" / "data"
        shutil.copytree(template, root, symlinks=True)
        make(root, outside)
        out_dir = tmp_path / f"case{n}" / "out"
        out_dir.mkdir()
        out = out_dir / "m.safetensors"
        if command == "train":
            args = ["train", "--data", str(root), "--out", str(out), *TRAIN_TINY]
        else:
            args = ["finetune", "--model", str(checkpoint), "--data", str(root), "--out", str(out)]
        before = (outside / "x.png").read_bytes()
        status, stdout, lines, crashed = run_cli([*args, *TINY, *TOO_MANY], capsys)
        lost = (outside / "x.png").read_bytes() != before or not stat.S_ISFIFO(
            os.lstat(outside / "pipe").st_mode
        )
        record(DATA_DOOR, f"{command}: {case}", crash=crashed, lost=lost)
        line = lines[-1] if lines else ""
        if expected == "count5":  # the link inside counted: blue has enough, red is short
            right = "red has 4" in line and "blue has" not in line
        elif expected == COUNT:  # the node was not taken: the counts say so
            right = "blue has 4" in line and "red has 4" in line
        else:
            right = bool(re.search(expected, line)) and str(root) in line
        if crashed or lost or status != 2 or len(lines) != 1 or not right or stdout:
            problems.append(f"{case}: status {status}, {lines}")
        if list(out_dir.iterdir()):
            problems.append(f"{case}: wrote {sorted(p.name for p in out_dir.iterdir())}")
    assert not problems, "\n".join(problems)


def test_an_unreadable_dataset_folder_says_permission_denied(
    template: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """As root chmod stops nothing: ``os.scandir`` refuses the folder as it would."""
    root = tmp_path / "data"
    shutil.copytree(template, root)
    real = os.scandir

    refused = {str(root / "red")}

    def scandir(path=".", *args):
        if os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args)

    monkeypatch.setattr(folders.os, "scandir", scandir)
    out = tmp_path / "m.safetensors"
    for command in ("train", "finetune"):
        args = [command, "--data", str(root), "--out", str(out), *TINY, *TOO_MANY]
        if command == "finetune":
            args += ["--model", "small_vit", "--weights", "none"]
        else:
            args += TRAIN_TINY
        status, _, lines, crashed = run_cli(args, capsys)
        record(DATA_DOOR, f"{command}: unreadable class folder", crash=crashed)
        assert status == 2 and len(lines) == 1, lines
        assert f"cannot list the class folder {root / 'red'}: Permission denied" in lines[0]
        assert not out.exists()
    refused.add(str(root))  # the dataset folder itself
    for command in ("train", "finetune"):
        args = [command, "--data", str(root), "--out", str(out), *TINY, *TOO_MANY]
        args += ["--model", "small_vit", "--weights", "none"] if command == "finetune" else []
        status, _, lines, crashed = run_cli([*args, *(TRAIN_TINY if command == "train" else [])],
                                         capsys)  # fmt: skip
        record(DATA_DOOR, f"{command}: unreadable dataset folder", crash=crashed)
        assert status == 2
        assert lines == [
            f"vitexplorer: cannot read the dataset {root}: Permission denied; make it readable "
            f"or choose another --data"
        ]


# --- the path options door -----------------------------------------------------------------------


def _unreadable_open(monkeypatch, path: Path) -> None:
    """``os.open`` refuses ``path`` as a file without read permission does (tests run as root)."""
    real = os.open
    target = os.path.realpath(path)

    def refusing(name, flags, *args, **kwargs):
        if os.path.realpath(name) == target and not flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", os.fspath(name))
        return real(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


ODD_NAMES = ["a b.png", "ünïcödé ☃.png", "new\nline.png", "$(touch pwned).png", "*?[x].png",
             "tab\there.png", "esc\x1b[31m.png", "back\\slash.png"]  # fmt: skip


def _variants(base: Path, suffix: str) -> list[tuple[str, str, str]]:
    """(variant, value, what the one line must hold) for a file option, made under ``base``
    (the file named like an option in the working folder)."""
    os.mkfifo(base / f"fifo{suffix}")
    (base / f"folder{suffix}").mkdir()
    (base / f"file{suffix}").write_bytes(b"not what it should be")
    Path(f"-x{suffix}").write_bytes(b"not read")
    (base / f"unreadable{suffix}").write_bytes(b"\x89PNG")
    os.mknod(base / f"device{suffix}", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's
    (base / f"dangling{suffix}").symlink_to(base / "nowhere")
    (base / f"loop{suffix}").symlink_to(base / f"loop{suffix}")
    found = [
        ("missing", str(base / f"missing{suffix}"), "does not exist"),
        ("folder", str(base / f"folder{suffix}"), "is a folder"),
        ("FIFO", str(base / f"fifo{suffix}"), "is a named pipe (FIFO)"),
        ("device", str(base / f"device{suffix}"), "is a device"),
        ("unreadable", str(base / f"unreadable{suffix}"), "permission denied"),
        ("dangling link", str(base / f"dangling{suffix}"), "which does not exist"),
        ("link loop", str(base / f"loop{suffix}"), "loop"),
        ("-x name", f"-x{suffix}", "./-x"),
        ("~nouser", f"~nouser/a{suffix}", "no user 'nouser'"),
    ]
    found += [(f"odd name {name!r}", str(base / (name + suffix)), "does not exist")
              for name in ODD_NAMES]  # fmt: skip
    return found


# (command, option, the suffix its file has, extra options it needs)
PATH_OPTIONS = [
    ("train", "--data", ".png", []),
    ("train", "--data-root", "", ["--data", "cifar10"]),
    ("train", "--out", ".safetensors", []),
    ("train", "--predictions", ".csv", []),
    ("train", "--test-csv", ".csv", ["--predictions", "{out}/p.csv"]),
    ("train", "--probe-image", ".png", []),
    ("finetune", "--model", ".safetensors", []),
    ("finetune", "--weights", ".pth", ["--model", "small_vit"]),
    ("finetune", "--data", ".png", []),
    ("finetune", "--data-root", "", ["--data", "cifar10"]),
    ("finetune", "--out", ".safetensors", []),
    ("finetune", "--probe-image", ".png", []),
]
ACCEPTED = "not enough images for"  # the option passed: the default subsets are then too large
# the variants a good run accepts for an option it writes (a missing file is created, a device
# or FIFO written as a stream, a dangling or looping link replaced by the file): the run goes on
# to the dataset, whose default subsets are too large, and stops there before any model
WRITTEN = {"missing", "device", "FIFO", "unreadable", "dangling link", "link loop"}
# a data root that is missing or an empty folder would download CIFAR-10: not tried, offline
NOT_TRIED = {("--data-root", v) for v in ("missing", "folder", "unreadable", "dangling link")}
NOT_TRIED |= {("--data-root", f"odd name {name!r}") for name in ODD_NAMES}


def _expected(option: str, variant: str, says: str) -> str:
    if option == "--out" and variant in WRITTEN - {"device", "FIFO", "unreadable"}:
        return ACCEPTED
    if option == "--out" and variant in ("device", "FIFO"):
        return "not a regular file"  # a checkpoint must be a file the app can read back
    if option == "--predictions" and variant in WRITTEN:
        return ACCEPTED
    if option == "--data" and variant == "folder":  # a folder is what --data wants
        return "does not look like a labelled dataset"
    if option == "--data-root" and variant == "FIFO":
        return "a named pipe (FIFO), not a folder"
    if option == "--data-root" and variant == "device":
        return "a device, not a folder"
    return says


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_every_hostile_path_option(
    command: str, template: Path, checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(template, data)
    problems = []
    for name, option, suffix, extra in [o for o in PATH_OPTIONS if o[0] == command]:
        base = tmp_path / f"opt-{option.strip('-')}"
        base.mkdir()
        out_dir = tmp_path / f"out-{option.strip('-')}"
        out_dir.mkdir()
        for variant, value, says in _variants(base, suffix):
            if (option, variant) in NOT_TRIED or (option == "--out" and variant == "unreadable"):
                continue
            says = _expected(option, variant, says)
            if option in ("--out", "--predictions") and variant.startswith("odd name"):
                value = str(base / "no folder" / Path(value).name)  # its folder is missing
            settings = {"--data": str(data), "--out": str(out_dir / "m.safetensors")}
            if name == "finetune":
                settings["--model"] = str(checkpoint)
            for key, given in zip(extra[::2], extra[1::2], strict=True):
                settings[key] = given.format(out=out_dir)
            settings[option] = value
            args = [name]
            for key, given in settings.items():
                args += [key, given]
            args += ["--device", "cpu", *(TRAIN_TINY if name == "train" else [])]
            with monkeypatch.context() as patch:
                if variant == "unreadable":
                    _unreadable_open(patch, Path(value))
                status, stdout, lines, crashed = run_cli(args, capsys)
            fifo_kept = stat.S_ISFIFO(os.lstat(base / f"fifo{suffix}").st_mode)
            record(PATH_DOOR, f"{name} {option} {variant}", crash=crashed, lost=not fifo_kept)
            line = lines[-1] if lines else ""
            if variant == "-x name":  # argparse's usage, then its one error line with the hint
                one = line.startswith(f"vitexplorer {name}: error:")
                right = f"write {option} ./-x{suffix} or {option}=-x{suffix}" in line
            else:
                one = len(lines) == 1 and line.startswith("vitexplorer: ")
                shown = terminal_text(" ".join(value.split()))  # as error() shows it
                right = says.lower() in line.lower() and (says == ACCEPTED or shown in line)
            written = sorted(p.name for p in out_dir.iterdir())
            if crashed or status != 2 or not one or not right or stdout or written:
                problems.append(f"{option} {variant}: status {status}, {lines}, {written}")
    assert not problems, "\n".join(problems)
