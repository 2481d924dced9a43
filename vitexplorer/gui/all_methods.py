"""All methods: the explorer's image under every method of the catalogue at once, each map on
its own colour scale (its range in its title), titled with the method, its cost and what it
shows (the explorer's caption: "attention · layer 6, mean of heads"). A signed method's map
(integrated gradients, the LRP methods, occlusion) is drawn on the diverging colour map, its
scale symmetric around zero, and its title says so.

Methods that read the stored attention are drawn here from the analysis, as the explorer draws
them; the methods that need the model are asked of the explorer's worker one at a time, with a
progress line ("5 of 12 methods"), each job's own passes, and a Cancel button. A method that does
not apply to the model says why in its tile. Nothing here computes a map: the maps come from the
session's :class:`~vitexplorer.core.explain.maps.MapCache`."""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.explain.maps import MapJob, caption, map_job
from vitexplorer.core.explain.method import Method, MethodOptions, catalogue
from vitexplorer.core.render.scales import symmetric
from vitexplorer.gui.views.common import (
    DIFFERENCE_COLORMAP,
    HEAT_COLORMAP,
    colormap,
    heat_levels,
    new_heat_item,
)

COLUMNS = 6  # tiles per row at most
TILE_WIDTH = 190  # a tile's width in pixels: as many columns as the view's width holds
MAP_HEIGHT = 130  # the height of a tile's picture
WAITING, COMPUTING, DRAWN, NOT_DRAWN = "waiting", "computing", "drawn", "not drawn"


@dataclass
class MethodTile:
    """One method's place in the grid: its title, its photo and map, and what it holds now
    (``heat`` the map drawn, or None with ``status`` and ``words`` saying why)."""

    method: Method
    widget: QWidget  # the tile: its title over its picture
    label: QLabel
    box: pg.ViewBox
    photo: pg.ImageItem
    heat_item: pg.ImageItem
    heat: np.ndarray | None = None
    status: str = WAITING
    words: str = ""


def tile_options(method: Method, options: MethodOptions, selection: Any) -> MethodOptions:
    """The options a tile computes ``method`` with: the method bar's, at the explorer's layer,
    head and token (the class token for a method that explains it only)."""
    token = 0 if method.only_cls else selection.token
    return replace(options, layer=selection.layer, head=selection.head, token=token)


def range_words(heat: np.ndarray, signed: bool = False) -> str:
    """A map's own colour scale in words: its lowest and highest values; for a ``signed`` map,
    also the symmetric scale it is drawn on ("-0.696 to 0.579, symmetric ±0.696")."""
    finite = heat[np.isfinite(heat)]
    if not finite.size:
        return "no finite value"
    words = f"{finite.min():.3g} to {finite.max():.3g}"
    if signed:
        words += f", symmetric ±{np.abs(finite).max():.3g}"
    return words


def shown_words(method: Method, words: str) -> str:
    """A caption ("attention · layer 6, mean of heads") without the method's name, which the
    tile's title already gives: "layer 6, mean of heads", "for 'dog' (predicted)"."""
    for name in (method.name, method.label):
        if words.lower().startswith(name.lower()):
            return words[len(name) :].lstrip(" ·")
    return words


def tile_levels(heat: np.ndarray, signed: bool = False) -> tuple[float, float]:
    """The levels a tile draws ``heat`` on: its own range, made symmetric around zero for a
    ``signed`` map (drawn on the diverging colour map)."""
    finite = heat[np.isfinite(heat)]
    levels = heat_levels(finite)
    return symmetric(levels) if signed else levels


class AllMethodsView(QWidget):
    """The grid of every method's map for the explorer's image; see the module docstring.

    ``explanations`` is the explorer's :class:`~vitexplorer.gui.explanations.Explanations`
    (its context, session and method bar)."""

    def __init__(self, explanations: Any) -> None:
        super().__init__()
        self.explanations = explanations
        self.progress_label = QLabel("Select an image")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the method being computed and those still to come")
        self.cancel_button.setVisible(False)
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self.cancel)
        self.again_button = QPushButton("Compute the rest")
        self.again_button.setToolTip("Compute the methods that were cancelled")
        self.again_button.setVisible(False)
        self.again_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.again_button.clicked.connect(self.compute_again)
        row = QHBoxLayout()
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(self.progress_label, 1)
        row.addWidget(self.again_button)
        row.addWidget(self.cancel_button)
        self.cells = QWidget()  # the tiles, scrolled when more than the view holds
        self.cell_layout = QGridLayout(self.cells)
        self.cell_layout.setContentsMargins(4, 4, 4, 4)
        self.cell_layout.setSpacing(6)
        self.cell_layout.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.grid = QScrollArea()
        self.grid.setWidgetResizable(True)
        self.grid.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.grid.setWidget(self.cells)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(row)
        layout.addWidget(self.grid, 1)
        self.tiles: dict[str, MethodTile] = {}
        self._shown: tuple | None = None  # what the tiles were computed for
        self._columns = 0  # the columns the tiles were laid out in
        self._queue: list[str] = []  # model methods still to ask, in catalogue order
        self._asked: tuple[str, MapJob] | None = None  # the method whose map the worker computes
        self._passes = ""  # the running job's passes in words
        session = explanations.session
        session.map_arrived.connect(self._map_arrived)
        session.map_failed.connect(self._map_failed)
        session.map_cancelled.connect(self._map_cancelled)
        session.map_progress.connect(self._map_progress)

    # --- what to show ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Compute the tiles for the explorer's image and options, when on screen and when
        what they show changed."""
        ctx = self.explanations.context
        analysis, key = ctx.analysis, ctx.current_key
        if not self.isVisible() or analysis is None or key is None:
            return
        options = self.explanations.method_bar.choice().options
        sel = ctx.state
        shown = (key, id(analysis), options, sel.layer, sel.head, sel.token)
        if shown == self._shown:
            return
        self._shown = shown
        self._build(catalogue(), analysis)
        self._queue = []
        self._asked = None
        for method in catalogue():
            tile = self.tiles[method.name]
            reason = method.applies(analysis.spec)
            if reason:
                self._set_words(tile, NOT_DRAWN, f"does not apply: {reason}")
            elif not method.needs_model:
                self._draw_stored(tile, analysis, key)
            else:
                self._set_words(tile, WAITING, "waiting for the model…")
                self._queue.append(method.name)
        self._next()

    def _options(self, method: Method) -> MethodOptions:
        ctx = self.explanations.context
        return tile_options(method, self.explanations.method_bar.choice().options, ctx.state)

    def _draw_stored(self, tile: MethodTile, analysis: Any, key: str) -> None:
        """A method that reads the stored attention, drawn from the analysis (numpy)."""
        try:
            options = self._options(tile.method)
            heat = self.explanations.maps.map(key, analysis, tile.method.name, options)
        except ValueError as exc:  # an option that does not fit this model
            self._set_words(tile, NOT_DRAWN, str(exc))
            return
        self._set_heat(tile, heat)

    def _next(self) -> None:
        """Ask the worker for the next model method's map, one at a time."""
        ctx = self.explanations.context
        session = self.explanations.session
        analysis, key = ctx.analysis, ctx.current_key
        while self._queue and self._asked is None:
            name = self._queue[0]
            tile = self.tiles[name]
            options = self._options(tile.method)
            heat = self.explanations.maps.map(key, analysis, name, options)
            if heat is not None:  # computed before (the explorer's own view asked for it)
                self._queue.pop(0)
                self._set_heat(tile, heat)
                continue
            job = map_job(name, options, analysis)
            if job is None:  # not a model method (refresh drew it): nothing to ask
                self._queue.pop(0)
                continue
            if session.cancelled(key, job):
                self._queue.pop(0)
                self._set_words(tile, NOT_DRAWN, "cancelled")
                continue
            entry = ctx.images.entries.get(key)
            if entry is None:
                return
            session.ask_map(key, entry.source, job)  # or already asked by the explorer's view
            self._asked = (name, job)
            self._passes = ""
            self._set_words(tile, COMPUTING, "computing…")
        self._say_progress()

    # --- the session's answers -------------------------------------------------------------------
    def _waits_for(self, key: str, job: Any) -> str | None:
        """The method whose map is asked, when an answer for ``key`` and ``job`` (None: any
        job of that image) is the one this view waits for; else None."""
        asked = self._asked
        if asked is None or key != self.explanations.context.current_key:
            return None
        return asked[0] if job is None or job == asked[1] else None

    def _map_arrived(self, key: str) -> None:
        name = self._waits_for(key, None)
        if name is None:
            return
        ctx = self.explanations.context
        tile = self.tiles[name]
        heat = self.explanations.maps.map(key, ctx.analysis, name, self._options(tile.method))
        if heat is None:
            return  # another map of this image arrived
        self._asked = None
        self._queue.remove(name)
        self._set_heat(tile, heat)
        self._next()

    def _map_failed(self, failed: Any) -> None:  # workers.MapFailed
        name = self._waits_for(failed.key, failed.job)
        if name is None:
            return
        self._asked = None
        self._queue.remove(name)
        self._set_words(self.tiles[name], NOT_DRAWN, f"could not be computed: {failed.message}")
        self._next()

    def _map_cancelled(self, cancelled: Any) -> None:  # workers.MapCancelled
        if self._waits_for(cancelled.key, cancelled.job) is not None:
            self.cancel()

    def _map_progress(self, progress: Any) -> None:  # workers.MapProgress
        name = self._waits_for(progress.key, progress.job)
        if name is None:
            return
        passes = f"{progress.done} of {progress.total} passes"
        self._passes = f"{name}: {passes}"
        tile = self.tiles[name]
        tile.label.setText(self._title(tile, f"computing, {passes}…"))
        self._say_progress()

    # --- cancel ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the running method and those still to come: their tiles say so, no map."""
        waiting = list(self._queue)
        self._queue, self._asked = [], None
        self.explanations.session.cancel_maps()
        for name in waiting:
            self._set_words(self.tiles[name], NOT_DRAWN, "cancelled")
        self._say_progress()

    def compute_again(self) -> None:
        """Compute the cancelled methods (the person asks again)."""
        self.explanations.session.again()
        self._shown = None
        self.refresh()

    # --- drawing ------------------------------------------------------------------------------
    def _build(self, methods: tuple[Method, ...], analysis: Any) -> None:
        """One tile per method, the photo in each, no map yet."""
        for tile in self.tiles.values():
            self.cell_layout.removeWidget(tile.widget)
            tile.widget.deleteLater()
        self.tiles = {}
        rows, cols = analysis.spec.grid
        rect = QRectF(0, 0, cols, rows)
        for method in methods:
            widget = QWidget()
            widget.setFixedWidth(TILE_WIDTH)
            column = QVBoxLayout(widget)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            label = QLabel()
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            picture = pg.GraphicsLayoutWidget()
            picture.setFixedHeight(MAP_HEIGHT)
            picture.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            picture.ci.setContentsMargins(0, 0, 0, 0)
            box = picture.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
            box.setMouseEnabled(False, False)
            column.addWidget(label)
            column.addStretch(1)  # the pictures of a row level, whatever their titles' lines
            column.addWidget(picture)
            photo = pg.ImageItem(axisOrder="row-major")
            photo.setImage(analysis.display, levels=(0, 255))
            photo.setRect(rect)
            heat = new_heat_item()
            heat.setZValue(1)
            heat.setOpacity(0.65)
            box.addItem(photo)
            box.addItem(heat)
            box.setRange(rect, padding=0.02)
            self.tiles[method.name] = MethodTile(method, widget, label, box, photo, heat)
        self._lay_out()

    def _lay_out(self) -> None:
        """The tiles in as many columns as the view's width holds."""
        columns = self._columns = self.columns()
        for index, tile in enumerate(self.tiles.values()):
            self.cell_layout.addWidget(tile.widget, index // columns, index % columns)

    def _title(self, tile: MethodTile, second: str) -> str:
        """The tile's title: the method and its cost, what it shows (the explorer's caption:
        layer and head, class, options) and ``second`` (its scale, or why no map)."""
        analysis = self.explanations.context.analysis
        options = self._options(tile.method)
        cost = tile.method.cost_words(options, analysis.spec)
        try:
            what = shown_words(tile.method, caption(tile.method.name, options, analysis))
        except ValueError:  # an option that does not fit this model: ``second`` says so
            what = ""
        shows = f"<br>{html.escape(what, quote=False)}" if what else ""
        return f"<b>{tile.method.label}</b> · {cost}{shows}<br>{html.escape(second, quote=False)}"

    def _set_heat(self, tile: MethodTile, heat: np.ndarray) -> None:
        rows, cols = heat.shape
        signed = tile.method.signed
        tile.heat, tile.status, tile.words = heat, DRAWN, range_words(heat, signed)
        tile.heat_item.setColorMap(colormap(DIFFERENCE_COLORMAP if signed else HEAT_COLORMAP))
        levels = tile_levels(heat, signed)
        tile.heat_item.setImage(np.ascontiguousarray(heat, np.float32), levels=levels)
        tile.heat_item.setRect(QRectF(0, 0, cols, rows))
        tile.heat_item.setVisible(True)
        tile.label.setText(self._title(tile, f"own scale: {tile.words}"))
        tile.box.setToolTip("")
        self._say_progress()

    def _set_words(self, tile: MethodTile, status: str, words: str) -> None:
        tile.heat, tile.status, tile.words = None, status, words
        tile.heat_item.clear()
        tile.heat_item.setVisible(False)
        short = words if len(words) <= 60 else f"{words[:57]}…"
        tile.label.setText(self._title(tile, short))
        tile.label.setToolTip(words)
        self._say_progress()

    def _say_progress(self) -> None:
        """The progress line: methods done of all, and the running job's passes."""
        tiles = self.tiles.values()
        done = sum(t.status in (DRAWN, NOT_DRAWN) for t in tiles)
        total = len(self.tiles)
        running = self._asked is not None or bool(self._queue)
        words = f"{done} of {total} methods"
        if running and self._passes:
            words += f" · {self._passes}"
        elif running and self._asked is not None:
            words += f" · computing {self._asked[0]}…"
        cancelled = [t.method.name for t in tiles if t.words == "cancelled"]
        if cancelled and not running:
            words += f" · cancelled: {', '.join(cancelled)}"
        self.progress_label.setText(words)
        self.cancel_button.setVisible(running)
        self.again_button.setVisible(bool(cancelled) and not running)

    def columns(self) -> int:
        """Tiles per row for the view's width."""
        # the view's width less its scroll bar's (shown or soon shown) and the margins
        width = self.grid.width() - self.grid.verticalScrollBar().sizeHint().width() - 12
        return max(1, min(COLUMNS, width // (TILE_WIDTH + self.cell_layout.spacing())))

    def resizeEvent(self, event: Any) -> None:  # Qt's name: the tiles laid out again
        super().resizeEvent(event)
        if self.tiles and self.columns() != self._columns:
            for tile in self.tiles.values():
                self.cell_layout.removeWidget(tile.widget)
            self._lay_out()

    def showEvent(self, event: Any) -> None:  # Qt's name
        super().showEvent(event)
        self.refresh()
