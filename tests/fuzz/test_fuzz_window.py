"""Every hostile image dropped onto the real window at once, as a file manager sends them (URLs
with the names' own bytes): each refusal reaches the notice bar in one line, each good image is
analysed, nothing hangs, and the window goes on working."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.fuzz.conftest import record
from tests.fuzz.hostile import MARKER, HostileImage, all_image_cases
from tests.gui.conftest import running_window
from vitexplorer.core.io.images import _display_name

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def uri_list(paths: list[Path]) -> bytes:
    """text/uri-list as a file manager writes it: each name's bytes, percent-encoded."""
    return b"".join(
        b"file://" + urllib.parse.quote_from_bytes(os.fsencode(p)).encode() + b"\r\n" for p in paths
    )


def drop_uris(window, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setData("text/uri-list", uri_list(paths))
    pos = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(
        window, QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    )


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


def test_every_hostile_image_dropped_at_once(qtbot, window, tmp_path: Path) -> None:
    cases = [c for c in all_image_cases(tmp_path / "hostile") if c.case != "/dev/zero"]
    folder_case = next(c for c in cases if c.case == "folder named .png")
    files = [c for c in cases if c is not folder_case]
    failed: dict[str, str] = {}
    shown: set[str] = set()
    window.image_failed.connect(lambda key, message: failed.__setitem__(key, message))
    window.worker.analysis_ready.connect(lambda done: shown.add(done.key), Qt.QueuedConnection)

    drop_uris(window, [*(c.path for c in files), folder_case.path, Path("/dev/zero")])
    keys = {entry.source: key for key, entry in window.session.entries.items()}
    by_key: dict[str, HostileImage] = {}
    for case in [*files, HostileImage("/dev/zero", Path("/dev/zero"), "refused", "device")]:
        assert str(case.path) in keys, f"{case.case}: not added ({case.path!r})"
        by_key[keys[str(case.path)]] = case
    qtbot.waitUntil(lambda: set(by_key) <= set(failed) | shown, timeout=120000)

    problems = []
    for key, case in by_key.items():
        message = failed.get(key)
        crashed = message is not None and "Traceback" in message
        record(
            "the window (drop)",
            case.case,
            crash=crashed,
            lost=case.expect == "shown" and message is not None,
        )
        if case.expect == "refused":
            if message is None or "\n" in message or case.words not in message.lower():
                problems.append(f"{case.case}: {message!r}")
            elif not message.startswith(_display_name(case.path)):
                problems.append(f"{case.case}: the message does not name the file: {message!r}")
        elif case.expect == "shown" and message is not None:
            problems.append(f"{case.case}: refused ({message})")
    notices = "\n".join(window.notice.messages)
    record("the window (drop)", "folder named .png")
    assert "folder.png: the folder holds no images" in notices
    assert not problems, "\n".join(problems)
    assert len(window.notice.messages) == sum(1 for k in by_key if k in failed) + 1
    assert not (tmp_path / "hostile" / MARKER).exists()

    # the window goes on working: a good image is still analysed and shown
    good = next(c for c in files if c.case == "mode-RGBA.png")
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.add_images([str(good.path)])
    assert window.session.current.source == str(good.path)
    assert window.session.analysis is not None
