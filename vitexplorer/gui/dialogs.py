"""First launch: offer to download the default weights, or one of the alternatives, and show the
download's progress."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from vitexplorer.gui.workers import DownloadOffer, ModelRequest


def offer_download(parent: QWidget, offer: DownloadOffer) -> ModelRequest | str | None:
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
    label = f"Download {offer.size_mb:.0f} MB" if offer.size_mb > 0 else "Download"
    download = box.addButton(label, QMessageBox.AcceptRole)
    local = box.addButton("Open weights file…", QMessageBox.ActionRole)
    random = box.addButton("Random weights", QMessageBox.ActionRole)
    small = box.addButton("Small ViT", QMessageBox.ActionRole)
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(download)
    box.exec()
    clicked = box.clickedButton()
    request = offer.request
    if clicked is download:
        return ModelRequest(request.name, request.weights, request.device, allow_download=True)
    if clicked is local:
        return "file"
    if clicked is random:
        return ModelRequest(request.name, "none", request.device)
    if clicked is small:
        return ModelRequest("small_vit", "none", request.device)
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
