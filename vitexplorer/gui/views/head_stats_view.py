"""Per-head statistics: mean attention distance against depth, like Fig. 7 (right) of the ViT
paper (Dosovitskiy et al., 2021), one point per head, and (layers x heads) heatmaps of the other
statistics. Click a point or a cell to open that layer and head."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QPainterPath
from PySide6.QtWidgets import QApplication, QGraphicsPathItem, QGraphicsRectItem

from vitexplorer.gui.views.common import (
    SELECTION_COLOR,
    heat_levels,
    new_colorbar,
    new_heat_item,
    selection_pen,
    set_colorbar_levels,
)

POINT_COLOR = (31, 119, 180)
POINT_COLOR_DARK = (120, 180, 255)
# behind and between a heatmap's cells: inferno's lowest colour is black, and a low cell on the
# black background looked empty; on mid grey every cell shows, whatever its value
CELL_FRAME_COLOR = (128, 128, 128)
CELL_FRAME = 0.04  # the grey frame around the map, as a share of its cells' range


class DistancePlot(pg.PlotWidget):
    """Layer (from 1) on x, the head's mean attention distance in pixels on y."""

    head_clicked = Signal(int, int)  # layer, head, both from 0

    def __init__(self, background: str = "k") -> None:
        super().__init__(background=background)
        dark = background == "k"
        self.text_color = "#c8c8c8" if dark else "#282828"
        self.plotItem.setMenuEnabled(False)
        self.plotItem.hideButtons()
        self.plotItem.setLabel("bottom", "network depth (layer)", color=self.text_color)
        self.plotItem.setLabel("left", "mean attention distance (pixels)", color=self.text_color)
        for side in ("left", "bottom"):
            axis = self.plotItem.getAxis(side)
            axis.enableAutoSIPrefix(False)
            axis.setPen(self.text_color)
            axis.setTextPen(self.text_color)
        self.setMouseEnabled(x=False, y=False)
        colour = POINT_COLOR_DARK if dark else POINT_COLOR
        self.points = pg.ScatterPlotItem(
            size=9,
            pen=None,
            brush=pg.mkBrush(*colour),
            hoverable=True,
            hoverBrush=pg.mkBrush(*SELECTION_COLOR),
            tip=self._tip,
        )
        self.points.sigClicked.connect(self._clicked)
        self.ring = pg.ScatterPlotItem(
            size=16, pen=pg.mkPen(SELECTION_COLOR, width=2), brush=None, symbol="o"
        )
        self.addItem(self.points)
        self.addItem(self.ring)
        self.distance = np.zeros((0, 0))
        self.entropy = np.zeros((0, 0))
        self.prefix_share = np.zeros((0, 0))

    def set_statistics(
        self,
        distance: np.ndarray,
        entropy: np.ndarray | None = None,
        prefix_share: np.ndarray | None = None,
        title: str = "",
    ) -> None:
        """Per-head (layers, heads) arrays; entropy and prefix share only feed the tooltips."""
        self.distance = np.asarray(distance, dtype=np.float64)
        shape = self.distance.shape
        self.entropy = np.full(shape, np.nan) if entropy is None else np.asarray(entropy)
        self.prefix_share = (
            np.full(shape, np.nan) if prefix_share is None else np.asarray(prefix_share)
        )
        layers, heads = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        self.points.setData(
            x=(layers + 1).ravel().astype(float),
            y=self.distance.ravel(),
            data=list(zip(layers.ravel().tolist(), heads.ravel().tolist(), strict=True)),
        )
        self.plotItem.setTitle(title, color=self.text_color, size="10pt")
        if shape[0]:
            self.setXRange(0.5, shape[0] + 0.5, padding=0)
            self.setYRange(0, max(float(self.distance.max()), 1.0) * 1.05, padding=0)
            self.plotItem.getAxis("bottom").setTickSpacing(major=max(1, shape[0] // 12), minor=1)

    def set_selected(self, layer: int | None, head: int | None) -> None:
        """Ring the point of one head; ``None`` (or the mean of heads) rings none."""
        rows, cols = self.distance.shape
        if layer is None or head is None or not (0 <= layer < rows and 0 <= head < cols):
            self.ring.setData(x=[], y=[])
            return
        self.ring.setData(x=[layer + 1.0], y=[float(self.distance[layer, head])])

    def _tip(self, x: float, y: float, data: tuple[int, int]) -> str:
        layer, head = data
        lines = [f"layer {layer + 1}, head {head + 1}", f"mean distance {y:.1f} px"]
        entropy, share = self.entropy[layer, head], self.prefix_share[layer, head]
        if np.isfinite(entropy):
            lines.append(f"entropy {entropy:.2f} nats")
        if np.isfinite(share):
            lines.append(f"attention to CLS/prefix {100 * share:.0f}%")
        lines.append("click to open it in the explorer")
        return "\n".join(lines)

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            layer, head = points[0].data()
            self.head_clicked.emit(int(layer), int(head))


TEXT_COLOR = "#c8c8c8"
TITLE_SIZE = "10pt"  # every title of the analytics views


def cell_ticks(
    count: int, size: float = 1.0, gap: float = 0.0, most: int = 12
) -> list[tuple[float, str]]:
    """Ticks at the centres of ``count`` cells of ``size`` with ``gap`` between them, labelled
    from 1; every k-th cell when there are more than ``most``."""
    step = max(1, math.ceil(count / most))
    return [(i * (size + gap) + size / 2, str(i + 1)) for i in range(0, count, step)]


class HeadHeatmap(pg.GraphicsLayoutWidget):
    """One statistic of every head as a heatmap: layer (from 1) across, like the distance plot's
    depth, and head (from 1) down. Hover a cell to read it; click one to open that head.

    ``values`` holds the (layers, heads) array as given; the image shows it times ``scale`` (100
    for a share in per cent), on the map's own range, which the colour bar labels.
    """

    head_clicked = Signal(int, int)  # layer, head, both from 0
    head_hovered = Signal(int, int)  # layer, head; (-1, -1) off the map

    HINT = "hover a cell to read it, click to open that head"

    def __init__(self, title: str, unit: str, scale: float = 1.0, decimals: int = 2) -> None:
        super().__init__()
        self.unit, self.scale, self.decimals = unit, scale, decimals
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ci.layout.setContentsMargins(4, 4, 4, 4)
        self.title = self.addLabel(
            title, row=0, col=0, colspan=2, color=TEXT_COLOR, size=TITLE_SIZE
        )
        self.plot = self.addPlot(row=1, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.invertY(True)
        self.plot.setLabel("bottom", "layer", color=TEXT_COLOR)
        self.plot.setLabel("left", "head", color=TEXT_COLOR)
        self.plot.vb.setBackgroundColor(CELL_FRAME_COLOR)
        self.image = new_heat_item()
        self.plot.addItem(self.image)
        self.cell_lines = QGraphicsPathItem()  # one pixel of grey between cells
        pen = pg.mkPen(CELL_FRAME_COLOR, width=1)
        pen.setCosmetic(True)
        self.cell_lines.setPen(pen)
        self.cell_lines.setZValue(1)
        self.plot.addItem(self.cell_lines)
        self.ring = QGraphicsRectItem()
        self.ring.setPen(selection_pen(2.5))
        self.ring.setZValue(2)
        self.ring.setVisible(False)
        self.plot.addItem(self.ring)
        self.colorbar = new_colorbar(width=12)
        self.addItem(self.colorbar, row=1, col=1)
        self.readout = self.addLabel(self.HINT, row=2, col=0, colspan=2, color=TEXT_COLOR)
        self.values = np.zeros((0, 0))
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    def set_values(self, values: np.ndarray) -> None:
        """Show a (layers, heads) statistic."""
        self.values = np.asarray(values, dtype=np.float64)
        layers, heads = self.values.shape
        shown = np.ascontiguousarray(self.values.T * self.scale, dtype=np.float32)
        levels = heat_levels(shown)
        self.image.setImage(shown, levels=levels)
        rect = QRectF(0, 0, layers, heads)
        self.image.setRect(rect)
        set_colorbar_levels(self.colorbar, levels)
        lines = QPainterPath()
        for x in range(1, layers):
            lines.moveTo(x, 0)
            lines.lineTo(x, heads)
        for y in range(1, heads):
            lines.moveTo(0, y)
            lines.lineTo(layers, y)
        self.cell_lines.setPath(lines)
        self.plot.setRange(rect, padding=CELL_FRAME)
        self.plot.getAxis("bottom").setTicks([cell_ticks(layers, most=7)])  # labels side by side
        self.plot.getAxis("left").setTicks([cell_ticks(heads)])
        self.readout.setText(self.HINT)

    def set_selected(self, layer: int | None, head: int | None) -> None:
        """Outline one head's cell; ``None`` outlines none."""
        layers, heads = self.values.shape
        shown = layer is not None and head is not None and 0 <= layer < layers and 0 <= head < heads
        self.ring.setVisible(shown)
        if layer is not None and head is not None and shown:
            self.ring.setRect(QRectF(layer, head, 1, 1))

    def describe(self, layer: int, head: int) -> str:
        value = self.values[layer, head] * self.scale
        return f"layer {layer + 1}, head {head + 1}: {value:.{self.decimals}f} {self.unit}"

    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        """(layer, head) under a scene position, or None."""
        point = self.plot.vb.mapSceneToView(scene_pos)
        layer, head = math.floor(point.x()), math.floor(point.y())
        layers, heads = self.values.shape
        if 0 <= layer < layers and 0 <= head < heads:
            return layer, head
        return None

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.head_clicked.emit(*cell)

    def _moved(self, scene_pos) -> None:
        cell = self.cell_at(scene_pos)
        self.readout.setText(self.HINT if cell is None else self.describe(*cell))
        self.head_hovered.emit(*(cell or (-1, -1)))


def export_distance_plot(
    path: str, distance: np.ndarray, title: str, width: int = 900, height: int = 560
) -> None:
    """Write the plot as a PNG (white background) without showing a window.

    A path ending in ``.svg`` writes an SVG instead, with pyqtgraph's SVG exporter.
    """
    from pyqtgraph.exporters import ImageExporter, SVGExporter

    plot = DistancePlot(background="w")
    plot.setAttribute(
        Qt.WidgetAttribute.WA_DontShowOnScreen
    )  # laid out as if shown, never on the screen
    plot.resize(width, height)
    plot.set_statistics(distance, title=title)
    plot.show()  # lays the title, axes and labels out; offscreen on a server
    QApplication.processEvents()
    if str(path).lower().endswith(".svg"):
        SVGExporter(plot.plotItem).export(str(path))
    else:
        exporter = ImageExporter(plot.scene())
        exporter.parameters()["width"] = width
        exporter.export(str(path))
    plot.close()
    plot.deleteLater()
