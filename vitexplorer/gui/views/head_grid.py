"""Every head of the selected layer as a small map for the selected token; click to choose."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal

from vitexplorer.gui.views.common import (
    SELECTION_COLOR,
    WrappingTitle,
    heat_levels,
    new_heat_item,
)

MEAN = -1  # the tile that shows the mean over heads
NOTE_HEIGHT = 40  # px under the tiles for the scale note (two lines of 8 pt in a narrow panel)
SCALE_NOTE = "each tile on its own colour scale, its lowest to its highest value"


class HeadGridView(pg.GraphicsLayoutWidget):
    head_clicked = Signal(int)  # a head index, or MEAN

    def __init__(self) -> None:
        super().__init__()
        self.ci.layout.setSpacing(3)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setToolTip(
            "Every head of this layer for the selected token, each on its own colour scale; "
            "click one to select it"
        )
        self.tiles: list[tuple[int, pg.ViewBox, pg.ImageItem, pg.TextItem]] = []
        self.maps = np.zeros((0, 0, 0), np.float32)
        self.selected = MEAN
        self._built_columns = 0
        self.scene().sigMouseClicked.connect(self._clicked)

    def _build(self, num_heads: int, grid: tuple[int, int]) -> None:
        self.clear()
        self.tiles = []
        heads = [*range(num_heads), MEAN]
        columns = self._columns(len(heads))
        self._built_columns = columns
        for i, head in enumerate(heads):
            row, col = divmod(i, columns)
            box = self.addViewBox(
                row=row,
                col=col,
                lockAspect=True,
                invertY=True,
                enableMouse=False,
                enableMenu=False,
            )
            image = new_heat_item()
            box.addItem(image)
            text = "mean" if head == MEAN else str(head + 1)
            label = pg.TextItem(text, anchor=(0, 0), fill=(0, 0, 0, 160))
            label.setPos(0, 0)
            label.setZValue(2)
            box.addItem(label)
            box.setRange(QRectF(0, 0, grid[1], grid[0]), padding=0.02)
            self.tiles.append((head, box, image, label))
        rows = (len(heads) + columns - 1) // columns
        # said on screen, not only in the tooltip: the same colour is another value in each tile
        # wraps to the width it gets: at its whole length it widened a narrow dock's tiles
        self.scale_note = WrappingTitle(SCALE_NOTE, size="8pt")
        self.addItem(self.scale_note, row=rows, col=0, colspan=columns)

    def _columns(self, tiles: int) -> int:
        """The columns that make the square tiles largest in the widget's width and height
        (less the note under them): 2 x 2 for 3 heads and the mean in a squarish panel, where
        a rule from the aspect alone stacked them in one column of small tiles."""
        width = max(self.width() - 6, 1)
        height = max(self.height() - NOTE_HEIGHT, 1)
        spacing = self.ci.layout.horizontalSpacing()

        def side(columns: int) -> float:
            rows = math.ceil(tiles / columns)
            return min(
                (width - spacing * (columns - 1)) / columns, (height - spacing * (rows - 1)) / rows
            )

        return max(range(1, tiles + 1), key=lambda columns: (side(columns), -columns))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        tiles = getattr(self, "tiles", None)  # None while the base class is being set up
        if tiles and self._columns(len(tiles)) != self._built_columns:
            maps = self.maps
            self._build(maps.shape[0], maps.shape[1:])
            self.set_maps(maps, None if self.selected == MEAN else self.selected)

    def set_maps(self, maps: np.ndarray, selected: int | None) -> None:
        """``maps`` is (heads, rows, columns); ``selected`` a head or None for the mean."""
        rebuilt = maps.shape != self.maps.shape or not self.tiles
        if rebuilt:
            self._build(maps.shape[0], maps.shape[1:])
        self.maps = maps
        rect = QRectF(0, 0, maps.shape[2], maps.shape[1])
        for head, _box, image, _label in self.tiles:
            values = maps.mean(axis=0) if head == MEAN else maps[head]
            image.setImage(values, levels=heat_levels(values))
            image.setRect(rect)
        self.set_selected(selected, force=rebuilt)

    def set_selected(self, selected: int | None, force: bool = False) -> None:
        """Outline the selected tile; only the tiles whose state changes are touched."""
        previous, self.selected = self.selected, MEAN if selected is None else selected
        for head, box, _image, label in self.tiles:
            chosen = head == self.selected
            if force or chosen or head == previous:
                box.setBorder(pg.mkPen(SELECTION_COLOR, width=3) if chosen else None)
                box.update()
                label.setColor(SELECTION_COLOR if chosen else (235, 235, 235))

    def tile_values(self, head: int) -> np.ndarray:
        """What the tile of ``head`` (or MEAN) currently shows."""
        for tile_head, _box, image, _label in self.tiles:
            if tile_head == head:
                return image.image
        raise KeyError(head)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        for head, box, _image, _label in self.tiles:
            if box.sceneBoundingRect().contains(event.scenePos()):
                self.head_clicked.emit(head)
                return
