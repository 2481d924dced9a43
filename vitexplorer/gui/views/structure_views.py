"""What a ViT learned independently of any image, drawn like Fig. 7 (left and centre) of the ViT
paper (Dosovitskiy et al., 2021): the position embeddings' cosine similarity as a grid of small
maps, and the patch-embedding filters' principal components as RGB images. The numbers come from
:mod:`vitexplorer.core.explain.structure`; these views only lay them out.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QGraphicsRectItem

from vitexplorer.gui.views.common import WrappingTitle, selection_pen
from vitexplorer.gui.views.head_stats_view import TEXT_COLOR, TITLE_SIZE, cell_ticks

SIMILARITY_COLORMAP = "CET-D1"  # diverging: cosine similarity is signed, 0 is neutral grey
SIMILARITY_LEVELS = (-1.0, 1.0)  # the whole range of a cosine, the same for every model
GAP = 1  # pixels between the mosaic's tiles, left transparent (NaN)


def similarity_mosaic(similarity: np.ndarray, gap: int = GAP) -> np.ndarray:
    """(rows, cols, rows, cols) maps laid out as one float32 image of rows x cols tiles, each
    (rows, cols), with ``gap`` NaN pixels between tiles: tile (r, c) is ``similarity[r, c]``."""
    rows, cols = similarity.shape[:2]
    tile_rows, tile_cols = similarity.shape[2:]
    padded = np.full((rows, cols, tile_rows + gap, tile_cols + gap), np.nan, np.float32)
    padded[:, :, :tile_rows, :tile_cols] = similarity
    image = padded.transpose(0, 2, 1, 3).reshape(rows * (tile_rows + gap), cols * (tile_cols + gap))
    return np.ascontiguousarray(image[: image.shape[0] - gap, : image.shape[1] - gap])


def _image_plot(layout: pg.GraphicsLayout, row: int, col: int, x: str, y: str) -> pg.PlotItem:
    plot = layout.addPlot(row=row, col=col)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setMouseEnabled(x=False, y=False)
    plot.invertY(True)
    plot.setAspectLocked(True)
    plot.setLabel("bottom", x, color=TEXT_COLOR)
    plot.setLabel("left", y, color=TEXT_COLOR)
    return plot


class PositionSimilarityView(pg.GraphicsLayoutWidget):
    """Tile (r, c) of the mosaic is the cosine similarity of position (r, c)'s embedding with
    every patch position's. Every tile and the enlarged map share one colour scale, -1 to 1.
    Click a tile (or a cell of the enlarged map) to enlarge that position."""

    position_clicked = Signal(int, int)  # row, column, both from 0

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ci.layout.setContentsMargins(4, 4, 4, 4)
        self.title = self.addLabel(
            "Position-embedding similarity: each tile is one patch position",
            row=0,
            col=0,
            colspan=3,
            color=TEXT_COLOR,
            size=TITLE_SIZE,
        )
        cmap = pg.colormap.get(SIMILARITY_COLORMAP)
        self.mosaic_plot = _image_plot(self.ci, 1, 0, "input patch column", "input patch row")
        self.mosaic = pg.ImageItem(axisOrder="row-major")
        self.mosaic.setColorMap(cmap)
        self.mosaic_plot.addItem(self.mosaic)
        self.tile_ring = QGraphicsRectItem()
        self.tile_ring.setPen(selection_pen(2))
        self.tile_ring.setZValue(2)
        self.mosaic_plot.addItem(self.tile_ring)
        self.large_plot = _image_plot(self.ci, 1, 1, "patch column", "patch row")
        self.large = pg.ImageItem(axisOrder="row-major")
        self.large.setColorMap(cmap)
        self.large_plot.addItem(self.large)
        self.marker = QGraphicsRectItem()
        self.marker.setPen(selection_pen(2.5))
        self.marker.setZValue(2)
        self.large_plot.addItem(self.marker)
        self.colorbar = pg.ColorBarItem(
            values=SIMILARITY_LEVELS,
            colorMap=cmap,
            interactive=False,
            width=12,
            label="cosine similarity",
            colorMapMenu=False,
        )
        self.colorbar.axis.setWidth(48)
        self.colorbar.axis.setTextPen(TEXT_COLOR)
        self.colorbar.axis.setPen(TEXT_COLOR)
        self.addItem(self.colorbar, row=1, col=2)
        self.readout = self.addLabel("", row=2, col=0, colspan=3, color=TEXT_COLOR)
        self.ci.layout.setColumnStretchFactor(0, 3)
        self.ci.layout.setColumnStretchFactor(1, 2)
        self.similarity = np.zeros((0, 0, 0, 0), np.float32)
        self.selected: tuple[int, int] | None = None
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    @property
    def grid(self) -> tuple[int, int]:
        return self.similarity.shape[0], self.similarity.shape[1]

    def set_similarity(self, similarity: np.ndarray) -> None:
        """Show (rows, cols, rows, cols) similarities; the centre position is enlarged first."""
        self.similarity = np.asarray(similarity, dtype=np.float32)
        rows, cols = self.grid
        image = similarity_mosaic(self.similarity)
        self.mosaic.setImage(image, levels=SIMILARITY_LEVELS)
        self.mosaic.setRect(QRectF(0, 0, image.shape[1], image.shape[0]))
        self.mosaic_plot.setRange(QRectF(0, 0, image.shape[1], image.shape[0]), padding=0.01)
        self.mosaic_plot.getAxis("bottom").setTicks([cell_ticks(cols, cols, GAP, most=7)])
        self.mosaic_plot.getAxis("left").setTicks([cell_ticks(rows, rows, GAP, most=7)])
        self.large_plot.setRange(QRectF(0, 0, cols, rows), padding=0.01)
        self.large_plot.getAxis("bottom").setTicks([cell_ticks(cols, most=7)])
        self.large_plot.getAxis("left").setTicks([cell_ticks(rows)])
        self.selected = None
        self.select_position(rows // 2, cols // 2)
        self.readout.setText("click a tile to enlarge that position; hover to read a value")

    def select_position(self, row: int, col: int) -> None:
        """Enlarge position (row, col): its similarity to every position, itself outlined."""
        rows, cols = self.grid
        if not (0 <= row < rows and 0 <= col < cols):
            raise IndexError(f"position ({row}, {col}) is outside the {rows}x{cols} grid")
        self.selected = (row, col)
        self.large.setImage(self.similarity[row, col], levels=SIMILARITY_LEVELS)
        self.large.setRect(QRectF(0, 0, cols, rows))
        self.marker.setRect(QRectF(col, row, 1, 1))
        self.tile_ring.setRect(QRectF(col * (cols + GAP), row * (rows + GAP), cols, rows))
        self.large_plot.setTitle(
            f"position (row {row + 1}, column {col + 1}) enlarged", color=TEXT_COLOR, size="9pt"
        )

    @property
    def enlarged(self) -> np.ndarray:
        """The map the enlarged view shows."""
        return self.large.image

    def position_at(self, scene_pos) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((tile row, tile column), (row, column) within it) under a scene position, or None.

        Over the enlarged map the tile is the enlarged position."""
        rows, cols = self.grid
        if rows == 0:
            return None
        point = self.large_plot.vb.mapSceneToView(scene_pos)
        if self.large_plot.vb.sceneBoundingRect().contains(scene_pos) and self.selected:
            r, c = math.floor(point.y()), math.floor(point.x())
            return (self.selected, (r, c)) if 0 <= r < rows and 0 <= c < cols else None
        if not self.mosaic_plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.mosaic_plot.vb.mapSceneToView(scene_pos)
        x, y = math.floor(point.x()), math.floor(point.y())
        tile_row, r = divmod(y, rows + GAP)
        tile_col, c = divmod(x, cols + GAP)
        if 0 <= tile_row < rows and 0 <= tile_col < cols and r < rows and c < cols:
            return (tile_row, tile_col), (r, c)
        return None

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        hit = self.position_at(event.scenePos())
        if hit is None:
            return
        tile, cell = hit
        over_large = self.large_plot.vb.sceneBoundingRect().contains(event.scenePos())
        row, col = cell if over_large else tile
        self.select_position(row, col)
        self.position_clicked.emit(row, col)

    def _moved(self, scene_pos) -> None:
        hit = self.position_at(scene_pos)
        if hit is None:
            return
        (tr, tc), (r, c) = hit
        value = self.similarity[tr, tc, r, c]
        self.readout.setText(
            f"position ({tr + 1}, {tc + 1}) with position ({r + 1}, {c + 1}): {value:+.3f}"
        )


class FilterGridView(pg.GraphicsLayoutWidget):
    """The first principal components of the patch-embedding filters as RGB images, each titled
    with its share of the filters' variance. Each is scaled on its own, mid grey for 0."""

    COLUMNS = 7  # at most
    TILE_WIDTH = 64  # pixels a column needs for its label ("28: 1.4%")

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ci.layout.setContentsMargins(4, 4, 4, 4)
        self.ci.layout.setVerticalSpacing(0)
        self.images = np.zeros((0, 0, 0, 3), np.float32)
        self.shares = np.zeros(0)
        self.tiles: list[tuple[pg.ViewBox, pg.ImageItem, pg.LabelItem]] = []
        self._built_columns = 0

    def set_components(self, images: np.ndarray, shares: np.ndarray) -> None:
        """``images`` (count, p, p, 3) in 0..1, ``shares`` (count,) of the variance."""
        self.images = np.asarray(images, dtype=np.float32)
        self.shares = np.asarray(shares, dtype=np.float64)
        if len(self.tiles) != len(self.images) or self._built_columns != self.columns():
            self._build(len(self.images))
            self.ci.setGeometry(self.range)  # a wider grid before had stretched the layout
        self.title.setText(
            f"Patch-embedding filters: first {len(self.images)} principal components<br>"
            f"<span style='font-size: 8pt'>each titled with its share of the filters' variance "
            f"({100 * self.shares.sum():.0f}% together)</span>"
        )
        size = self.images.shape[1:3]
        for i, (box, item, label) in enumerate(self.tiles):
            item.setImage(self.images[i], levels=(0.0, 1.0))
            item.setRect(QRectF(0, 0, size[1], size[0]))
            box.setRange(QRectF(0, 0, size[1], size[0]), padding=0.0)
            label.setText(f"{i + 1}: {100 * self.shares[i]:.1f}%")

    def columns(self) -> int:
        """As many columns as the width holds labels for, up to :attr:`COLUMNS`: seven of them
        ran off the right edge of a 1024 px window."""
        return max(2, min(self.COLUMNS, (self.width() - 8) // self.TILE_WIDTH))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if getattr(self, "tiles", None) and self._built_columns != self.columns():
            self.set_components(self.images, self.shares)

    def _build(self, count: int) -> None:
        self.clear()
        self.tiles = []
        columns = self._built_columns = self.columns()
        # wraps to the width it gets: at its whole length it pushed the last column off a
        # 1024 px window
        self.title = WrappingTitle(" ", color=TEXT_COLOR, size=TITLE_SIZE)
        self.addItem(self.title, row=0, col=0, colspan=columns)
        for i in range(count):
            row, col = divmod(i, columns)
            label = self.addLabel("", row=1 + 2 * row, col=col, color=TEXT_COLOR, size="8pt")
            box = self.addViewBox(
                row=2 + 2 * row,
                col=col,
                lockAspect=True,
                invertY=True,
                enableMouse=False,
                enableMenu=False,
            )
            item = pg.ImageItem(axisOrder="row-major")
            box.addItem(item)
            self.tiles.append((box, item, label))

    def tile_image(self, index: int) -> np.ndarray:
        """What tile ``index`` (from 0) shows."""
        return self.tiles[index][1].image
