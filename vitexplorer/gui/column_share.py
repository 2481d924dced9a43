"""The explorer's right-hand column takes a share of the window's width that grows with it.

Qt keeps a dock's width when its window is resized and gives the whole change to the central
widget: a column right for 1024 px stayed 360 px wide at 1920 px, its head tiles small, the image
between wide black margins. Here the column's width follows the window's: ``SHARE`` of it plus
``EXTRA`` px (about 360 px at 1024 px, where the image and the column were about as large, 630 px
at 1920), and a person's own widening or narrowing (a drag of the separator, a saved layout) is
kept as an offset from that.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow

SHARE = 0.3  # of the window's width
EXTRA = 50  # px


def column_width(window_width: int) -> int:
    """The right-hand column's width, before a person's own change, in a window this wide."""
    return round(SHARE * window_width + EXTRA)


class ColumnShare(QObject):
    """Sets ``dock``'s width (and its column's) from ``window``'s width whenever that changes."""

    def __init__(self, window: QMainWindow, dock: QDockWidget) -> None:
        super().__init__(window)
        self.window = window
        self.dock = dock
        self.offset = 0  # a person's own change, in px
        self.learn_on_show = False  # a saved layout: its column's offset, learnt once shown
        window.installEventFilter(self)

    def apply(self, window_width: int | None = None) -> None:
        width = self.window.width() if window_width is None else window_width
        target = column_width(width) + self.offset
        self.window.resizeDocks([self.dock], [target], Qt.Orientation.Horizontal)

    def learn(self) -> None:
        """The column's width now, as a person's own change from the default."""
        if self.dock.isVisible() and not self.dock.isFloating():
            self.offset = self.dock.width() - column_width(self.window.width())

    def eventFilter(self, watched, event) -> bool:
        if watched is self.window:
            kind = event.type()
            if kind == QEvent.Type.Resize:
                old, new = event.oldSize().width(), event.size().width()
                # at the first show too, but for a saved layout, whose column's width stays
                if new != old and not (old < 0 and self.learn_on_show):
                    self.apply(new)
            elif kind == QEvent.Type.MouseButtonRelease:  # the end of a separator's drag
                QTimer.singleShot(0, self.learn)
            elif kind == QEvent.Type.Show and self.learn_on_show:
                self.learn_on_show = False
                QTimer.singleShot(0, self.learn)
        return False
