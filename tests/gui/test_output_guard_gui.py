"""The window's own saves never overwrite what it has open: Export view, the overview's Export
figure and Save model refuse, in a line and before a byte is written, a file that is an open
image (by name, through a link, a hard link), the loaded model's checkpoint, or a place inside
the fine-tune dataset; a fresh name is saved as before."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QFileDialog

from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.io.output_guard import output_conflict
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def _answer(monkeypatch, path: Path | str) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused(window: MainWindow, *words: str) -> str:
    message = window.statusBar().currentMessage()
    assert "nothing saved" in message, message
    assert "\n" not in message and all(word in message for word in words), message
    assert window.message_box is not None and window.message_box.text() in message
    return message


def _dataset(tmp_path: Path, window: MainWindow) -> Path:
    """A folder of class folders, chosen as the fine-tune dataset."""
    folder = tmp_path / "dataset"
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        (folder / name / "one.png").write_bytes(b"not read here")
    form = window.finetune.panel.form
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    form.folder_edit.setText(str(folder))
    assert form.source() == str(folder)
    return folder


@pytest.fixture
def shown(qtbot, window: MainWindow, photo: Path) -> MainWindow:
    drop_and_wait(qtbot, window, photo)
    return window


def test_export_view_onto_the_open_image_writes_nothing(
    shown: MainWindow, photo: Path, monkeypatch
) -> None:
    folder = photo.parent
    before = _snapshot(folder)
    _answer(monkeypatch, photo)  # photo.png: the export's own PNG would be the image
    shown.export_action.trigger()
    _refused(shown, "photo.png", "an image open in the window", "choose another name")
    assert _snapshot(folder) == before  # nor its .svg, .npy, .json beside it
    assert os.path.isfile(photo)


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_export_view_onto_a_link_to_the_image_writes_nothing(
    shown: MainWindow, photo: Path, tmp_path: Path, monkeypatch, kind: str
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    alias = other / "alias.png"
    (os.symlink if kind == "symlink" else os.link)(photo, alias)
    before = photo.read_bytes()
    _answer(monkeypatch, alias)
    shown.export_action.trigger()
    _refused(shown, "alias.png", str(photo))
    assert photo.read_bytes() == before
    assert alias.is_symlink() == (kind == "symlink") and alias.read_bytes() == before
    assert sorted(p.name for p in other.iterdir()) == ["alias.png"]


def test_export_view_into_the_training_dataset_writes_nothing(
    shown: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    dataset = _dataset(tmp_path, shown)
    before = _snapshot(dataset)
    _answer(monkeypatch, dataset / "cats" / "export.png")
    shown.export_action.trigger()
    _refused(shown, "inside the training dataset", "save it elsewhere")
    assert _snapshot(dataset) == before


def test_a_fresh_name_is_still_exported(shown: MainWindow, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    _answer(monkeypatch, out / "fresh.png")
    shown.export_action.trigger()
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".npy", ".png", ".svg"]
    assert "nothing saved" not in shown.statusBar().currentMessage()


def test_the_overview_figure_onto_the_open_image_writes_nothing(
    shown: MainWindow, photo: Path, monkeypatch
) -> None:
    before = _snapshot(photo.parent)
    _answer(monkeypatch, photo.with_suffix(""))  # "photo": photo.png among its files
    shown.overview.export()
    _refused(shown, "photo.png", "Export figure")
    assert _snapshot(photo.parent) == before


def _fine_tuned(window: MainWindow, dataset: str, monkeypatch) -> list[str]:
    """A stand-in for a finished fine-tune (its save recorded, not run)."""
    saved: list[str] = []
    panel = window.finetune.panel
    spec = SimpleNamespace(name="tiny")
    panel.result = SimpleNamespace(model=SimpleNamespace(spec=spec), dataset=dataset)
    monkeypatch.setattr(panel, "save", lambda path: saved.append(path) or True)
    return saved


def test_save_model_onto_the_loaded_checkpoint_writes_nothing(
    shown: MainWindow, checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    saved = _fine_tuned(shown, str(_dataset(tmp_path, shown)), monkeypatch)
    before = checkpoint.read_bytes()
    _answer(monkeypatch, checkpoint)
    shown.finetune.save_model()
    _refused(shown, "tiny.safetensors", "the loaded model's file", "Save model")
    assert saved == [] and checkpoint.read_bytes() == before


def test_save_model_into_the_dataset_writes_nothing_and_elsewhere_saves(
    shown: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    dataset = _dataset(tmp_path, shown)
    saved = _fine_tuned(shown, str(dataset), monkeypatch)
    before = _snapshot(dataset)
    _answer(monkeypatch, dataset / "dogs" / "model")
    shown.finetune.save_model()
    _refused(shown, "inside the training dataset")
    assert saved == [] and _snapshot(dataset) == before
    _answer(monkeypatch, tmp_path / "model")
    shown.finetune.save_model()
    assert saved == [str(tmp_path / "model.safetensors")]


def test_output_conflict_compares_files_not_names(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    inputs = [("the image", image)]
    assert output_conflict([tmp_path / "sub" / ".." / "a.png"], inputs) is not None
    assert output_conflict([tmp_path / "b.png"], inputs) is None
    assert output_conflict([tmp_path / "b.png"], [("gone", tmp_path / "gone.png")]) is None
    assert output_conflict([tmp_path / "sub"], [], [("the data", tmp_path / "sub")]) is not None
    assert output_conflict([tmp_path / "subway.png"], [], [("the data", tmp_path / "sub")]) is None
