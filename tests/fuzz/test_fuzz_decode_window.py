"""Decoding work through the window: bombs dropped on it (each refused in a line, a good image
after them analysed), the window closed while a preview decoder is stuck (the app exits), and
every save dialog aimed at each thing the window has open (refused in a line; nothing the user
had changes, bytes and kind). The reader's inputs are in tests/fuzz/test_fuzz_decode.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from tests.fuzz.conftest import record
from tests.fuzz.hostile import (
    _png_chunk,
    encoded,
    flat_progressive_jpeg,
    many_frame_apng,
    many_frame_gif,
    many_frame_webp,
    many_page_tiff,
    photo,
    repeated_scans,
)
from tests.fuzz.test_fuzz_decode import DOOR, _with_chunks
from tests.gui.conftest import running_window

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


@pytest.mark.timeout(300)
def test_decode_bombs_dropped_on_the_window(qtbot, window, tmp_path: Path) -> None:
    """Each bomb is refused in a line (or shown), and a good image after them is analysed."""
    import zlib

    files = {
        "scans.jpg": (repeated_scans(flat_progressive_jpeg((2048, 2048)), 20_000), "scans"),
        "budget.jpg": (repeated_scans(flat_progressive_jpeg((4096, 4096)), 400), "scans"),
        "segments.jpg": (
            b"\xff\xd8" + b"\xff\xfe\x00\x04hi" * 30_000 + encoded(photo(), "JPEG")[2:],
            "segments",
        ),
        "ztxt.png": (
            _with_chunks(_png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"v" * 50_000_000))),
            "bomb",
        ),
        "frames.gif": (many_frame_gif(100_000), None),
        "frames.png": (many_frame_apng(100_000), None),
        "pages.tiff": (many_page_tiff(100_000), None),
        "frames.webp": (many_frame_webp(100_000), None),
    }
    paths = []
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    good = tmp_path / "good.png"
    photo(5).save(good)
    failed: dict[str, str] = {}
    analysed: set[str] = set()
    window.image_failed.connect(lambda key, message: failed.__setitem__(key, message))
    window.worker.analysis_ready.connect(lambda done: analysed.add(done.key), Qt.QueuedConnection)
    window.add_images([str(p) for p in paths] + [str(good)])
    keys = {entry.source: key for key, entry in window.session.entries.items()}
    good_key = keys[str(good)]
    refused = [keys[str(tmp_path / n)] for n, (_, words) in files.items() if words is not None]

    def settled() -> bool:
        return good_key in analysed and all(key in failed for key in refused)

    qtbot.waitUntil(settled, timeout=120_000)
    problems = []
    for name, (_, words) in files.items():
        key = keys[str(tmp_path / name)]
        message = failed.get(key)
        if words is not None:
            ok = message is not None and name in message and words in message.lower()
            ok = ok and "\n" not in message
        else:
            ok = message is None
        record(DOOR, f"window drop: {name}", crash=not ok and message is not None)
        if not ok:
            problems.append(f"{name}: {message!r}")
    record(DOOR, "window drop: a good image after the bombs", hang=good_key not in analysed)
    assert not problems, "\n".join(problems)


_STUCK_PREVIEW = textwrap.dedent(
    """
    import sys, threading
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    import vitexplorer.core.io.images as images
    from vitexplorer.gui import app as gui_app
    from vitexplorer.gui.main_window import MainWindow
    from vitexplorer.gui.workers import ModelRequest

    checkpoint, photo, settings_path = sys.argv[1:4]
    inside, never = threading.Event(), threading.Event()

    def stuck(source, *args, **kwargs):  # only the previews call it through the module
        print("decoding", flush=True)
        inside.set()
        never.wait()  # a decoder that never returns, like a 20,000-scan JPEG

    images.load_image = stuck
    application = QApplication([])
    window = MainWindow(QSettings(settings_path, QSettings.IniFormat), ModelRequest(checkpoint))
    window.show()
    poll = QTimer()
    poll.timeout.connect(lambda: inside.is_set() and window.close())
    poll.start(50)
    window.start([photo])
    status = application.exec()
    gui_app._exit_if_threads_are_stuck(status)
    print("not reached: the decoder was stuck", flush=True)
    """
)


@pytest.mark.timeout(120)
def test_closing_while_a_preview_decoder_is_stuck_ends_the_app(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    image = tmp_path / "photo.png"
    photo().save(image)
    settings = tmp_path / "settings.ini"
    case = "window closed while a preview decoder is stuck"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _STUCK_PREVIEW, str(tiny_checkpoint), str(image), str(settings)],
            capture_output=True,
            text=True,
            timeout=100,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        )
    except subprocess.TimeoutExpired:
        record(DOOR, case, hang=True)
        pytest.fail("the app did not exit within 100 s of closing with a stuck decoder")
    record(DOOR, case, crash=done.returncode != 0)
    assert "decoding" in done.stdout, done.stderr  # the decoder really was stuck
    assert done.returncode == 0, done.stderr
    assert "vitexplorer-previews did not stop" in done.stderr
    assert "not reached" not in done.stdout and "Traceback" not in done.stderr
    assert "window_state" in settings.read_text()


def _state(paths: list[Path]) -> list[tuple[str, int, bytes]]:
    """Each path's kind (link, file, folder), mode bits and bytes (a folder: its listing)."""
    out = []
    for path in paths:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            out.append(("link", 0, os.readlink(path).encode()))
        elif stat.S_ISDIR(info.st_mode):
            listing = [
                (str(p.relative_to(path)), stat.S_IFMT(os.lstat(p).st_mode), p.read_bytes())
                for p in sorted(path.rglob("*"))
                if p.is_file()
            ]
            out.append(("folder", 0, repr(listing).encode()))
        else:
            assert stat.S_ISREG(info.st_mode)
            out.append(("file", info.st_ino, path.read_bytes()))
    return out


@pytest.mark.timeout(300)
def test_every_save_dialog_aimed_at_each_input(
    qtbot, window, tmp_path: Path, tiny_checkpoint: Path, monkeypatch
) -> None:
    from tests.gui.test_main_window import drop_and_wait

    image = tmp_path / "images" / "photo.png"
    image.parent.mkdir()
    photo(2, (64, 48)).save(image)
    links = tmp_path / "links"
    links.mkdir()
    (links / "photo-link.png").symlink_to(image)
    os.link(image, links / "photo-hard.png")
    (links / "model-link.safetensors").symlink_to(tiny_checkpoint)
    os.link(tiny_checkpoint, links / "model-hard.safetensors")
    dataset = tmp_path / "dataset"
    for name in ("cats", "dogs"):
        (dataset / name).mkdir(parents=True)
        photo(3).save(dataset / name / "one.png")
    form = window.finetune.panel.form
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    form.folder_edit.setText(str(dataset))
    drop_and_wait(qtbot, window, image)
    window.overview.set_on_screen(True)
    watched = [image, links, dataset, tiny_checkpoint]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    around = f"{image.parent}/../images/photo.png"
    saved: list[str] = []
    panel = window.finetune.panel
    panel.result = SimpleNamespace(
        model=SimpleNamespace(spec=SimpleNamespace(name="t")), dataset="d"
    )
    monkeypatch.setattr(panel, "save", lambda path: saved.append(path) or True)
    exports = [
        ("the image", image, True),
        ("the image without .png", image.with_suffix(""), True),
        ("a symlink to the image", links / "photo-link.png", True),
        ("a hard link to the image", links / "photo-hard.png", True),
        ("the image through ..", Path(around), True),
        ("a file in the dataset", dataset / "cats" / "one.png", True),
        ("a new name in the dataset", dataset / "dogs" / "new.png", True),
        ("a fresh name", fresh / "out.png", False),
    ]
    models = [
        ("the checkpoint", tiny_checkpoint, True),
        ("the checkpoint without suffix", tiny_checkpoint.with_suffix(""), True),
        ("a symlink to the checkpoint", links / "model-link.safetensors", True),
        ("a hard link to the checkpoint", links / "model-hard.safetensors", True),
        (
            "the checkpoint through ..",
            tiny_checkpoint.parent / ".." / tiny_checkpoint.parent.name / tiny_checkpoint.name,
            True,
        ),
        ("a file in the dataset", dataset / "cats" / "one.safetensors", True),
        ("the dataset's class folder", dataset / "cats", True),
        ("a fresh name", fresh / "model", False),
    ]
    dialogs = [
        ("Export view", lambda: window.export_action.trigger(), exports),
        ("Export figure (overview)", lambda: window.overview.export(), exports),
        ("Save model", lambda: window.finetune.save_model(), models),
    ]
    problems = []
    for number, (dialog, act, targets) in enumerate(dialogs):
        for case, target, refuse in targets:
            if not refuse:  # a name of its own for each dialog
                target = target.with_name(f"{number}-{target.name}")
            before = _state(watched)
            written_before = sorted(fresh.iterdir())
            saved.clear()
            window.statusBar().clearMessage()
            monkeypatch.setattr(
                QFileDialog, "getSaveFileName", lambda *a, t=target, **k: (str(t), "")
            )
            crashed = False
            try:
                act()
            except BaseException as exc:
                crashed = True
                problems.append(f"{dialog} onto {case}: {exc!r}")
            lost = _state(watched) != before
            message = window.statusBar().currentMessage()
            record(DOOR, f"{dialog} onto {case}", crash=crashed, lost=lost)
            if lost:
                problems.append(f"{dialog} onto {case}: an input changed")
            if refuse:
                if "nothing saved" not in message or "\n" in message or saved:
                    problems.append(f"{dialog} onto {case}: not refused ({message!r}, {saved})")
            else:
                wrote = saved or sorted(fresh.iterdir()) != written_before
                if "nothing saved" in message or not wrote:
                    problems.append(f"{dialog} onto {case}: not saved ({message!r})")
    assert not problems, "\n".join(problems)
    assert np.asarray(Image.open(image)).shape == (48, 64, 3)
