"""Mean attention distance of every head against depth, like Fig. 7 (right) of the ViT paper
(Dosovitskiy et al., 2021): one point per head; click one to open that layer and head."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal

from vitexplorer.gui.views.common import SELECTION_COLOR

POINT_COLOR = (31, 119, 180)
POINT_COLOR_DARK = (120, 180, 255)


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
        self.plotItem.setTitle(title, color=self.text_color)
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

    def _clicked(self, _item, points, _event=None) -> None:  # noqa: ANN001
        if len(points):
            layer, head = points[0].data()
            self.head_clicked.emit(int(layer), int(head))


def export_distance_plot(
    path: str, distance: np.ndarray, title: str, width: int = 900, height: int = 560
) -> None:
    """Write the plot as a PNG (white background) without showing a window."""
    from pyqtgraph.exporters import ImageExporter

    from PySide6.QtWidgets import QApplication

    plot = DistancePlot(background="w")
    plot.resize(width, height)
    plot.set_statistics(distance, title=title)
    plot.show()  # lays the title, axes and labels out; offscreen on a server
    QApplication.processEvents()
    exporter = ImageExporter(plot.scene())
    exporter.parameters()["width"] = width
    exporter.export(str(path))
    plot.close()
    plot.deleteLater()
