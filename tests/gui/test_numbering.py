"""One numbering: the layer and head a person picks in the window carry the same numbers, from 1,
in the view's title, the exported method card, the analytics tab's head_stats.csv and the
command line's head_stats.csv."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from tests.gui.test_main_window import click_patch, drop_and_wait
from vitexplorer.cli import main
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.views.matrix_view import token_ticks

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def _csv_rows(path) -> dict[tuple[int, int], list[str]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("layer,head,")
    return {(int(r[0]), int(r[1])): r for r in (line.split(",") for line in lines[1:])}


def test_one_layer_number_in_title_export_card_and_head_stats(
    qtbot, window: MainWindow, photo, checkpoint, tmp_path, monkeypatch, capsys
):
    from PySide6.QtWidgets import QFileDialog

    drop_and_wait(qtbot, window, photo)
    click_patch(qtbot, window, 0, 0)  # the first patch: row 1, column 1
    window.view_bar.layer_spin.setValue(2)  # as a person types it: the second of three layers
    window.view_bar.head_box.setCurrentIndex(3)  # "Head 3", the last of three
    assert window.view_bar.head_box.currentText() == "Head 3"
    assert (window.selection.layer, window.selection.head) == (1, 2)  # the arrays' indices
    title = window.image_view.title.text
    assert "layer 2, head 3" in title and "patch row 1, col 1 (token 2)" in title
    np.testing.assert_allclose(
        window.image_view.heat_values, window.analysis.attention[1, 2, 1, 1:].reshape(6, 6)
    )

    # the status bar counts the same way
    view = window.image_view
    view.scene().sigMouseMoved.emit(view.view.mapViewToScene(QPointF(0.5, 0.5)))
    assert window.hover_label.text().startswith("patch row 1, col 1 (token 2) · attention")

    # File > Export view: the card says layer 2, head 3, token 2, and what the .npy's axes are
    target = tmp_path / "figures" / "photo.attention.png"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_action.trigger()
    card = json.loads((target.parent / "photo.attention.json").read_text())
    assert card["parameters"] == {"layer": 2, "head": 3, "token": 2}
    assert "layer 2 of 3, head 3 of 3" in card["title"]  # as the command line titles it
    assert "count from 1" in card["numbering"]
    assert card["map"]["axes"] == ["axis 0: patch rows 1..6", "axis 1: patch columns 1..6"]
    np.testing.assert_array_equal(
        np.load(target.parent / "photo.attention.npy"), window.image_view.heat_values
    )

    # the analytics tab's export: the row "2,3" is this layer's and head's statistics
    stats = window.analysis.statistics
    tables = tmp_path / "analytics"
    tables.mkdir()
    window.analytics.export(tables)
    card = json.loads((tables / "analytics.json").read_text())  # the window's model and image
    assert card["model"]["weights"]["file"] == str(checkpoint) and card["images"] == [photo.name]
    assert card["input"] == {"aspect": "crop"} and card["model"]["num_heads"] == 3
    rows = _csv_rows(tables / "head_stats.csv")
    assert sorted(rows) == [(layer, head) for layer in (1, 2, 3) for head in (1, 2, 3)]
    assert float(rows[(2, 3)][2]) == pytest.approx(stats.distance[1, 2], abs=1e-3)
    assert float(rows[(2, 3)][3]) == pytest.approx(stats.entropy[1, 2], abs=1e-4)
    # the analytics tab rings the same head and names it the same way
    assert window.analytics.selected == (1, 2)
    assert window.analytics.entropy_map.describe(1, 2).startswith("layer 2, head 3:")

    # and `vitexplorer stats` on the same photo writes the same numbers in the same row
    out = tmp_path / "cli"
    status = main(["stats", str(photo), "--model", str(checkpoint), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    cli_rows = _csv_rows(out / "head_stats.csv")
    assert sorted(cli_rows) == sorted(rows)
    assert float(cli_rows[(2, 3)][2]) == pytest.approx(stats.distance[1, 2], abs=1e-3)
    stats_card = json.loads((out / "head_stats.json").read_text())
    assert stats_card["table_rows"].startswith("one per layer (1..3) and head (1..3)")


def test_the_attention_matrix_counts_tokens_from_1(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    matrix = window.matrix_view
    # token number 1 (CLS) is the cell centred on 1 of both axes; number 37 the last patch
    assert matrix.image.mapRectToParent(matrix.image.boundingRect()).left() == 0.5
    for side in ("left", "bottom"):  # labelled from 1, never 0
        ticks = matrix.plot.getAxis(side)._tickLevels[0]
        assert ticks == [(1.0, "1"), (10.0, "10"), (20.0, "20"), (30.0, "30")]
    assert [t for _, t in token_ticks(197)] == ["1", "50", "100", "150"]  # ViT-B/16's tokens
    scene = matrix.plot.vb.mapViewToScene(QPointF(1.0, 37.0))
    matrix.scene().sigMouseMoved.emit(scene)
    assert window.hover_label.text().startswith(
        "query token 37 (patch row 6, col 6) → key token 1 (the CLS token) · attention"
    )
    qtbot.mouseClick(matrix.viewport(), Qt.LeftButton, pos=matrix.mapFromScene(scene))
    assert window.selection.token == 36  # the last of the 37 tokens, by index
    assert "patch row 6, col 6 (token 37)" in window.image_view.title.text
