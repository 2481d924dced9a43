"""Views of a fine-tune run: live training curves, the test confusion matrix, and a gallery of
test images with their predictions.

The curves grow while training runs. Data are appended to preallocated arrays (grown by
doubling) and drawn on a short timer, so a burst of steps costs one redraw, not one per step.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

from vitexplorer.core.training.verdict import TIE, WRONG
from vitexplorer.gui.views.panels import rgb_pixmap

REDRAW_MS = 100  # curves are redrawn at most ten times a second, however fast steps come
TRAIN_COLOR = (31, 119, 180)
VAL_COLOR = (255, 127, 14)
# Every line is opaque: Qt's raster engine draws a translucent line about 35 times slower than
# an opaque one, and a translucent grid made one repaint of the three plots cost 20 to 30 ms.
RAW_COLOR = (150, 190, 220)  # TRAIN_COLOR, faded towards white
GRID_COLOR = (228, 228, 228)
MARK_COLOR = (130, 130, 130)  # the time-lapse's epoch on the per-epoch curves
MISTAKE_COLOR = QColor(200, 30, 30)
CORRECT_COLOR = QColor(30, 130, 60)
TIE_COLOR = QColor(110, 110, 110)  # neutral: a tie is neither right nor wrong


class GrowingSeries:
    """x and y values in arrays that double when full; ``x``/``y`` are views of the filled part."""

    def __init__(self, capacity: int = 256) -> None:
        self._x = np.zeros(capacity, np.float64)
        self._y = np.zeros(capacity, np.float64)
        self.n = 0

    def extend(self, x: np.ndarray, y: np.ndarray) -> None:
        end = self.n + len(x)
        if end > len(self._x):
            size = max(end, 2 * len(self._x))
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)
        self._x[self.n : end] = x
        self._y[self.n : end] = y
        self.n = end

    def clear(self) -> None:
        self.n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]


def _key(color: tuple[int, ...], text: str) -> str:
    """A legend entry for a plot's title: legends inside the plot hide the curves they name."""
    rgb = "#{:02x}{:02x}{:02x}".format(*color[:3])
    return f"&nbsp;<span style='color: {rgb}; font-size: 8pt'>━ {text}</span>"


def _plot(layout: pg.GraphicsLayoutWidget, col: int, title: str, x: str, y: str) -> pg.PlotItem:
    plot = layout.addPlot(row=0, col=col, title=title, size="9pt")
    plot.setLabel("bottom", x)
    plot.setLabel("left", y)
    plot.showGrid(x=True, y=True)
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.enableAutoSIPrefix(False)
        # the grid lines are the ticks drawn across the plot: major and minor, not the finest
        # level, which hatched an empty plot with a line every few pixels
        axis.setStyle(tickAlpha=255, maxTickLevel=1)
        axis.setTickPen(pg.mkPen(GRID_COLOR))
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    return plot


class TrainingCurves(pg.GraphicsLayoutWidget):
    """Training loss per step (raw and smoothed), and loss and accuracy per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground("w")
        # three plots side by side in about 650 px (the Train tab at 1024 x 700): narrow margins
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.ci.layout.setHorizontalSpacing(2)
        both = "<br>" + _key(TRAIN_COLOR, "training") + _key(VAL_COLOR, "validation")
        steps = "<br>" + _key(TRAIN_COLOR, "smoothed") + _key(RAW_COLOR, "each step")
        self.step_plot = _plot(self, 0, "Training loss per step" + steps, "step", "loss")
        self.loss_plot = _plot(self, 1, "Loss per epoch" + both, "epoch", "loss")
        self.acc_plot = _plot(self, 2, "Accuracy per epoch" + both, "epoch", "accuracy (%)")
        for plot in (self.loss_plot, self.acc_plot):
            plot.getAxis("bottom").setTickSpacing(major=1, minor=1)
        self.acc_plot.setYRange(0, 100, padding=0.02)
        # tens of thousands of steps on a few hundred pixels: draw each pixel column's extremes
        self.step_plot.setDownsampling(auto=True, mode="peak")

        def curve(plot: pg.PlotItem, name: str, color, width: float = 2, symbol=None):
            pen = pg.mkPen(color, width=width)
            return plot.plot(
                name=name,
                pen=pen,
                symbol=symbol,
                symbolSize=6,
                symbolBrush=color,
                symbolPen=None,
                skipFiniteCheck=True,
                antialias=False,
            )

        self.raw_curve = curve(self.step_plot, "loss", RAW_COLOR, 1)
        self.smooth_curve = curve(self.step_plot, "smoothed", TRAIN_COLOR, 2)
        self.train_loss_curve = curve(self.loss_plot, "training", TRAIN_COLOR, symbol="o")
        self.val_loss_curve = curve(self.loss_plot, "validation", VAL_COLOR, symbol="s")
        self.train_acc_curve = curve(self.acc_plot, "training", TRAIN_COLOR, symbol="o")
        self.val_acc_curve = curve(self.acc_plot, "validation", VAL_COLOR, symbol="s")
        self.epoch_marks = []
        for plot in (self.loss_plot, self.acc_plot):
            pen = pg.mkPen(MARK_COLOR, width=2)  # a dashed line one pixel wide was not drawn
            mark = pg.InfiniteLine(angle=90, movable=False, pen=pen)
            mark.setVisible(False)
            plot.addItem(mark, ignoreBounds=True)
            self.epoch_marks.append(mark)
        self.raw = GrowingSeries()
        self.smooth = GrowingSeries()
        self.epochs = {name: GrowingSeries(16) for name in ("tl", "vl", "ta", "va")}
        self._beta = 0.9
        self._ema = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self.reset()

    def reset(self, epochs: int = 1, total_steps: int = 1) -> None:
        """Empty curves on axes that already span the whole run, so the curves grow into them."""
        for series in (self.raw, self.smooth, *self.epochs.values()):
            series.clear()
        self._ema = 0.0
        self._loss_top = 0.0
        # stronger smoothing for longer runs: the average spans about a tenth of the run
        self._beta = float(np.clip(1 - 10 / max(total_steps, 1), 0.6, 0.98))
        self.step_plot.setXRange(0, max(total_steps, 1), padding=0.02)
        for plot in (self.step_plot, self.loss_plot):
            plot.setYRange(0, 1, padding=0)
        for plot in (self.loss_plot, self.acc_plot):
            plot.setXRange(0.5, max(epochs, 1) + 0.5, padding=0)
        self.mark_epoch(None)
        self.redraw()

    def mark_epoch(self, epoch: int | None) -> None:
        """A grey line at ``epoch`` on the per-epoch curves (the time-lapse's); None: none."""
        for mark in self.epoch_marks:
            mark.setVisible(epoch is not None)
            if epoch is not None:
                mark.setValue(epoch)

    def marked_epoch(self) -> int | None:
        mark = self.epoch_marks[0]
        return round(mark.value()) if mark.isVisible() else None

    def add_steps(self, steps: np.ndarray, losses: np.ndarray) -> None:
        smoothed = np.empty(len(losses))
        ema, beta, start = self._ema, self._beta, self.raw.n
        for i, loss in enumerate(losses):  # debiased exponential moving average
            ema = beta * ema + (1 - beta) * loss
            smoothed[i] = ema / (1 - beta ** (start + i + 1))
        self._ema = ema
        self._fit_loss_range(float(np.max(losses, initial=0.0)))
        self.raw.extend(steps, losses)
        self.smooth.extend(steps, smoothed)
        self._schedule()

    def add_epoch(self, epoch) -> None:  # core.training.Epoch
        x = np.array([epoch.epoch], float)
        self._fit_loss_range(max(epoch.train_loss, epoch.val_loss or 0.0))
        self.epochs["tl"].extend(x, np.array([epoch.train_loss]))
        self.epochs["ta"].extend(x, np.array([100 * epoch.train_acc]))
        if epoch.val_loss is not None:
            self.epochs["vl"].extend(x, np.array([epoch.val_loss]))
            self.epochs["va"].extend(x, np.array([100 * epoch.val_acc]))
        self._schedule()

    def _fit_loss_range(self, highest: float) -> None:
        """The loss axes run from 0 and only ever grow: a range that moved with every step
        would rebuild the axis labels on every redraw."""
        if np.isfinite(highest) and highest > self._loss_top:
            self._loss_top = highest * 1.1
            for plot in (self.step_plot, self.loss_plot):
                plot.setYRange(0, self._loss_top, padding=0)

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        self._timer.stop()
        pairs = (
            (self.raw_curve, self.raw),
            (self.smooth_curve, self.smooth),
            (self.train_loss_curve, self.epochs["tl"]),
            (self.val_loss_curve, self.epochs["vl"]),
            (self.train_acc_curve, self.epochs["ta"]),
            (self.val_acc_curve, self.epochs["va"]),
        )
        for curve, series in pairs:
            curve.setData(series.x, series.y, skipFiniteCheck=True)

    def step_count(self) -> int:
        """Points drawn on the per-step curve (after the pending redraw)."""
        return 0 if self.raw_curve.xData is None else len(self.raw_curve.xData)

    def epoch_count(self) -> int:
        return 0 if self.train_loss_curve.xData is None else len(self.train_loss_curve.xData)


class ClassNameAxis(pg.AxisItem):
    """A bottom axis whose tick labels are class names drawn at 45 degrees, so long names fit
    under narrow columns. The labels end under their column and run down to the left."""

    def __init__(self) -> None:
        super().__init__("bottom")
        self.names: list[tuple[float, str]] = []
        self._extra_left = 0.0

    def set_names(self, names: list[str]) -> None:
        self.names = [(i + 0.5, name) for i, name in enumerate(names)]
        self.setTicks([self.names])
        metrics = pg.QtGui.QFontMetricsF(self.font())
        widest = max((metrics.horizontalAdvance(n) for n in names), default=0.0)
        self._extra_left = widest * 0.71
        self.setHeight(int(widest * 0.71 + metrics.height() + 12))
        self.prepareGeometryChange()
        self.picture = None
        self.update()

    def boundingRect(self) -> QRectF:  # room for the first labels' tails
        return super().boundingRect().adjusted(-self._extra_left, 0, 0, 0)

    def drawPicture(self, p: QPainter, axisSpec, tickSpecs, textSpecs) -> None:
        super().drawPicture(p, axisSpec, tickSpecs, [])
        metrics = p.fontMetrics()
        p.setPen(self.textPen())
        p.setClipping(False)
        offset = max(0, self.style["tickLength"]) + 4
        view = self.linkedView()
        if view is None:
            return
        for value, name in self.names:
            x = self.mapFromScene(view.mapViewToScene(pg.Point(value, 0))).x()
            p.save()
            p.translate(x, offset + metrics.ascent() * 0.5)
            p.rotate(-45)
            width = metrics.horizontalAdvance(name)
            rect = QRectF(-width - 2, -metrics.height() / 2, width, metrics.height())
            p.drawText(rect, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), name)
            p.restore()


class CellLabels(pg.GraphicsObject):
    """Every cell's count written at its centre, in one item: one text item per cell would cost
    about 0.4 ms each to build. Text keeps its size whatever the zoom."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = np.zeros((0, 0), np.int64)
        self.dark = np.zeros((0, 0), bool)  # cells dark enough for white text

    def set_counts(self, counts: np.ndarray, dark: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.counts, self.dark = counts, dark
        self.update()

    def boundingRect(self) -> QRectF:
        rows, cols = self.counts.shape
        return QRectF(0, 0, cols, rows)

    def paint(self, painter: QPainter, *_args) -> None:
        if self.counts.size == 0:
            return
        transform = painter.transform()
        painter.save()
        painter.resetTransform()
        metrics = painter.fontMetrics()
        light, dark = QColor(40, 40, 40), QColor(255, 255, 255)
        for (i, j), value in np.ndenumerate(self.counts):
            centre = transform.map(pg.Point(j + 0.5, i + 0.5))
            text = str(value)
            width = metrics.horizontalAdvance(text)
            painter.setPen(dark if self.dark[i, j] else light)
            painter.drawText(
                QRectF(centre.x() - width / 2 - 2, centre.y() - metrics.height() / 2,
                       width + 4, metrics.height()),
                int(Qt.AlignmentFlag.AlignCenter),
                text,
            )  # fmt: skip
        painter.restore()


def _blues() -> pg.ColorMap:
    return pg.ColorMap([0.0, 1.0], [(247, 251, 255), (8, 48, 107)])


class ConfusionView(pg.GraphicsLayoutWidget):
    """Test images counted by true class (rows) and predicted class (columns); the colour is
    the share of the row, so classes with fewer test images compare fairly."""

    MAX_LABELLED = 20  # counts are written in the cells up to this many classes

    def __init__(self) -> None:
        super().__init__()
        self.setBackground("w")
        self.axis = ClassNameAxis()
        self.plot = self.addPlot(row=0, col=0, axisItems={"bottom": self.axis})
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("left", "true class")
        self.plot.setLabel("bottom", "predicted class")
        self.plot.setTitle("Confusion matrix (test images)")
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(_blues())
        self.plot.addItem(self.image)
        self.matrix = np.zeros((0, 0), np.int64)
        self.ties = np.zeros((0, 0), np.int64)
        self.class_names: tuple[str, ...] = ()
        self.labels = CellLabels()
        self.labels.setZValue(1)
        self.plot.addItem(self.labels)
        self.scene().sigMouseMoved.connect(self._moved)

    def clear_matrix(self) -> None:
        self.set_matrix(np.zeros((0, 0), np.int64), ())

    def set_matrix(
        self, matrix: np.ndarray, class_names: tuple[str, ...], ties: np.ndarray | None = None
    ) -> None:
        """``ties``: how many of each cell's images tie (counted under their argmax)."""
        self.matrix = np.asarray(matrix)
        self.class_names = tuple(class_names)
        self.ties = np.zeros_like(self.matrix) if ties is None else np.asarray(ties)
        n = len(self.class_names)
        for side in ("left", "bottom"):
            self.plot.showAxis(side, n > 0)
        if n == 0:
            self.image.clear()
            self.labels.set_counts(np.zeros((0, 0), np.int64), np.zeros((0, 0), bool))
            self.axis.set_names([])
            self.plot.getAxis("left").setTicks([[]])
            # two lines: one is wider than the view in a 1024 px window
            self.plot.setTitle("Confusion matrix (test images):<br>after training")
            return
        self.plot.setTitle(self.caption())
        rows = np.maximum(self.matrix.sum(1, keepdims=True), 1)
        share = (self.matrix / rows).astype(np.float32)
        self.image.setImage(share, levels=(0.0, 1.0))
        self.image.setRect(QRectF(0, 0, n, n))
        self.axis.set_names(list(self.class_names))
        self.plot.getAxis("left").setTicks(
            [[(i + 0.5, name) for i, name in enumerate(class_names)]]
        )
        shown = self.matrix if n <= self.MAX_LABELLED else np.zeros((0, 0), np.int64)
        self.labels.set_counts(shown, share > 0.5)
        self.plot.setRange(QRectF(0, 0, n, n), padding=0.01)

    def caption(self) -> str:
        """The title; it says how many entries are ties, when any are."""
        ties, total = int(self.ties.sum()), int(self.matrix.sum())
        if not ties:
            return "Confusion matrix (test images)"
        # short lines: the view is narrow beside the gallery (its tooltip says more)
        return f"Confusion matrix (test images)<br>{ties} of {total} are ties, by argmax"

    def _moved(self, scene_pos) -> None:
        n = len(self.class_names)
        point = self.plot.vb.mapSceneToView(scene_pos)
        i, j = int(np.floor(point.y())), int(np.floor(point.x()))
        if not (0 <= i < n and 0 <= j < n):
            self.setToolTip("")
            return
        count, total = int(self.matrix[i, j]), int(self.matrix[i].sum())
        share = f" ({100 * count / total:.0f}% of {total})" if total else ""
        tied = int(self.ties[i, j]) if self.ties.shape == self.matrix.shape else 0
        ties = f", {tied} of them ties (counted under their argmax)" if tied else ""
        self.setToolTip(
            f"true {self.class_names[i]}, predicted {self.class_names[j]}: {count} image(s)"
            f"{share}{ties}"
        )


class SampleGallery(QListWidget):
    """Test images with their true and predicted labels; mistakes framed and written in red,
    ties (no class picked, :mod:`vitexplorer.core.training.verdict`) framed and written in grey."""

    sample_clicked = Signal(int)  # index into the samples given to set_samples

    ICON = 64

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setIconSize(QSize(self.ICON, self.ICON))
        self.setGridSize(QSize(116, 128))
        self.setSpacing(2)
        self.setWordWrap(True)
        self.itemClicked.connect(
            lambda item: self.sample_clicked.emit(item.data(Qt.ItemDataRole.UserRole))
        )

    def set_samples(self, samples: list, class_names: tuple[str, ...]) -> None:  # [TestSample]
        self.clear()
        for index, sample in enumerate(samples):
            true, predicted = class_names[sample.true], class_names[sample.predicted]
            verdict = sample.verdict(len(class_names))
            percent = f"{100 * sample.confidence:.0f}%"
            if verdict == TIE:
                text, colour = f"{true}\n(a tie)", TIE_COLOR
                said = (
                    f"a tie at {percent}: the top classes are within a tenth of a point (the "
                    f"argmax, {predicted}, is no choice)"
                )
            elif verdict == WRONG:
                text, colour = f"{true}\n→ {predicted}", MISTAKE_COLOR
                said = f"{predicted} ({percent} sure, wrong)"
            else:
                text, colour = f"{true} ✓", CORRECT_COLOR
                said = f"{predicted} ({percent} sure, right)"
            frame = None if colour is CORRECT_COLOR else colour
            item = QListWidgetItem(QIcon(self._framed(sample.image, frame)), text)
            item.setData(Qt.ItemDataRole.UserRole, index)
            item.setForeground(colour)
            item.setToolTip(
                f"{sample.source}\ntrue: {true}\npredicted: {said}\nclick to open in the explorer"
            )
            self.addItem(item)

    def _framed(self, image: np.ndarray, colour: QColor | None) -> QPixmap:
        pixmap = rgb_pixmap(image).scaled(
            self.ICON,
            self.ICON,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        if colour is not None:
            painter = QPainter(pixmap)
            pen = QPen(colour)
            pen.setWidth(4)
            painter.setPen(pen)
            painter.drawRect(pixmap.rect().adjusted(2, 2, -2, -2))
            painter.end()
        return pixmap

    def mistakes(self) -> int:
        return sum(1 for i in range(self.count()) if "→" in self.item(i).text())

    def ties(self) -> int:
        """How many shown images tie."""
        return sum(1 for i in range(self.count()) if "(a tie)" in self.item(i).text())
