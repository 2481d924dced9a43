"""Plain widgets: the top-5 predictions and the strip of image thumbnails."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QStyle,
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
            name.setTextInteractionFlags(Qt.TextSelectableByMouse)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setMaximumHeight(18)
            layout.addWidget(name, i, 0)
            layout.addWidget(bar, i, 1)
            self.names.append(name)
            self.bars.append(bar)
        layout.setRowStretch(rows, 1)
        self.values: list[tuple[str, float]] = []
        self.set_predictions([])

    def set_predictions(self, predictions: list) -> None:  # list[Prediction]
        self.values = [(p.name, p.probability) for p in predictions]
        for i, (name, bar) in enumerate(zip(self.names, self.bars, strict=True)):
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
    image = QImage(array.data, w, h, 3 * w, QImage.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ThumbnailStrip(QListWidget):
    """One thumbnail per loaded image; selecting one shows it."""

    image_selected = Signal(str)  # key

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.IconMode)
        self.setFlow(QListView.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Static)
        self.setIconSize(QSize(72, 72))
        self.setFixedHeight(112)
        self.setSpacing(4)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.currentItemChanged.connect(self._changed)

    def add_entry(self, key: str, name: str) -> None:
        item = QListWidgetItem(self.style().standardIcon(QStyle.SP_FileIcon), name)
        item.setData(Qt.UserRole, key)
        item.setToolTip(name)
        item.setSizeHint(QSize(96, 100))
        self.addItem(item)

    def item_for(self, key: str) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(Qt.UserRole) == key:
                return self.item(i)
        return None

    def set_thumbnail(self, key: str, thumbnail: np.ndarray) -> None:
        item = self.item_for(key)
        if item is not None:
            item.setIcon(QIcon(rgb_pixmap(thumbnail)))

    def remove(self, key: str) -> None:
        item = self.item_for(key)
        if item is not None:
            self.takeItem(self.row(item))

    def select(self, key: str) -> None:
        item = self.item_for(key)
        if item is not None and item is not self.currentItem():
            self.setCurrentItem(item)

    def keys(self) -> list[str]:
        return [self.item(i).data(Qt.UserRole) for i in range(self.count())]

    def _changed(self, current: QListWidgetItem | None, _previous) -> None:  # noqa: ANN001
        if current is not None:
            self.image_selected.emit(current.data(Qt.UserRole))
