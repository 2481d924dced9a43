"""First launch: offer to download the default weights, or one of the alternatives, and show the
download's progress. Declined, the same choices stay one click away in :class:`NoModelBar`."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QWidget,
)

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
        ("Small ViT", ModelRequest("small_vit", "none", request.device)),
    ]


class NoModelBar(QFrame):
    """Above the explorer while no model is loaded because a download was declined: says so,
    with the download offer's choices one click away."""

    chosen = Signal(object)  # Choice

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("no_model_bar")
        self.setFrameShape(QFrame.StyledPanel)
        self.setStyleSheet("#no_model_bar { background: #fff4d6; }")
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.row.addWidget(self.label, 1)
        self.buttons: list[QPushButton] = []
        self.setVisible(False)

    def show_offer(self, offer: DownloadOffer, demo: bool = False) -> None:
        """The offer's choices; with ``demo``, the demo model is in use meanwhile."""
        for button in self.buttons:
            self.row.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        if demo:
            self.label.setText(
                "<b>The demo model</b>: a small ViT trained on CIFAR-10 (10 classes, 32 px "
                f"input). The {offer.description} are one click away:"
            )
        else:
            self.label.setText(
                f"<b>No model is loaded.</b> The {offer.description} are not downloaded."
            )
        choices = offer_choices(offer)
        if demo:  # random weights and the untrained small ViT help nobody beside the demo
            choices = [(text, c) for text, c in choices if text != "Random weights"]
            choices = [(text, c) for text, c in choices if text != "Small ViT"]
        for text, choice in choices:
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, c=choice: self.chosen.emit(c))
            self.row.addWidget(button)
            self.buttons.append(button)
        self.setVisible(True)


def offer_download(parent: QWidget, offer: DownloadOffer) -> Choice | None:
    """Ask before downloading. Returns the request to load, ``"file"`` or None (cancelled)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Question)
    box.setWindowTitle("Download model weights?")
    box.setText(f"The {offer.description} are not on this computer yet.")
    size = f"{offer.size_mb:.0f} MB" if offer.size_mb > 0 else "them (size not known yet)"
    box.setInformativeText(
        f"Download {size} from {offer.url}?\n\n"
        f"They are kept in {offer.path} and used from there next time.\n\n"
        "Without a network: open a weights file you already have, explore the same "
        "architecture with random weights, or use the small ViT."
    )
    choices = offer_choices(offer)
    buttons = [
        box.addButton(text, QMessageBox.AcceptRole if i == 0 else QMessageBox.ActionRole)
        for i, (text, _) in enumerate(choices)
    ]
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(buttons[0])
    box.exec()
    clicked = box.clickedButton()
    for button, (_, choice) in zip(buttons, choices, strict=True):
        if clicked is button:
            return choice
    return None


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
