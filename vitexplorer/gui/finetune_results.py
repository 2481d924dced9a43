"""The results of a fine-tune run: test accuracy in a line, then two pages: the confusion matrix
beside a gallery of test images whose clicks open them in the explorer, and the run's time-lapse
(:mod:`vitexplorer.gui.timelapse_view`)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget

from vitexplorer.gui.timelapse_view import TimeLapseView
from vitexplorer.gui.views.training_views import ConfusionView, SampleGallery


class FinetuneResults(QWidget):
    sample_clicked = Signal(int)  # index into the shown result's samples

    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.confusion = ConfusionView()
        self.gallery = SampleGallery()
        gallery_box = QWidget()
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.setContentsMargins(0, 0, 0, 0)
        caption = QLabel(
            "Test images: true class, then the prediction when it is wrong (framed in red); "
            "a tie, where no class stands out, is framed in grey. Click one to explore it."
        )
        caption.setWordWrap(True)
        gallery_layout.addWidget(caption)
        gallery_layout.addWidget(self.gallery, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.confusion)
        split.addWidget(gallery_box)
        split.setSizes([450, 550])
        self.timelapse = TimeLapseView()
        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(split, "Confusion matrix and test images")
        self.pages.addTab(self.timelapse, "Time-lapse")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.pages, 1)
        self.gallery.sample_clicked.connect(self.sample_clicked)
        self.clear("Results appear here when training ends.")

    def clear(self, text: str) -> None:
        self.confusion.clear_matrix()
        self.gallery.clear()
        self.summary.setText(text)

    def say(self, text: str) -> None:
        self.summary.setText(text)

    def show_result(self, result, steps: int) -> None:  # FinetuneResult
        names = result.model.spec.class_names
        if result.test_acc is None:
            self.summary.setText(
                f"Cancelled after {len(result.history)} complete epoch(s) and {steps} "
                f"steps: not tested."
            )
            return
        n = int(result.confusion.sum())
        ties = result.ties or 0
        right = int(result.confusion.trace()) if result.right is None else result.right
        counted = f"{right} of {n} test images right"
        if ties:  # a tie is never right; the accuracy, by argmax, counts some of them
            counted = (
                f"{right} of {n} test images right, {ties} ties (no class stands out; the "
                f"accuracy counts each by its argmax)"
            )
        per_class = result.per_class_acc
        best, worst = int(per_class.argmax()), int(per_class.argmin())
        self.summary.setText(
            f"<span style='font-size: 13pt'>Test accuracy <b>{100 * result.test_acc:.1f}%</b>"
            f"</span> &nbsp; {counted}, {len(names)} classes · best "
            f"{names[best]} {100 * per_class[best]:.0f}%, worst {names[worst]} "
            f"{100 * per_class[worst]:.0f}%"
        )
        self.confusion.set_matrix(result.confusion, names, result.tie_matrix())
        self.gallery.set_samples(result.samples, names)
