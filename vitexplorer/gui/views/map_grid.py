"""Many maps at once on one colour scale: every layer x every head for the selected token, or
one method over several images. The scale is stated in the title and drawn as one colour bar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt

from vitexplorer.gui.views.common import (
    WrappingTitle,
    bar_position,
    new_colorbar,
    new_heat_item,
    new_uniform_line,
    set_colorbar_levels,
    shared_levels,
)
from vitexplorer.gui.views.image_view import BAR_AXIS_WIDTH


@dataclass(frozen=True)
class Tile:
    """One map of the grid: its values (rows, columns), or None with ``caption`` saying why;
    the photo it lies over (H, W, 3 uint8), if any."""

    heat: np.ndarray | None
    caption: str = ""
    photo: np.ndarray | None = None


def scale_words(levels: tuple[float, float], count: int) -> str:
    """The shared scale in words: its true ends, with as many digits as tell them apart."""
    low, high = levels
    digits = 3
    while digits < 8 and f"{low:.{digits}g}" == f"{high:.{digits}g}":
        digits += 1
    return f"one colour scale for all {count} maps: {low:.{digits}g} to {high:.{digits}g}"


class MapGridView(pg.GraphicsLayoutWidget):
    """Rows x columns of maps, headed by ``row_labels`` and ``column_labels`` (numbered from 1
    by the caller), each tile captioned; one colour bar for all."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.title = WrappingTitle("Select an image")
        self.addItem(self.title, row=0, col=0, colspan=2)
        self.cells = self.addLayout(row=1, col=0)
        self.cells.setSpacing(2)
        self.colorbar = new_colorbar(width=12)
        self.colorbar.axis.setWidth(BAR_AXIS_WIDTH)  # room for "uniform 1/197 ▲"
        self.addItem(self.colorbar, row=1, col=1)
        self.colorbar.setVisible(False)
        self.uniform_line = new_uniform_line(self.colorbar)
        self.uniform: tuple[float, str] | None = None  # the uniform level marked, and its words
        self.scale_text = ""  # the scale in words, as under the title
        self.tiles: list[list[Tile]] = []
        self.levels: tuple[float, float] | None = None
        self.boxes: list[pg.ViewBox] = []
        self._items: list[tuple[pg.ImageItem | None, pg.ImageItem | None]] = []  # photo, map
        self._signature: tuple | None = None  # the layout the tiles were built for

    def set_tiles(
        self,
        tiles: list[list[Tile]],
        title: str,
        row_labels: list[str] | None = None,
        column_labels: list[str] | None = None,
        uniform: tuple[float, str] | None = None,
        uniform_note: str = "",
    ) -> None:
        """Show ``tiles`` (a list of rows) on one scale spanning every map they hold. Tiles
        laid out as before (same labels, shapes and captions: another token, layer or head)
        have their pictures replaced in place; building 144 tiles anew took 0.6 s.
        ``uniform`` (value, words): the uniform level that every map's rows share, marked on the
        bar; ``uniform_note``: said after the scale instead, where no one level holds for all."""
        self.tiles = tiles
        self.uniform = uniform
        maps = [t.heat for row in tiles for t in row if t.heat is not None and t.heat.size]
        self.levels = shared_levels(maps) if maps else None
        signature = (
            tuple(row_labels or ()),
            tuple(column_labels or ()),
            tuple(
                tuple(
                    (None if t.heat is None else t.heat.shape, t.photo is not None, t.caption)
                    for t in row
                )
                for row in tiles
            ),
        )
        flat = [tile for row in tiles for tile in row]
        if signature == self._signature:
            for tile, (photo, heat) in zip(flat, self._items, strict=True):
                if photo is not None and photo.image is not tile.photo:
                    photo.setImage(tile.photo, levels=(0, 255))
                if heat is not None:
                    values = np.ascontiguousarray(tile.heat, dtype=np.float32)
                    heat.setImage(values, levels=self.levels)
        else:
            self._signature = signature
            self.cells.clear()
            self.boxes, self._items = [], []
            top = 1 if column_labels else 0
            left = 1 if row_labels else 0
            for col, text in enumerate(column_labels or []):
                self.cells.addLabel(text, row=0, col=col + left, size="8pt")
            for r, row in enumerate(tiles):
                if row_labels:
                    self.cells.addLabel(row_labels[r], row=r + top, col=0, size="8pt")
                for c, tile in enumerate(row):
                    self._add_tile(tile, r + top, c + left)
        if self.levels is None:
            self.colorbar.setVisible(False)
            self.scale_text = ""
            self.title.setText(title)
            return
        set_colorbar_levels(self.colorbar, self.levels, uniform=uniform)
        inside = uniform is not None and self.levels[0] <= uniform[0] <= self.levels[1]
        if uniform is not None and inside:
            self.uniform_line.setValue(bar_position(self.levels, uniform[0]))
        self.uniform_line.setVisible(inside)
        self.colorbar.setVisible(True)
        words = [scale_words(self.levels, len(maps)), uniform_note]
        self.scale_text = "; ".join(w for w in words if w)
        self.title.setText(f"{title}<br><small>{self.scale_text}</small>")

    def _add_tile(self, tile: Tile, row: int, col: int) -> None:
        box = self.cells.addViewBox(
            row=row, col=col, lockAspect=True, invertY=True, enableMouse=False, enableMenu=False
        )
        heat = tile.heat
        shape = heat.shape if heat is not None and heat.size else (1, 1)
        rect = QRectF(0, 0, shape[1], shape[0])
        photo = item = None
        if tile.photo is not None:
            photo = pg.ImageItem(axisOrder="row-major")
            photo.setImage(tile.photo, levels=(0, 255))
            photo.setRect(rect)
            box.addItem(photo)
        if heat is not None and heat.size:
            item = new_heat_item()
            item.setImage(np.ascontiguousarray(heat, dtype=np.float32), levels=self.levels)
            item.setRect(rect)
            item.setOpacity(0.6 if tile.photo is not None else 1.0)
            box.addItem(item)
        if tile.caption:
            label = pg.TextItem(tile.caption, anchor=(0, 0), fill=(0, 0, 0, 160))
            label.setPos(0, 0)
            label.setZValue(2)
            box.addItem(label)
        box.setRange(rect, padding=0.02)
        self.boxes.append(box)
        self._items.append((photo, item))

    def values(self) -> np.ndarray:
        """Every tile's map as one float32 array (rows, columns, map rows, map columns), maps
        of another shape or none padded with NaN."""
        shapes = [t.heat.shape for row in self.tiles for t in row if t.heat is not None]
        if not shapes:
            return np.zeros((0, 0, 0, 0), np.float32)
        height, width = max(s[0] for s in shapes), max(s[1] for s in shapes)
        columns = max(len(row) for row in self.tiles)
        out = np.full((len(self.tiles), columns, height, width), np.nan, np.float32)
        for r, row in enumerate(self.tiles):
            for c, tile in enumerate(row):
                if tile.heat is not None:
                    out[r, c, : tile.heat.shape[0], : tile.heat.shape[1]] = tile.heat
        return out
