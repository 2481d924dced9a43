"""The image the model saw, the patch grid, the selected patch and its attention overlay."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter
from PySide6.QtWidgets import QGraphicsRectItem

from vitexplorer.core.render.scales import symmetric
from vitexplorer.gui.views.common import (
    DIFFERENCE_COLORMAP,
    HEAT_COLORMAP,
    WrappingTitle,
    bar_position,
    colormap,
    heat_levels,
    new_colorbar,
    new_heat_item,
    new_uniform_line,
    selection_pen,
    set_colorbar_levels,
)

BAR_AXIS_WIDTH = 66  # px beside the colour bar for its labels
ARROWS = {  # by key code, as QKeyEvent.key() gives it
    Qt.Key.Key_Up.value: (-1, 0),
    Qt.Key.Key_Down.value: (1, 0),
    Qt.Key.Key_Left.value: (0, -1),
    Qt.Key.Key_Right.value: (0, 1),
}


class PatchGrid(pg.GraphicsObject):
    """Faint lines between the patches, one screen pixel wide whatever the zoom. Each is filled
    as a one-pixel rectangle: Qt's raster engine blends a filled rectangle fast but draws a
    translucent line about 35 times slower, which made a third of every redraw after a click."""

    COLOR = QColor(255, 255, 255, 70)

    def __init__(self) -> None:
        super().__init__()
        self.grid = (0, 0)  # rows, columns

    def set_grid(self, rows: int, cols: int) -> None:
        self.prepareGeometryChange()
        self.grid = (rows, cols)
        self.update()

    def boundingRect(self) -> QRectF:
        rows, cols = self.grid
        return QRectF(0, 0, cols, rows)

    def paint(self, painter: QPainter, *_args) -> None:
        rows, cols = self.grid
        if rows == 0 or cols == 0:
            return
        to_screen = painter.transform()  # patch units to device pixels, axis-aligned
        corners = [to_screen.map(QPointF(x, y)) for x, y in ((0, 0), (cols, rows))]
        left, right = sorted(round(p.x()) for p in corners)
        top, bottom = sorted(round(p.y()) for p in corners)
        painter.save()
        painter.resetTransform()
        for col in range(cols + 1):
            x = math.floor(to_screen.map(QPointF(col, 0)).x())
            painter.fillRect(QRect(min(x, right - 1), top, 1, bottom - top), self.COLOR)
        for row in range(rows + 1):
            y = math.floor(to_screen.map(QPointF(0, row)).y())
            painter.fillRect(QRect(left, min(y, bottom - 1), right - left, 1), self.COLOR)
        painter.restore()


class ImageView(pg.GraphicsLayoutWidget):
    """Coordinates are patch units: the image spans (0, 0) to (columns, rows)."""

    patch_clicked = Signal(int, int)  # row, column
    patch_hovered = Signal(int, int)  # row, column; (-1, -1) when off the image
    arrow_pressed = Signal(int, int)  # row step, column step

    def __init__(self, colormap: str = HEAT_COLORMAP) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # drops go to the main window
        self.title = WrappingTitle("Drop an image here")
        self.addItem(self.title, row=0, col=0, colspan=2)
        self.view = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.photo = pg.ImageItem(axisOrder="row-major")
        self.heat = new_heat_item(colormap)
        self.heat.setZValue(1)
        self.grid_lines = PatchGrid()
        self.grid_lines.setZValue(2)
        self.selection = QGraphicsRectItem()
        self.selection.setPen(selection_pen(2.5))
        self.selection.setZValue(3)
        for item in (self.photo, self.heat, self.grid_lines, self.selection):
            self.view.addItem(item)
        self.colorbar = new_colorbar(width=14, name=colormap)
        self.colorbar.axis.setWidth(BAR_AXIS_WIDTH)  # room for "clipped ▲" and "uniform"
        self.addItem(self.colorbar, row=1, col=1)
        self.uniform_line = new_uniform_line(self.colorbar)
        self.uniform: tuple[float, str] | None = None  # the uniform level marked, and its words
        self.levels: tuple[float, float] | None = None  # the levels the map is drawn on
        self.locked_levels: tuple[float, float] | None = None  # "Lock scale": kept for every map
        self._lock_next = False  # locked with no map shown: the next map's levels are kept
        self._asked_levels: tuple[float, float] | None = None  # what the last map asked for
        self.grid: tuple[int, int] = (0, 0)
        self.heat_values = np.zeros((0, 0), np.float32)
        self.set_opacity(0.6)
        self.colorbar.setVisible(False)  # until there is a map
        self.base_colormap = colormap  # an unsigned map's colours
        self.colormap_name = colormap  # the colours drawn now
        self.signed = False  # the map's sign means something: diverging, symmetric levels
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    def set_image(self, display: np.ndarray, grid: tuple[int, int]) -> None:
        """Show a new image (H, W, 3) with its patch grid (rows, columns)."""
        rows, cols = grid
        rect = QRectF(0, 0, cols, rows)
        self.photo.setImage(display, levels=(0, 255))
        self.photo.setRect(rect)
        if grid != self.grid:
            self.grid = grid
            self.grid_lines.set_grid(rows, cols)
            self.view.setRange(rect, padding=0.02)

    def set_heat(
        self,
        values: np.ndarray,
        levels: tuple[float, float] | None = None,
        uniform: tuple[float, str] | None = None,
        signed: bool = False,
    ) -> None:
        """A map over the patches, (rows, columns), on ``levels`` (default: its own range), or
        on the locked levels while the scale is locked (:meth:`lock_scale`). ``uniform``
        (value, words), for a map whose rows are distributions, is marked on the colour bar;
        the bar always shows the levels the map is drawn on. A ``signed`` map (its sign means
        something: :attr:`~vitexplorer.core.explain.method.Method.signed`) is drawn on the
        diverging :data:`DIFFERENCE_COLORMAP` with those levels made symmetric around zero,
        ``(-m, m)``, so that a negative value is never drawn as dark as nothing."""
        self.heat_values = values
        self.uniform = uniform
        self.signed = signed
        self._use_colormap(DIFFERENCE_COLORMAP if signed else self.base_colormap)
        self._asked_levels = levels or heat_levels(values)
        if self._lock_next:
            self.locked_levels, self._lock_next = self._asked_levels, False
        self._draw_heat()

    def _draw_heat(self) -> None:
        levels = self.locked_levels or self._asked_levels
        if levels is None:  # no map yet
            return
        if self.signed:  # a locked or shared scale too: zero in the neutral middle colour
            levels = symmetric(levels)
        self.levels = levels
        self.heat.setImage(self.heat_values, levels=levels)
        self.heat.setRect(QRectF(0, 0, self.grid[1], self.grid[0]))
        finite = self.heat_values[np.isfinite(self.heat_values)]
        clipped = (
            (bool(finite.min() < levels[0]), bool(finite.max() > levels[1]))
            if finite.size
            else (False, False)
        )
        set_colorbar_levels(self.colorbar, levels, uniform=self.uniform, clipped=clipped)
        uniform = self.uniform
        inside = uniform is not None and levels[0] <= uniform[0] <= levels[1]
        if uniform is not None and inside:
            self.uniform_line.setValue(bar_position(levels, uniform[0]))
        self.uniform_line.setVisible(inside)
        self.colorbar.setVisible(True)

    def _use_colormap(self, name: str) -> None:
        """Draw the map and its colour bar in the colour map ``name`` (set only on a change)."""
        if name == self.colormap_name:
            return
        self.colormap_name = name
        self.heat.setColorMap(colormap(name))
        self.colorbar.setColorMap(colormap(name))

    def lock_scale(self, locked: bool) -> None:
        """Keep the present colour levels for every map drawn after (other layers, heads,
        images), so that colours compare; values beyond them take the end colours. Unlocked,
        each map is drawn on the levels it asks for again. Locked before any map, the first map's
        levels are kept."""
        self.locked_levels = self.levels if locked and self.heat_values.size else None
        self._lock_next = locked and not self.heat_values.size
        if self.heat_values.size and self._asked_levels is not None:
            self._draw_heat()

    def clear_heat(self) -> None:
        """No overlay (a map still being computed): the photo alone."""
        self.heat.clear()
        self.heat_values = np.zeros((0, 0), np.float32)
        self.levels = None
        self.colorbar.setVisible(False)  # no map, no scale

    def set_selected_patch(self, patch: tuple[int, int] | None) -> None:
        """Outline the selected patch; ``None`` (a prefix token such as CLS) hides the outline."""
        self.selection.setVisible(patch is not None)
        if patch is not None:
            self.selection.setRect(QRectF(patch[1], patch[0], 1, 1))

    def set_opacity(self, opacity: float) -> None:
        self.heat.setOpacity(opacity)

    def set_grid_visible(self, visible: bool) -> None:
        self.grid_lines.setVisible(visible)

    def show_preview(self, display: np.ndarray, message: str) -> None:
        """The image alone, before any model has analysed it: no grid, no map, ``message`` as
        the title. (Its coordinates are pixels, not patches: the next :meth:`set_image` sets
        the patch grid and the range again.)"""
        height, width = display.shape[:2]
        rect = QRectF(0, 0, width, height)
        self.photo.setImage(display, levels=(0, 255))
        self.photo.setRect(rect)
        self.heat.clear()
        self.heat_values = np.zeros((0, 0), np.float32)
        self.colorbar.setVisible(False)  # no map, no scale
        self.selection.setVisible(False)
        self.grid = (0, 0)
        self.grid_lines.set_grid(0, 0)
        self.view.setRange(rect, padding=0.02)
        self.title.setText(message)

    def show_placeholder(self, message: str) -> None:
        self.photo.clear()
        self.heat.clear()
        self.heat_values = np.zeros((0, 0), np.float32)
        self.colorbar.setVisible(False)  # no map, no scale
        self.selection.setVisible(False)
        self.title.setText(message)

    def patch_at(self, scene_pos) -> tuple[int, int] | None:
        point = self.view.mapSceneToView(scene_pos)
        row, col = math.floor(point.y()), math.floor(point.x())
        if 0 <= row < self.grid[0] and 0 <= col < self.grid[1]:
            return row, col
        return None

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.photo.image is None:
            return
        patch = self.patch_at(event.scenePos())
        if patch is not None:
            self.setFocus()
            self.patch_clicked.emit(*patch)

    def _moved(self, scene_pos) -> None:
        patch = self.patch_at(scene_pos) if self.photo.image is not None else None
        self.patch_hovered.emit(*(patch or (-1, -1)))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        step = ARROWS.get(event.key())
        if step is None:
            super().keyPressEvent(event)
            return
        self.arrow_pressed.emit(*step)
        event.accept()
