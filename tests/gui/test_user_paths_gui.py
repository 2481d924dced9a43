"""A path written '~nouser/...' in the app: one line where it was typed, never a traceback
(issue 22)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

NOUSER = "~nosuchuser_xyz"
REASON = "there is no user 'nosuchuser_xyz' on this machine"


def test_a_dataset_folder_of_a_missing_user_is_refused_in_its_line(qtbot, window) -> None:
    window.tabs.setCurrentIndex(1)
    form = window.finetune.panel.form
    with qtbot.captureExceptions() as raised:
        form.source_box.setCurrentIndex(form.source_box.findData("folder"))
        form.folder_edit.clear()
        qtbot.keyClicks(form.folder_edit, f"{NOUSER}/data")
        qtbot.keyClick(form.folder_edit, Qt.Key_Return)
    assert raised == []
    problem = form.dataset_problem()
    assert problem == f"{NOUSER}/data: {REASON}: choose a folder of class subfolders or a pixel CSV"
    assert f"{NOUSER}/data: {REASON}" in form.dataset_label.text()


def test_a_model_file_of_a_missing_user_fails_in_one_line(qtbot, window) -> None:
    with qtbot.captureExceptions() as raised:
        with qtbot.waitSignal(window.model_failed, timeout=30000) as failed:
            window.request_model(ModelRequest(f"{NOUSER}/m.safetensors"))
    assert raised == []
    message = failed.args[0]
    assert "\n" not in message and "Traceback" not in message
    assert message.endswith(f"{NOUSER}/m.safetensors")  # "weights file not found: ..."
    assert window.model is not None  # the model in use stays
