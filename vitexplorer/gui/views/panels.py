"""Plain widgets: the top-5 predictions and the strip of image thumbnails."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


class PredictionsPanel(QWidget):
    """The top predictions as class names with probability bars."""

    def __init__(self, rows: int = 5) -> None:
        super().__init__()
        layout = QGridLayout(self)
        layout.setColumnStretch(1, 1)
        self.names: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        for i in range(rows):
            name = QLabel("")
            name.setMinimumWidth(140)
            name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setMaximumHeight(18)
            layout.addWidget(name, i, 0)
            layout.addWidget(bar, i, 1)
            self.names.append(name)
            self.bars.append(bar)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #9a6700;")
        layout.addWidget(self.hint, rows, 0, 1, 2)
        layout.setRowStretch(rows + 1, 1)
        self.values: list[tuple[str, float]] = []
        self.model_hint = ""
        self.set_predictions([])

    def set_hint(self, text: str) -> None:
        """The model's line under the predictions (random weights, no classifier, no model)."""
        self.model_hint = text
        self._show_hint(text)

    def _show_hint(self, text: str) -> None:
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def set_predictions(self, predictions: list, undefined: str | None = None) -> None:
        """Show ``predictions`` (list[Prediction]); with ``undefined`` (why this image has no
        prediction, such as outputs that are NaN) none, and that reason in place of the hint.
        Probabilities that are not numbers are never drawn as bars."""
        if undefined or not all(math.isfinite(p.probability) for p in predictions):
            predictions = []
        self._show_hint(f"{undefined[0].upper()}{undefined[1:]}." if undefined else self.model_hint)
        self.values = [(p.name, p.probability) for p in predictions]
        for i, (name, bar) in enumerate(zip(self.names, self.bars, strict=True)):
            bar.setVisible(not undefined)  # empty bars would push the reason out of sight
            if i < len(predictions):
                p = predictions[i]
                name.setText(f"{p.name}")
                name.setToolTip(f"class {p.index}: {p.name}")
                bar.setValue(round(p.probability * 1000))
                bar.setFormat(f"{p.probability * 100:.1f}%")
            else:
                name.setText("")
                bar.setValue(0)
                bar.setFormat("")


def rgb_pixmap(array: np.ndarray) -> QPixmap:
    """A QPixmap of an (H, W, 3) uint8 array (copied, so the array may go)."""
    array = np.ascontiguousarray(array)
    h, w, _ = array.shape
    image = QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ThumbnailStrip(QListWidget):
    """One thumbnail per loaded image; selecting one shows it.

    Items are found by key in a dict (a drop of 50,000 images stays linear), and thumbnails are
    asked for only for the items in view and a screenful on each side (:attr:`thumbnails_wanted`),
    as they scroll in: the images far away are not decoded until then.
    """

    image_selected = Signal(str)  # key
    thumbnails_wanted = Signal(list)  # keys now near the view that have no thumbnail yet

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(72, 72))
        self.setFixedHeight(112)
        self.setSpacing(4)
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.currentItemChanged.connect(self._changed)
        self._items: dict[str, QListWidgetItem] = {}
        self._asked: set[str] = set()  # keys whose thumbnail was asked for or has arrived
        self._icon = self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)
        self._look = QTimer(self)  # one look at what is in view per turn of the event loop
        self._look.setSingleShot(True)
        self._look.setInterval(0)
        self._look.timeout.connect(self._ask_for_visible)
        self.horizontalScrollBar().valueChanged.connect(lambda _value: self._look.start())
        # and once the list has laid its items out (Qt does it later than the adds): a look
        # taken before then saw no widths, and the thumbnails in view would never be asked for
        self.horizontalScrollBar().rangeChanged.connect(lambda *_range: self._look.start())

    def add_entry(self, key: str, name: str) -> None:
        item = QListWidgetItem(self._icon, name)
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setToolTip(name)
        item.setSizeHint(QSize(96, 100))
        self.addItem(item)
        self._items[key] = item
        self._look.start()

    def item_for(self, key: str) -> QListWidgetItem | None:
        return self._items.get(key)

    def set_thumbnail(self, key: str, thumbnail: np.ndarray) -> None:
        item = self.item_for(key)
        if item is not None:
            self._asked.add(key)
            item.setIcon(QIcon(rgb_pixmap(thumbnail)))

    def remove(self, key: str) -> None:
        item = self._items.pop(key, None)
        self._asked.discard(key)
        if item is not None:
            self.takeItem(self.row(item))

    def select(self, key: str) -> None:
        item = self.item_for(key)
        if item is not None and item is not self.currentItem():
            self.setCurrentItem(item)

    def keys(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def near_view(self) -> range:
        """The rows in view and one screenful on each side."""
        count = self.count()
        if count == 0:
            return range(0)
        first = self.visualItemRect(self.item(0))
        if first.isEmpty():  # not laid out yet: nothing is known to be in view (asked again
            return range(0)  # after the layout, see updateGeometries)
        stride = first.width() + 2 * self.spacing()
        if count > 1:
            stride = max(1, self.visualItemRect(self.item(1)).left() - first.left())
        shown = max(1, self.viewport().width() // stride + 1)
        start = max(0, -first.left() // stride - shown)
        return range(start, min(count, start + 3 * shown + 1))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._look.start()

    def updateGeometries(self) -> None:
        """After every layout of the items (Qt calls it then): look again at what is in view."""
        super().updateGeometries()
        self._look.start()

    def _ask_for_visible(self) -> None:
        keys = [self.item(row).data(Qt.ItemDataRole.UserRole) for row in self.near_view()]
        wanted = [key for key in keys if key not in self._asked]
        if wanted:
            self._asked.update(wanted)
            self.thumbnails_wanted.emit(wanted)

    def _changed(self, current: QListWidgetItem | None, _previous) -> None:
        if current is not None:
            self.image_selected.emit(current.data(Qt.ItemDataRole.UserRole))


class NoticeBar(QFrame):
    """Messages that must not vanish (files that could not be opened), until dismissed."""

    def __init__(self, max_lines: int = 6) -> None:
        super().__init__()
        self.setObjectName("notice")
        self.setStyleSheet(
            "#notice { background: #fff4ce; border-bottom: 1px solid #e0c060; }"
            "#notice QLabel { color: #3a2d00; }"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 4)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.messages: list[str] = []
        self.tags: list[str | None] = []  # what each message is about, to withdraw it later
        self.max_lines = max_lines
        self.setVisible(False)

    def add(self, message: str, tag: str | None = None) -> None:
        """Show ``message``; one with a ``tag`` can be withdrawn with :meth:`withdraw`."""
        self.messages.append(message)
        self.tags.append(tag)
        self._show()

    def withdraw(self, tag: str) -> None:
        """Remove the messages added with ``tag`` (they no longer hold, such as what a
        replaced model's output said)."""
        kept = [(m, t) for m, t in zip(self.messages, self.tags, strict=True) if t != tag]
        self.messages = [m for m, _ in kept]
        self.tags = [t for _, t in kept]
        self._show()

    def _show(self) -> None:
        shown = self.messages[-self.max_lines :]
        hidden = len(self.messages) - len(shown)
        lines = ([f"… and {hidden} earlier"] if hidden else []) + shown
        self.label.setText("\n".join(lines))
        self.setVisible(bool(self.messages))

    def dismiss(self) -> None:
        self.messages = []
        self.tags = []
        self.label.setText("")
        self.setVisible(False)


class Captioned(QWidget):
    """A view with a line above it that says what it shows (which method, layer and head): seen
    at a glance, not only in a tooltip."""

    def __init__(self, view: QWidget) -> None:
        super().__init__()
        self.view = view
        self.caption = QLabel("")
        self.caption.setWordWrap(True)  # a narrow dock wraps the line, never widens
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setContentsMargins(6, 2, 6, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.caption)
        layout.addWidget(view, 1)

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)

    def text(self) -> str:
        return self.caption.text()
