"""Weights that are not downloaded: the download and its alternatives in a bar above the image
(:class:`NoModelBar`, never a modal question), and the download's progress."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressDialog,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.models.families.family import FamilyInfo
from vitexplorer.core.models.families.registry import SMALL_VIT
from vitexplorer.gui.workers import DownloadOffer, ModelRequest

Choice = ModelRequest | str  # a request to load, or "file": ask for a weights file


def offer_choices(offer: DownloadOffer) -> list[tuple[str, Choice]]:
    """What a person can do about weights that are not downloaded: the download first."""
    request = offer.request
    label = f"Download {offer.size_mb:.0f} MB" if offer.size_mb > 0 else "Download"
    return [
        (label, ModelRequest(request.name, request.weights, request.device, allow_download=True)),
        ("Open weights file\u2026", "file"),
        ("Random weights", ModelRequest(request.name, "none", request.device)),
        ("Small ViT", ModelRequest(SMALL_VIT, "none", request.device)),
    ]


def offer_text(offer: DownloadOffer, in_use: str | None) -> str:
    """What the bar says: the weights that are missing and the model used meanwhile."""
    missing = f"Not downloaded: the {offer.description}"
    if in_use is None:
        return f"<b>No model is loaded.</b> {missing}."
    return f"<b>In use: {in_use}.</b> {missing}."


def host(url: str) -> str:
    """The server a URL names, for people (``download.pytorch.org``)."""
    return urllib.parse.urlparse(url).netloc or url


class NoModelBar(QFrame):
    """Above the image while weights are not downloaded: which model is in use meanwhile (or
    that none is), with the download and its alternatives one click away. Non-modal: the window
    stays usable beside it; with a model in use it can be hidden."""

    chosen = Signal(object)  # Choice

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("no_model_bar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#no_model_bar { background: #fff4d6; }")
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.row.addWidget(self.label, 1)
        self.buttons: list[QPushButton] = []
        self.close_button = QToolButton()
        self.close_button.setText("\u2715")
        self.close_button.setToolTip("Hide (the model box offers the download again)")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(lambda: self.setVisible(False))
        self.row.addWidget(self.close_button)
        self.offer: DownloadOffer | None = None
        self.setVisible(False)

    def show_offer(self, offer: DownloadOffer, in_use: str | None = None) -> None:
        """The offer's choices; ``in_use`` names the model used meanwhile (None: no model)."""
        self.offer = offer
        for button in self.buttons:
            self.row.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        self.label.setText(offer_text(offer, in_use))
        choices = offer_choices(offer)
        if in_use is not None:  # random weights and the untrained small ViT help nobody then
            choices = choices[:2]
        for text, choice in choices:
            button = QPushButton(text)
            if isinstance(choice, ModelRequest) and choice.allow_download:
                button.setToolTip(f"From {host(offer.url)} into {offer.path}")
            button.clicked.connect(lambda _=False, c=choice: self.chosen.emit(c))
            self.row.insertWidget(self.row.count() - 1, button)
            self.buttons.append(button)
        self.close_button.setVisible(in_use is not None)
        self.setVisible(True)

    def show_failure(self, message: str) -> None:
        """A download that failed: one line saying so, beside the same choices."""
        self.label.setText(message)
        self.setVisible(True)


class FamilyPicker(QDialog):
    """The model box's entry for a family that names its models ("timm model\u2026", "Hugging
    Face model\u2026"): a list of the names of that family vitexplorer can load, filtered as one
    types (every word must appear), and a folder where the family's models may be folders
    (Hugging Face's ``save_pretrained``). Its title and texts are the family's
    (:class:`~vitexplorer.core.models.families.family.Asking`). Emits ``chosen`` with the model's
    full name (``timm:NAME``, ``hf:NAME`` or ``hf:FOLDER``)."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget, family: FamilyInfo, names: list[str], note: str) -> None:
        super().__init__(parent)
        asking = family.asking
        assert asking is not None and family.prefix is not None  # a family that names models
        self.prefix, self.asking = family.prefix, asking
        self.setWindowTitle(asking.title)
        layout = QVBoxLayout(self)
        self.note = QLabel(note)
        self.note.setWordWrap(True)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(asking.filter_hint)
        self.filter.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.addItems(names)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.folder_button: QPushButton | None = None
        if asking.folder_tip is not None:
            self.folder_button = self.buttons.addButton(
                "Folder\u2026", QDialogButtonBox.ButtonRole.ActionRole
            )
            self.folder_button.setToolTip(asking.folder_tip)
            self.folder_button.clicked.connect(self._ask_folder)
        for widget in (self.note, self.filter, self.list, self.buttons):
            layout.addWidget(widget)
        self.filter.textChanged.connect(self._filter)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.resize(460, 520)
        self._filter("")

    def names(self, visible_only: bool = False) -> list[str]:
        """The names listed (with ``visible_only``, those the filter leaves)."""
        items = [self.list.item(i) for i in range(self.list.count())]
        return [i.text() for i in items if not (visible_only and i.isHidden())]

    def select(self, name: str) -> None:
        """Select ``name`` when it is listed (the last one chosen, say)."""
        found = self.list.findItems(name, Qt.MatchFlag.MatchExactly)
        if found:
            self.list.setCurrentItem(found[0])

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        first = None
        for i in range(self.list.count()):
            item = self.list.item(i)
            hidden = not all(word in item.text().lower() for word in words)
            item.setHidden(hidden)
            if first is None and not hidden:
                first = item
        current = self.list.currentItem()
        if first is None:
            self.list.setCurrentRow(-1)  # every entry hidden: none is current
        elif current is None or current.isHidden():
            self.list.setCurrentItem(first)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(first is not None)

    def accept(self) -> None:
        item = self.list.currentItem()
        if item is None or item.isHidden():
            return
        super().accept()
        self.chosen.emit(f"{self.prefix}:{item.text()}")

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.asking.folder_title)
        if folder:
            super().accept()
            self.chosen.emit(f"{self.prefix}:{folder}")


class DownloadProgress:
    """A progress dialog for one download; Cancel calls ``cancel`` (the worker's flag)."""

    def __init__(self, parent: QWidget, offer: DownloadOffer, cancel: Callable[[], None]) -> None:
        self.dialog = QProgressDialog(
            f"Downloading {offer.description}…", "Cancel", 0, 1000, parent
        )
        self.dialog.setWindowTitle("Downloading weights")
        self.dialog.setMinimumDuration(0)
        self.dialog.canceled.connect(cancel)
        self.dialog.setValue(0)

    def update(self, done: int, total: int) -> None:
        if total > 0:
            self.dialog.setValue(int(1000 * min(done, total) / total))
            self.dialog.setLabelText(f"Downloading… {done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def close(self) -> None:
        self.dialog.reset()
        self.dialog.deleteLater()
