"""Drive the real main window as a person does: drop, click, press keys, read the views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QPushButton

from tests.conftest import TV_DOWNLOAD
from tests.gui.conftest import make_window
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def drop(window: MainWindow, *paths: Path) -> None:
    """A real drag-enter and drop of file URLs onto the window."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, event)


def drop_and_wait(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        drop(window, path)


def click_patch(qtbot, window: MainWindow, row: int, col: int) -> None:
    view = window.image_view
    scene = view.view.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    pos = view.mapFromScene(scene)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))


def expected_row(window: MainWindow, layer: int, head: int | None, token: int) -> np.ndarray:
    """Straight from the stored attention array, by index, independently of core.explain."""
    attention = window.analysis.attention
    rows = attention[layer, :, token, 1:]
    row = rows.mean(axis=0) if head is None else rows[head]
    return row.reshape(6, 6)


def test_drop_shows_predictions_of_the_model(qtbot, window: MainWindow, photo, checkpoint):
    started: list[str] = []
    window.worker.analysis_started.connect(started.append)
    drop_and_wait(qtbot, window, photo)
    qtbot.wait(200)
    assert started == [window.session.current_key], "one dropped image, one forward pass"
    model = load_model(str(checkpoint), device="cpu")
    with torch.inference_mode():
        logits = model.module(preprocess(load_image(photo), model.spec).unsqueeze(0))[0]
    probs = logits.softmax(-1).numpy()
    order = np.argsort(-probs)[:5]
    shown = window.predictions.values
    assert [name for name, _ in shown] == [f"kind {i}" for i in order]
    np.testing.assert_allclose([p for _, p in shown], probs[order], atol=1e-5)
    assert window.predictions.bars[0].text() == f"{probs[order[0]] * 100:.1f}%"
    assert window.thumbnails.keys() == [window.session.current_key]
    assert "tiny.safetensors" in window.model_label.text()
    assert window.device_label.text() == "cpu"
    assert window.time_label.text().startswith("forward ")


def test_default_is_the_cls_token_of_the_last_layer(qtbot, window: MainWindow, photo):
    """As the command line's figures: the CLS token's attention in the last layer."""
    drop_and_wait(qtbot, window, photo)
    assert (window.selection.token, window.selection.layer, window.selection.head) == (0, 2, None)
    assert window.view_bar.layer_spin.value() == 3
    np.testing.assert_allclose(window.image_view.heat_values, expected_row(window, 2, None, 0))
    assert not window.image_view.selection.isVisible()


def test_click_patch_then_change_layer_and_head(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    started: list[str] = []
    window.worker.analysis_started.connect(started.append)

    click_patch(qtbot, window, 2, 4)
    assert window.selection.token == 1 + 2 * 6 + 4
    heat = window.image_view.heat.image
    np.testing.assert_allclose(heat, expected_row(window, 2, None, 17), rtol=1e-6)
    assert window.image_view.selection.rect().topLeft() == QPointF(4, 2)
    assert window.matrix_view.row_marker.rect().top() == 17.5  # token 18's cell: 17.5 to 18.5

    window.view_bar.layer_spin.setValue(2)  # the spin box counts from 1
    window.view_bar.head_box.setCurrentIndex(2)  # "Head 2"
    assert (window.selection.layer, window.selection.head) == (1, 1)
    np.testing.assert_allclose(window.image_view.heat.image, expected_row(window, 1, 1, 17))
    np.testing.assert_array_equal(window.matrix_view.matrix, window.analysis.attention[1, 1])
    np.testing.assert_allclose(window.head_grid.tile_values(0), expected_row(window, 1, 0, 17))
    assert "layer 2, head 2" in window.image_view.title.text

    QApplication.processEvents()
    assert started == [], "a click or a layer change must not run the model again"


def test_head_tile_and_matrix_row_clicks_select(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    _, box, _, _ = window.head_grid.tiles[2]
    centre = window.head_grid.mapFromScene(box.sceneBoundingRect().center())
    qtbot.mouseClick(window.head_grid.viewport(), Qt.LeftButton, pos=centre)
    assert window.selection.head == 2
    assert window.view_bar.head_box.currentText() == "Head 3"

    matrix = window.matrix_view
    scene = matrix.plot.vb.mapViewToScene(QPointF(4, 31))  # token 31 (from 1): index 30
    qtbot.mouseClick(matrix.viewport(), Qt.LeftButton, pos=matrix.mapFromScene(scene))
    assert window.selection.token == 30
    np.testing.assert_allclose(window.image_view.heat.image, expected_row(window, 2, 2, 30))


def test_keys_move_the_patch_and_change_layer(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    click_patch(qtbot, window, 0, 0)
    for _ in range(3):
        qtbot.keyClick(window.image_view, Qt.Key_BracketLeft)  # from the last layer
    assert window.selection.layer == 0 and window.view_bar.layer_spin.value() == 1
    qtbot.keyClick(window.image_view, Qt.Key_Right)
    qtbot.keyClick(window.image_view, Qt.Key_Down)
    qtbot.keyClick(window.image_view, Qt.Key_Down)
    assert window.selection.token == 1 + 2 * 6 + 1
    qtbot.keyClick(window.image_view, Qt.Key_Left)
    qtbot.keyClick(window.image_view, Qt.Key_Left)  # stops at the edge
    assert window.selection.token == 1 + 2 * 6
    qtbot.keyClick(window.image_view, Qt.Key_BracketRight)
    qtbot.keyClick(window.image_view, Qt.Key_BracketRight)
    qtbot.keyClick(window.image_view, Qt.Key_BracketRight)  # only three layers
    assert window.selection.layer == 2 and window.view_bar.layer_spin.value() == 3
    qtbot.keyClick(window.image_view, Qt.Key_BracketLeft)
    assert window.selection.layer == 1
    np.testing.assert_allclose(window.image_view.heat.image, expected_row(window, 1, None, 13))
    window.view_bar.cls_button.click()
    assert window.selection.token == 0


def test_hover_reports_patch_and_value(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    view = window.image_view
    scene = view.view.mapViewToScene(QPointF(5.5, 1.5))
    view.scene().sigMouseMoved.emit(scene)
    value = expected_row(window, 2, None, 0)[1, 5]
    assert window.hover_label.text() == (  # rows, columns and tokens from 1
        f"patch row 2, col 6 (token {1 + 6 + 5 + 1}) · attention {value:.4f}"
    )


def test_corrupt_file_is_refused_and_the_app_goes_on(qtbot, window: MainWindow, photo, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with qtbot.waitSignal(window.image_failed, timeout=30000) as blocker:
        drop(window, broken)
    assert blocker.args[1].startswith("broken.jpg: ")
    message = window.statusBar().currentMessage()
    assert "broken.jpg" in message and "truncated or corrupt" in message
    assert window.thumbnails.keys() == []
    drop_and_wait(qtbot, window, photo)
    assert len(window.predictions.values) == 5


def test_many_images_switch_from_the_strip(qtbot, window: MainWindow, photo, tmp_path):
    other = tmp_path / "other.png"
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((50, 50, 3), 200, np.uint8)).save(other)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        drop(window, photo, other)
    keys = window.thumbnails.keys()
    assert len(keys) == 2 and window.session.current_key == keys[0]
    qtbot.waitUntil(lambda: all(e.analysis is not None for e in window.session.entries.values()))
    first = window.analysis
    with qtbot.waitSignal(window.analysis_shown, timeout=1000):
        window.thumbnails.setCurrentRow(1)
    assert window.session.current_key == keys[1] and window.analysis is not first
    assert not np.array_equal(window.analysis.attention, first.attention)


def test_paste_from_clipboard(qtbot, window: MainWindow):
    image = QImage(64, 40, QImage.Format_RGB32)
    image.fill(Qt.darkCyan)
    QApplication.clipboard().setImage(image)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.paste()
    assert window.analysis.display.shape[2] == 3
    assert window.session.entries[window.session.current_key].name.startswith("pasted image")


def test_model_change_reanalyses_and_drops_stale_results(qtbot, window, photo, checkpoint):
    drop_and_wait(qtbot, window, photo)
    before = window.model.generation
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.request_model(ModelRequest(str(checkpoint), "default", "cpu"))
    assert window.model.generation == before + 1
    assert window.analysis is not None and len(window.predictions.values) == 5


def test_wrong_weights_file_names_the_mismatch(qtbot, window: MainWindow, tmp_path: Path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv_proj.weight": torch.zeros(3)}, bad)
    with qtbot.waitSignal(window.model_failed, timeout=60000):
        window.request_model(ModelRequest("vit_b_32", str(bad), "cpu"))
    text = window.message_box.text() + window.message_box.informativeText()
    assert "do not fit ViT-B/32" in text and "conv_proj.weight" in text
    assert window.model is not None, "the previous model stays usable"


def bar_button(window: MainWindow, start: str) -> QPushButton:
    """The no-model bar's button whose text starts with ``start``."""
    return next(b for b in window.no_model_bar.buttons if b.text().startswith(start))


def no_dialog_open(window: MainWindow) -> bool:
    """Nothing modal, and no dialog of the window on screen."""
    from PySide6.QtWidgets import QDialog

    shown = [d for d in window.findChildren(QDialog) if d.isVisible()]
    return QApplication.activeModalWidget() is None and not shown


def test_first_launch_offers_the_download_and_alternatives(qtbot, tmp_path, monkeypatch):
    """Without the demo model: no question pops up; the bar above the image offers the
    download and its alternatives, and one click on Random weights loads them."""
    from vitexplorer.core.models import spec
    from vitexplorer.core.models.download import WeightsDownload

    monkeypatch.setattr(spec, "demo_path", lambda: tmp_path / "no" / spec.DEMO_FILE)
    download = WeightsDownload(
        "vit_b_32", "http://127.0.0.1:9/vit_b_32-d86f8d99.pth", tmp_path / "x.pth", 336.6, "W"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest("vit_b_32", "default", "cpu"))
    window.start()
    qtbot.waitUntil(window.no_model_bar.isVisible, timeout=30000)
    assert no_dialog_open(window)
    text = window.no_model_bar.label.text()
    assert "No model is loaded" in text and "Not downloaded: the W" in text
    assert bar_button(window, "Download").text() == "Download 337 MB"
    assert "127.0.0.1:9" in bar_button(window, "Download").toolTip()
    with qtbot.waitSignal(window.model_changed, timeout=60000):
        qtbot.mouseClick(bar_button(window, "Random weights"), Qt.LeftButton)
    assert window.model.spec.weights == "random initialisation"
    assert window.model_bar.weights_box.currentData() == "none"
    assert not window.no_model_bar.isVisible()
    window.close()
    assert not download.cached


def test_without_the_demo_the_window_says_no_model_and_keeps_the_choices(
    qtbot, tmp_path, monkeypatch, photo
):
    """An installation without the demo model and without the weights: the photo is on screen,
    the window and the toolbar say plainly that no model is loaded, the choices are one click
    away, at this launch and the next, and nothing modal ever asks."""
    from vitexplorer.core.models import spec
    from vitexplorer.core.models.download import WeightsDownload

    monkeypatch.setattr(spec, "demo_path", lambda: tmp_path / "no" / spec.DEMO_FILE)

    download = WeightsDownload(
        "vit_b_32", "http://127.0.0.1:9/vit_b_32-d86f8d99.pth", tmp_path / "x.pth", 336.6, "W"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    settings = tmp_path / "s.ini"
    request = ModelRequest("vit_b_32", "default", "cpu")
    for launch in (1, 2):
        window = make_window(qtbot, settings, request)
        window.start([str(photo)])
        bar = window.no_model_bar
        qtbot.waitUntil(bar.isVisible, timeout=30000)
        assert no_dialog_open(window)
        assert "No model is loaded" in bar.label.text()
        labels = [b.text() for b in bar.buttons]
        assert labels == [
            "Download 337 MB",
            "Open weights file\u2026",
            "Random weights",
            "Small ViT",
        ]
        assert not bar.close_button.isVisible(), "no model: the choices cannot be hidden"
        # the toolbar tells the truth: the architecture asked for, its weights not downloaded
        assert window.model_bar.model_box.currentData() == "vit_b_32"
        assert window.model_bar.weights_box.currentText() == "not downloaded"
        assert window.model is None and window.model_label.text() == "no model"
        assert window.windowTitle() == "vitexplorer \u2014 no model"
        # the photo is on screen before any model, with its real thumbnail
        view = window.image_view
        qtbot.waitUntil(lambda v=view: v.photo.image is not None, timeout=10000)
        shown = window.image_view.photo.image
        assert shown.shape[:2] == (60, 80) and shown[10, 20].tolist() == [60, 40, 60]
        assert "no model is loaded" in window.image_view.title.text
        item = window.thumbnails.item_for(window.session.current_key)
        assert not item.icon().isNull()
        if launch == 1:
            window.close()
    # one click: the small ViT loads and analyses the photo
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        qtbot.mouseClick(bar_button(window, "Small ViT"), Qt.LeftButton)
    assert window.model.spec.name == "small_vit" and not bar.isVisible()
    assert window.windowTitle().startswith("vitexplorer \u2014 ")
    assert window.model_label.text() in window.windowTitle()
    window.close()


def test_failed_load_keeps_the_previous_model_working(qtbot, window, photo, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with qtbot.waitSignal(window.model_failed, timeout=60000):
        window.request_model(ModelRequest("vit_b_32", str(bad), "cpu"))
    assert "not a valid safetensors file" in window.message_box.text()
    drop_and_wait(qtbot, window, photo)
    assert window.model.spec.name == "small_vit" and len(window.predictions.values) == 5


def test_download_with_progress_then_explore(qtbot, tmp_path, monkeypatch, vit_b_32_state, photo):
    from vitexplorer.core.models import spec
    from vitexplorer.core.models.download import WeightsDownload

    source, state = vit_b_32_state
    download = WeightsDownload(
        "vit_b_32", source.as_uri(), tmp_path / "hub" / source.name, 336.6, "test weights"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    monkeypatch.setattr(spec, "demo_path", lambda: tmp_path / "no" / spec.DEMO_FILE)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest("vit_b_32", "default", "cpu"))
    progress: list[tuple[int, int]] = []
    window.start([str(photo)])
    window.worker.download_progress.connect(lambda d, t: progress.append((d, t)))
    qtbot.waitUntil(window.no_model_bar.isVisible, timeout=30000)
    with qtbot.waitSignal(window.analysis_shown, timeout=120000):
        qtbot.mouseClick(bar_button(window, "Download"), Qt.LeftButton)
    size = source.stat().st_size
    assert progress[-1] == (size, size) and download.cached
    assert window._progress is None, "the progress dialog closes when the model is ready"
    assert window.model.spec.weights == "test weights"
    assert window.analysis.attention.shape == (12, 12, 50, 50)
    window.close()


def test_settings_remember_model_and_recent_images(qtbot, tmp_path, checkpoint, photo):
    settings = tmp_path / "remember.ini"
    first = make_window(qtbot, settings, ModelRequest(str(checkpoint), "default", "cpu"))
    with qtbot.waitSignal(first.model_changed, timeout=30000):
        first.start()
    with qtbot.waitSignal(first.analysis_shown, timeout=30000):
        drop(first, photo)
    first.close()
    second = make_window(qtbot, settings, None)
    assert second._initial_request == ModelRequest(str(checkpoint), "default", "cpu")
    assert [a.text() for a in second.recent_menu.actions()] == [str(photo)]
    second.close()


def test_memory_budget_evicts_old_analyses(qtbot, window: MainWindow, photo, tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"grey{i}.png")
        Image.fromarray(np.full((50, 60, 3), 60 * i, np.uint8)).save(paths[-1])
    drop_and_wait(qtbot, window, photo)
    window.session.memory_budget = int(window.analysis.attention.nbytes * 2.5)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        drop(window, *paths)
    qtbot.waitUntil(lambda: not window._requested, timeout=30000)
    held = [e for e in window.session.entries.values() if e.analysis is not None]
    assert len(held) == 2 and window.analysis is not None
    evicted = next(k for k, e in window.session.entries.items() if e.analysis is None)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.thumbnails.select(evicted)
    assert window.session.current_key == evicted and window.analysis is not None


def test_importing_the_gui_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, vitexplorer.gui.main_window; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _SlowResponse:
    """Stands in for a slow HTTP response: 1 MB chunks, 20 ms apart, 300 MB in all."""

    headers = {"Content-Length": str(300 * 2**20)}

    def __init__(self) -> None:
        self.chunks = 0

    def read(self, size: int) -> bytes:
        import time

        time.sleep(0.02)
        self.chunks += 1
        return b"\0" * size if self.chunks <= 300 else b""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_cancel_stops_the_download_at_once(qtbot, tmp_path, monkeypatch):
    from vitexplorer.core.models import spec
    from vitexplorer.core.models.download import WeightsDownload

    response = _SlowResponse()
    download = WeightsDownload(
        "vit_b_32", "https://example.invalid/vit_b_32-d86f8d99.pth", tmp_path / "w.pth", 300, "W"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: response)
    monkeypatch.setattr(spec, "demo_path", lambda: tmp_path / "no" / spec.DEMO_FILE)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest("vit_b_32", "default", "cpu"))
    window.start()
    qtbot.waitUntil(window.no_model_bar.isVisible, timeout=30000)
    qtbot.mouseClick(bar_button(window, "Download"), Qt.LeftButton)
    qtbot.waitUntil(lambda: window._progress is not None and response.chunks >= 3, timeout=30000)
    with qtbot.waitSignal(window.model_failed, timeout=10000) as failed:
        qtbot.mouseClick(window._progress.dialog.findChild(QPushButton), Qt.LeftButton)
    assert failed.args == ["download cancelled"]
    assert response.chunks < 60, "the download went on after Cancel"
    assert not download.path.exists() and list(tmp_path.glob("*.partial")) == []
    assert window.message_box is None, "cancelling is not an error"
    assert "cancelled" in window.statusBar().currentMessage()
    window.close()


def test_images_given_at_start_are_analysed_once_and_busy_clears(qtbot, tmp_path, checkpoint):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.full((40, 40, 3), 70 * i, np.uint8)).save(paths[-1])
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest(str(checkpoint)))
    window.start([str(p) for p in paths])
    started: list[str] = []
    window.worker.analysis_started.connect(started.append)
    qtbot.waitUntil(lambda: all(e.analysis for e in window.session.entries.values()), timeout=30000)
    qtbot.waitUntil(lambda: not window.busy.isVisible(), timeout=10000)
    # connected after start(): under load the worker may have begun the first analysis already,
    # so what is asserted is that none began twice (and every image was analysed, above)
    assert len(started) == len(set(started)) and set(started) <= set(window.session.entries)
    assert window.activity_label.text() == ""
    window.close()


def test_refused_files_stay_listed_until_dismissed(qtbot, window: MainWindow, photo, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        drop(window, empty, photo, text)
    qtbot.waitUntil(lambda: len(window.notice.messages) == 2, timeout=30000)
    drop_and_wait(qtbot, window, photo)  # later successes do not wipe the notice
    assert window.notice.isVisible()
    assert "empty.jpg: the file is empty" in window.notice.label.text()
    assert "notes.png: not an image" in window.notice.label.text()
    window.notice.dismiss()
    assert not window.notice.isVisible()
    assert [a.text() for a in window.recent_menu.actions()] == [str(photo)]


def test_queued_images_survive_a_failed_model_load(qtbot, window: MainWindow, tmp_path):
    from PIL import Image

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"q{i}.png")
        Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(paths[-1])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    drop(window, *paths)
    window.request_model(ModelRequest("vit_b_32", str(bad), "cpu"))
    qtbot.waitUntil(lambda: all(e.analysis for e in window.session.entries.values()), timeout=30000)
    assert len(window.session.entries) == 4
    assert window.model_bar.current_request().weights not in (str(bad),)


def test_arrow_keys_reach_the_patch_after_using_the_side_views(qtbot, window, photo):
    drop_and_wait(qtbot, window, photo)
    click_patch(qtbot, window, 3, 3)
    _, box, _, _ = window.head_grid.tiles[1]
    centre = window.head_grid.mapFromScene(box.sceneBoundingRect().center())
    qtbot.mouseClick(window.head_grid.viewport(), Qt.LeftButton, pos=centre)
    window.view_bar.head_box.setCurrentIndex(0)
    assert window.model_bar.model_box.focusPolicy() == Qt.NoFocus
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Right)
    assert window.selection.token == 1 + 3 * 6 + 4


def test_choosing_an_architecture_after_a_file_starts_from_default_weights(qtbot, window):
    bar = window.model_bar
    index = bar.model_box.findData("small_vit")
    bar.model_box.setCurrentIndex(index)
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        bar.model_box.activated.emit(index)
    assert window.model.spec.weights == "random initialisation"
    assert window.model.spec.num_layers == 6  # the default small ViT, not the tiny checkpoint


def test_redraws_do_not_lose_references_to_none_or_true(qtbot, window: MainWindow, photo):
    """PySide6 6.12.0 dropped a reference to None and True in calls made on every redraw, and
    the app aborted after some thousand clicks; this catches such a binding again."""
    import sys

    drop_and_wait(qtbot, window, photo)
    before_none, before_true = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(300):
        window.select_patch(i % 6, (i * 5) % 6)
        if i % 10 == 0:
            window.step_layer(1 if i % 20 else -1)
    QApplication.processEvents()
    assert sys.getrefcount(None) > before_none - 30
    assert sys.getrefcount(True) > before_true - 30


def test_toolbar_names_the_checkpoint_file_once(qtbot, window: MainWindow, checkpoint):
    """The fixture loaded a checkpoint as the model: the weights box names that file."""
    box = window.model_bar.weights_box
    assert box.currentText() == "file: tiny.safetensors"
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.request_model(ModelRequest(str(checkpoint), "default", "cpu"))
    assert [box.itemText(i) for i in range(box.count())] == [
        "Pretrained weights",
        "Random weights",
        "file: tiny.safetensors",
    ]


def test_patch_grid_lines_fall_on_the_patch_borders(qtbot):
    """The grid is painted as one-pixel filled rectangles (fast in Qt's raster engine): on a
    black image they must show exactly at the borders between patches, and nowhere inside."""
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(520, 440)
    view.show()
    qtbot.waitExposed(view)
    rows, cols = 4, 6  # a rectangular grid
    view.set_image(np.zeros((64, 96, 3), np.uint8), (rows, cols))
    view.set_opacity(0.0)  # no heat map over the photo
    qtbot.wait(50)
    image = view.grab().toImage()

    def pixel(x: float, y: float) -> QPoint:
        return view.mapFromScene(view.view.mapViewToScene(QPointF(x, y)))

    def brightest(x: float, y: float, vertical: bool) -> int:
        """The brightest pixel within 2 pixels across a border at (x, y) in patch units."""
        at = pixel(x, y)
        near = [(at.x() + d, at.y()) if vertical else (at.x(), at.y() + d) for d in range(-2, 3)]
        return max(image.pixelColor(px, py).red() for px, py in near)

    for col in range(1, cols):  # inner vertical borders, sampled halfway down a patch
        assert 40 < brightest(col, 1.5, vertical=True) < 120  # white at 70/255 over black
    for row in range(1, rows):
        assert 40 < brightest(2.5, row, vertical=False) < 120
    for row in range(rows):  # patch centres stay black
        for col in range(cols):
            centre = pixel(col + 0.5, row + 0.5)
            assert image.pixelColor(centre.x(), centre.y()).red() < 5
    view.grid_lines.setVisible(False)
    qtbot.wait(50)
    image = view.grab().toImage()
    assert brightest(1, 1.5, vertical=True) < 5


def test_help_is_a_real_help_with_the_windows_own_shortcuts(qtbot, window: MainWindow):
    from PySide6.QtGui import QAction, QKeySequence

    help_action = next(a for a in window.findChildren(QAction) if a.text() == "&How to use")
    help_action.trigger()
    shown = window.help_window
    assert shown.isVisible() and not shown.isModal(), "the app stays usable beside the help"
    text = shown.browser.toPlainText()
    for heading in ("The views", "Keys", "Methods", "Where files go"):
        assert heading in text
    keyed = [a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    assert len(keyed) >= 8
    for action in keyed:  # every shortcut the window has, with what it does
        key = action.shortcut().toString(QKeySequence.NativeText)
        name = action.text().replace("&", "").rstrip("…")
        assert f"{key} {name}" in " ".join(text.split()), (key, name)
    assert "Abnar and Zuidema" in text and "Chefer, Gur and Wolf" in text
    # the relevance the app computes is the gradient-times-attention rule of ICCV 2021
    assert "Bi-Modal and Encoder-Decoder Transformers, ICCV 2021" in " ".join(text.split())
    # the same authors' LRP method of CVPR 2021 is another entry, chefer-lrp, with its own paper
    joined = " ".join(text.split())
    assert "Transformer Interpretability Beyond Attention Visualization, CVPR 2021" in joined
    assert joined.index("Beyond Attention Visualization") > joined.index("ICCV 2021")
    assert window.settings.fileName() in text
    help_action.trigger()  # asked again: the same window, raised
    assert window.help_window is shown
    shown.close()
