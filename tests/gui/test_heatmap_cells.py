"""Every cell of Model analytics' heatmaps shows, whatever its value: inferno's lowest colour is
black, and a low cell on the black background looked empty (layer 6, head 1 of the demo's
entropy map)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from vitexplorer.gui.app import configure_pyqtgraph
from vitexplorer.gui.views.head_stats_view import HeadHeatmap


def pixel(view: HeadHeatmap, image, scene: QPointF) -> QColor:
    """The colour drawn at a scene point of ``view``, from a grab of the real widget."""
    point = view.viewport().mapTo(view, view.mapFromScene(scene))
    return image.pixelColor(point)


def distance(a: QColor, b: QColor) -> int:
    return max(abs(a.red() - b.red()), abs(a.green() - b.green()), abs(a.blue() - b.blue()))


def test_the_lowest_cell_stands_out_from_what_surrounds_the_map(qtbot):
    configure_pyqtgraph()
    view = HeadHeatmap("Attention entropy (nats)", "nats")
    qtbot.addWidget(view)
    view.resize(360, 260)
    view.show()
    values = np.linspace(3.0, 4.0, 18).reshape(6, 3)  # (layers, heads)
    values[5, 0] = 2.5  # the lowest: layer 6, head 1
    view.set_values(values)
    for _ in range(3):
        QApplication.processEvents()
    grabbed = view.grab().toImage()
    vb = view.plot.vb

    def at(x: float, y: float) -> QColor:  # a point in the map's own units (layer, head)
        return pixel(view, grabbed, vb.mapViewToScene(QPointF(x, y)))

    lowest = at(5.5, 0.5)
    assert lowest.value() < 40, lowest.name()  # inferno's black: the colour scale is unchanged
    cells = view.image.sceneBoundingRect()
    outside = [  # 2 px beyond each edge of the map
        pixel(view, grabbed, QPointF(cells.right() + 2, cells.center().y())),
        pixel(view, grabbed, QPointF(cells.center().x(), cells.top() - 2)),
        pixel(view, grabbed, QPointF(cells.left() - 2, cells.center().y())),
    ]
    for colour in outside:
        assert distance(colour, lowest) >= 60, (colour.name(), lowest.name())
    border = vb.mapViewToScene(QPointF(5.0, 0.5))  # between layer 5 and layer 6 (the lowest)
    between = [pixel(view, grabbed, border + QPointF(dx, 0)) for dx in (-1, 0, 1)]
    assert max(distance(c, lowest) for c in between) >= 60, [c.name() for c in between]
    highest = at(4.5, 2.5)  # layer 5, head 3: inferno's bright end, unlike the lowest
    assert distance(highest, lowest) >= 150, (highest.name(), lowest.name())
