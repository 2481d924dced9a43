"""The compare panel's widgets for another model: the panel (which model, its state, the
scale and Swap, the note, the three tabs) and its head table. Drawn into by
:class:`vitexplorer.gui.model_compare_view.ModelCompare`; they know nothing of the models."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.explain.model_compare import HEAD_STATISTICS
from vitexplorer.gui.views.common import DIFFERENCE_COLORMAP
from vitexplorer.gui.views.image_view import ImageView

STATISTIC_WORDS = {
    "distance": ("mean distance", "px", ".2f"),
    "entropy": ("entropy", "nats", ".3f"),
    "prefix_share": ("prefix share", "", ".3f"),
}


class ElidedLabel(QLabel):
    """One line that never widens its panel: the text is cut with an ellipsis to the width
    the layout gives it, whole in the tooltip."""

    def __init__(self) -> None:
        super().__init__("")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.full_text = ""

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def resizeEvent(self, event) -> None:  # Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 20)
        self.setText(
            self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, width)
        )


class HeadTable(QWidget):
    """The heads whose statistics changed most from A to B on this image, most first: layer and
    head from 1, the chosen statistic in A, in B and B - A, then the others' change."""

    sort_changed = Signal()
    head_chosen = Signal(int, int)  # layer, head (0-based): a row double-clicked

    def __init__(self) -> None:
        super().__init__()
        self.sort_box = QComboBox()
        for statistic in HEAD_STATISTICS:
            words, unit, _ = STATISTIC_WORDS[statistic]
            self.sort_box.addItem(f"{words} ({unit})" if unit else words, statistic)
        self.sort_box.setToolTip(
            "The heads whose statistic changed most (absolute change B - A) come first: mean "
            "attention distance in pixels of each model's input, attention entropy in nats, or "
            "the share of attention on the prefix (CLS) tokens"
        )
        self.sort_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setToolTip("Double-click a row to open that head's attention in the explorer")
        self.table.cellDoubleClicked.connect(self._double_clicked)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel("Most changed first, by"))
        top.addWidget(self.sort_box, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.caption)
        layout.addWidget(self.table, 1)
        self.sort_box.currentIndexChanged.connect(lambda _i: self.sort_changed.emit())
        self.changes: list = []  # the HeadChange rows shown
        self.shown: tuple | None = None  # what they were made from

    @property
    def sort_by(self) -> str:
        return self.sort_box.currentData()

    def show_changes(self, changes: list, caption: str) -> None:
        """One row per head, in ``changes``' order (core.model_compare.head_changes)."""
        self.changes = list(changes)
        self.caption.setText(caption)
        first = self.sort_by
        others = [s for s in HEAD_STATISTICS if s != first]
        columns: list[tuple[str, str | None, str]] = [("Layer", None, ""), ("Head", None, "")]
        columns += [(self._header(first, side), first, side) for side in ("B − A", "A", "B")]
        columns += [(self._header(s, "B − A"), s, "B − A") for s in others]
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([name for name, _, _ in columns])
        self.table.setRowCount(len(changes))
        for row, change in enumerate(changes):
            for col, (_, statistic, side) in enumerate(columns):
                self.table.setItem(row, col, self._cell(change, statistic, side, col))
        self.table.scrollToTop()

    @staticmethod
    def _header(statistic: str, side: str) -> str:
        words, unit, _ = STATISTIC_WORDS[statistic]
        return f"{words}\n{side}" + (f" ({unit})" if unit and side == "B − A" else "")

    @staticmethod
    def _cell(change, statistic: str | None, side: str, col: int) -> QTableWidgetItem:
        if statistic is None:
            value = float(change.layer if col == 0 else change.head) + 1
            item = QTableWidgetItem(f"{value:.0f}")
        else:
            k = HEAD_STATISTICS.index(statistic)
            value = {"A": change.a[k], "B": change.b[k]}.get(side, change.change(statistic))
            words, unit, form = STATISTIC_WORDS[statistic]
            text = format(value, ("+" if side == "B − A" else "") + form)
            item = QTableWidgetItem("0" if side == "B − A" and value == 0 else text)
            item.setToolTip(
                f"layer {change.layer + 1}, head {change.head + 1}: {words} "
                f"{change.a[k]:{form}} in A, {change.b[k]:{form}} in B {unit}".rstrip()
            )
        item.setData(Qt.ItemDataRole.UserRole, value)
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return item

    def show_message(self, text: str) -> None:
        self.changes = []
        self.shown = None
        self.caption.setText(text)
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)

    def _double_clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self.changes):
            change = self.changes[row]
            self.head_chosen.emit(change.layer, change.head)


class ModelComparePanel(QWidget):
    """The compare panel's part for another model: which model, its state in one line, the
    scale and Swap, what differs between the two, and three tabs: the other model's view, the
    difference B - A and the head table."""

    def __init__(self) -> None:
        super().__init__()
        self.model_box = QComboBox()
        self.model_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_box.setMinimumContentsLength(12)
        self.model_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.model_box.setToolTip("The model to compare with the explorer's")
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Unload the compared model")
        self.cancel_button = QPushButton("Cancel")
        self.download_button = QPushButton("Download")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(110)
        self.progress.setTextVisible(False)
        self.status = ElidedLabel()
        self.same_scale_box = QCheckBox("A and B on one colour scale")
        self.same_scale_box.setChecked(True)
        self.same_scale_box.setToolTip(
            "On: both views share one colour scale, from the lower of the two maps' minima to "
            "the higher of their maxima (under Lock scale: the explorer's locked scale), so one "
            "colour means one value in both. Off: each view on its own range (more of each "
            "map's structure, but colours do not compare)"
        )
        self.swap_button = QPushButton("Swap A, B")
        self.swap_button.setToolTip(
            "Turn A and B round: the difference is B minus A. They stay as they are when the "
            "explorer's model changes (a new fine-tune, another model)"
        )
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b26b00;")
        self.view = ImageView()
        self.difference = ImageView(DIFFERENCE_COLORMAP)
        self.heads = HeadTable()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.view, "Model B")
        self.tabs.addTab(self.difference, "B − A")
        self.tabs.addTab(self.heads, "Heads")
        for button in (self.close_button, self.cancel_button, self.download_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for widget in (self.same_scale_box, self.swap_button):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        choose = QHBoxLayout()
        choose.addWidget(QLabel("Model"))
        choose.addWidget(self.model_box, 1)
        choose.addWidget(self.close_button)
        state = QHBoxLayout()
        state.addWidget(self.status, 1)
        state.addWidget(self.progress)
        state.addWidget(self.download_button)
        state.addWidget(self.cancel_button)
        options = QHBoxLayout()
        options.addWidget(self.same_scale_box, 1)
        options.addWidget(self.swap_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 0)
        layout.setSpacing(2)
        for row in (choose, state, options):
            row.setContentsMargins(0, 0, 0, 0)
            layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(self.tabs, 1)
        self.show_state("Choose a model to compare with the explorer's.")

    def show_state(
        self, text: str, busy: bool = False, download: bool = False, error: bool = False
    ) -> None:
        """The compared model's state in one line (the whole of it in the tooltip); ``busy``
        shows the progress bar and Cancel, ``download`` the Download button."""
        self.status.set_full_text(text)
        self.status.setStyleSheet("color: #c62828;" if error else "")
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.download_button.setVisible(download)
        if busy:
            self.progress.setRange(0, 0)

    def set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))
