"""A path field that stays readable in a narrow column."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QLineEdit, QStyle, QStyleOptionFrame


class PathEdit(QLineEdit):
    """A path field that, when it is not being edited and the path does not fit, shows the path
    elided in the middle (its start and its file name), with the whole path in its tooltip."""

    MINIMUM_WIDTH = 180

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumWidth(self.MINIMUM_WIDTH)
        self.textChanged.connect(self.setToolTip)

    def shown_text(self) -> str:
        """What the field shows now: the path, or it elided in the middle."""
        if self.hasFocus():
            return self.text()
        return self.fontMetrics().elidedText(
            self.text(), Qt.TextElideMode.ElideMiddle, self._text_rect().width()
        )

    def _text_rect(self) -> QRect:
        option = QStyleOptionFrame()
        self.initStyleOption(option)
        rect = self.style().subElementRect(QStyle.SubElement.SE_LineEditContents, option, self)
        margins = self.textMargins()
        return rect.adjusted(margins.left() + 2, margins.top(), -margins.right() - 2,
                             -margins.bottom())  # fmt: skip

    def paintEvent(self, event: QPaintEvent) -> None:
        shown = self.shown_text()
        if shown == self.text():
            super().paintEvent(event)
            return
        painter = QPainter(self)
        option = QStyleOptionFrame()
        self.initStyleOption(option)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_PanelLineEdit, option, painter, self)
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        painter.drawText(
            self._text_rect(), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, shown
        )
        painter.end()
