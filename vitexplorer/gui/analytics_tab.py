"""The "Model analytics" tab: per-head statistics and the model's own structure (issue 4, the
ViT paper's Fig. 7).

Above, every head's mean attention distance against depth, and heatmaps of its attention entropy
and its share of attention on the CLS/prefix tokens, for the current image or averaged over a
folder; click a head to open it in the explorer. Below, the position embeddings' similarity and
the patch-embedding filters' principal components. Every number comes from ``core``; torch is
imported only when a model's parameters are read (:meth:`AnalyticsTab.set_model`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.explain.head_stats import HeadStatistics
from vitexplorer.gui.analytics_export import (  # noqa: F401  (names used from here)
    CARD_NAME,
    CSV_NAME,
    FILTERS_NAME,
    PLOT_NAME,
    PLOT_SVG_NAME,
    SIMILARITY_NAME,
    Shown,
    write_export,
)
from vitexplorer.gui.views.head_stats_view import DistancePlot, HeadHeatmap
from vitexplorer.gui.views.structure_views import FilterGridView, PositionSimilarityView

IMAGE, FOLDER = "image", "folder"  # which statistics are drawn
FILTER_COMPONENTS = 28  # as many as the ViT paper shows


class EmptyState(QStackedWidget):
    """A view, or in its place a line saying what will appear there."""

    def __init__(self, view: QWidget, message: str) -> None:
        super().__init__()
        self.view = view
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setStyleSheet("background: black; color: #a8a8a8; padding: 16px;")
        self.addWidget(self.label)
        self.addWidget(view)
        self.empty_message = message
        self.show_empty()

    def show_empty(self) -> None:
        self.show_message(self.empty_message)

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.setCurrentWidget(self.label)

    def show_view(self) -> None:
        self.setCurrentWidget(self.view)

    @property
    def showing_view(self) -> bool:
        return self.currentWidget() is self.view


def model_structure(spec, module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :meth:`AnalyticsTab.set_structure` shows, from core.structure: the position
    similarity (rows, cols, rows, cols), the filters' first principal components as RGB images
    (count, p, p, 3) and their shares of the variance (count,). No Qt: a worker may call it.
    Raises ValueError for an architecture whose parameters core cannot read."""
    from vitexplorer.core.explain.structure import model_structure as structure

    return structure(module, spec.grid, spec.num_prefix_tokens, FILTER_COMPONENTS)


class AnalyticsTab(QWidget):
    """Head statistics and model structure; knows nothing of the worker or the main window."""

    head_selected = Signal(int, int)  # layer, head (both from 0): a point or a cell was clicked
    folder_requested = Signal(str)  # a folder whose images' statistics should be averaged
    folder_cancelled = Signal()
    shown = Signal()  # the tab became visible: the model's structure may be wanted now

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_statistics: HeadStatistics | None = None
        self.image_name = ""
        self.folder_statistics: HeadStatistics | None = None
        self.folder_name = ""
        self.folder_images = 0
        self.source = IMAGE
        self.selected: tuple[int, int] | None = None
        self.similarity: np.ndarray | None = None  # (rows, cols, rows, cols)
        self.components: np.ndarray | None = None  # (count, p, p, 3) RGB in 0..1
        self.shares: np.ndarray | None = None  # (count,) share of the filters' variance
        self.model_name = ""
        self._model_facts: Any = None  # the model for the export's card (set_model_facts)
        self._aspect: str | None = None  # how images were fed, for the card (set_aspect)
        self._build()

    # --- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.image_button = QRadioButton("Current image")
        self.folder_button = QRadioButton("Folder average")
        self.image_button.setChecked(True)
        self.folder_button.setEnabled(False)
        self.folder_button.setToolTip("Average over a folder first")
        self.source_group = QButtonGroup(self)
        self.source_group.addButton(self.image_button)
        self.source_group.addButton(self.folder_button)
        self.image_button.toggled.connect(
            lambda checked: self.show_source(IMAGE if checked else FOLDER)
        )
        self.folder_request_button = QPushButton("Average over a folder…")
        self.folder_request_button.setToolTip(
            "Run the model on every image of a folder and show each head's statistics averaged "
            "over them"
        )
        self.folder_request_button.clicked.connect(self._ask_for_folder)
        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m images")
        self.progress.setMinimumWidth(170)
        self.progress.setMaximumWidth(240)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel_folder)
        self.status = QLabel("")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            f"Write {PLOT_NAME}, {CSV_NAME}, {SIMILARITY_NAME} and {FILTERS_NAME} into a folder"
        )
        self.export_button.clicked.connect(self._ask_to_export)
        self.export_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.setContentsMargins(8, 4, 8, 4)
        bar.setSpacing(8)
        bar.addWidget(QLabel("Head statistics of:"))
        bar.addWidget(self.image_button)
        bar.addWidget(self.folder_button)
        bar.addSpacing(12)
        for widget in (self.folder_request_button, self.progress, self.cancel_button):
            bar.addWidget(widget)
        bar.addSpacing(12)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.export_button)
        self._show_folder_run(False)

        self.distance_plot = DistancePlot()
        self.distance_plot.head_clicked.connect(self._head_clicked)
        self.entropy_map = HeadHeatmap("Attention entropy (nats)", "nats", decimals=2)
        self.prefix_map = HeadHeatmap(
            "Attention on the CLS/prefix tokens (%)", "%", scale=100.0, decimals=1
        )
        for heatmap in (self.entropy_map, self.prefix_map):
            heatmap.head_clicked.connect(self._head_clicked)
        self.distance_area = EmptyState(
            self.distance_plot,
            "Each head's mean attention distance against depth (the ViT paper's Fig. 7) "
            "appears here once an image has been analysed.",
        )
        self.entropy_area = EmptyState(
            self.entropy_map, "Each head's attention entropy appears here with the first image."
        )
        self.prefix_area = EmptyState(
            self.prefix_map,
            "Each head's share of attention on the CLS/prefix tokens appears here with the "
            "first image.",
        )
        self.similarity_view = PositionSimilarityView()
        self.filter_view = FilterGridView()
        self.similarity_area = EmptyState(
            self.similarity_view,
            "The similarity of the model's position embeddings appears here once a model is "
            "loaded.",
        )
        self.filter_area = EmptyState(
            self.filter_view,
            "The principal components of the model's patch-embedding filters appear here once "
            "a model is loaded.",
        )

        heads = QSplitter(Qt.Orientation.Horizontal)
        for area in (self.distance_area, self.entropy_area, self.prefix_area):
            heads.addWidget(area)
        heads.setSizes([500, 330, 330])
        structure = QSplitter(Qt.Orientation.Horizontal)
        structure.addWidget(self.similarity_area)
        structure.addWidget(self.filter_area)
        structure.setSizes([700, 460])
        rows = QSplitter(Qt.Orientation.Vertical)
        rows.addWidget(heads)
        rows.addWidget(structure)
        rows.setSizes([380, 460])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(rows, 1)

    def showEvent(self, event) -> None:  # Qt's name
        super().showEvent(event)
        self.shown.emit()

    # --- the model's structure -------------------------------------------------------------
    def set_model(self, spec, module) -> None:  # ModelSpec, torch module
        """A model is ready: show its position embeddings' similarity and its filters'
        principal components, read on this thread (about 0.5 s for ViT-B/16, two SVDs; a
        worker can call :func:`model_structure` instead and pass the result to
        :meth:`set_structure`). The previous model's statistics are dropped."""
        self.model_name = getattr(spec, "display_name", "")
        device = next((str(p.device) for p in module.parameters()), "cpu")
        self.set_model_facts(spec, None, device)
        self.clear_statistics()
        try:
            structure = model_structure(spec, module)
        except ValueError as exc:
            self.show_structure_message(f"The model's structure cannot be shown: {exc}")
            return
        self.set_structure(*structure)

    def set_model_facts(self, spec: Any, weights_file: str | Path | None, device: str) -> None:
        """The model the export's card describes: its spec, the file its weights were read
        from (None: none) and its device."""
        weights = None if weights_file is None else Path(weights_file)
        self._model_facts = SimpleNamespace(spec=spec, weights_file=weights, device=device)

    def model_facts(self) -> Any:
        """The model the export's card describes (:meth:`set_model_facts`); None before one."""
        return self._model_facts

    def set_aspect(self, aspect: str | None) -> None:
        """How the images were fed to the model ("crop" or "keep"), for the export's card."""
        self._aspect = aspect

    def set_structure(
        self, similarity: np.ndarray, components: np.ndarray, shares: np.ndarray
    ) -> None:
        """Show core.structure's results, however computed: ``position_similarity`` (rows,
        cols, rows, cols), ``filter_components`` (count, p, p, 3) and the components' shares."""
        self.similarity, self.components, self.shares = similarity, components, shares
        self.similarity_view.set_similarity(similarity)
        self.filter_view.set_components(components, shares)
        self.similarity_area.show_view()
        self.filter_area.show_view()
        self._update_export()

    def show_structure_message(self, text: str) -> None:
        """In place of the structure views, e.g. for an architecture core cannot read."""
        self.similarity = self.components = self.shares = None
        self.similarity_area.show_message(text)
        self.filter_area.show_message(text)
        self._update_export()

    # --- head statistics -------------------------------------------------------------------
    def set_image_statistics(self, stats: HeadStatistics | None, image_name: str) -> None:
        """The current image's per-head statistics; ``None`` clears them."""
        self.image_statistics, self.image_name = stats, image_name
        if self.source == IMAGE:
            self._draw_statistics()

    def set_folder_statistics(self, stats: HeadStatistics, folder: str, images: int) -> None:
        """A folder's average, over ``images`` images: ends the run and shows it."""
        self.folder_statistics = stats
        self.folder_name, self.folder_images = folder, images
        self._show_folder_run(False)
        self.status.setText(f"averaged over {images} image(s) of {Path(folder).name or folder}")
        self.folder_button.setEnabled(True)
        self.folder_button.setToolTip("")
        if self.source == FOLDER:
            self._draw_statistics()
        else:
            self.folder_button.setChecked(True)  # draws through show_source

    def set_folder_progress(self, done: int, total: int) -> None:
        """Images of the folder analysed so far; shows the progress bar and Cancel."""
        self._show_folder_run(True)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def stop_folder_progress(self, message: str = "") -> None:
        """The folder run ended without statistics (cancelled or failed): say why."""
        self._show_folder_run(False)
        self.status.setText(message)

    def clear_statistics(self) -> None:
        """Forget the image's and the folder's statistics (a new model came)."""
        self.image_statistics = self.folder_statistics = None
        self.image_name = self.folder_name = ""
        self.folder_images = 0
        self.folder_button.setEnabled(False)
        self.image_button.setChecked(True)
        self.status.setText("")
        self._draw_statistics()

    def show_source(self, source: str) -> None:
        """Draw the current image's statistics (IMAGE) or the folder's average (FOLDER)."""
        if source not in (IMAGE, FOLDER):
            raise ValueError(f"unknown statistics source {source!r}")
        self.source = source
        button = self.image_button if source == IMAGE else self.folder_button
        if not button.isChecked():
            button.setChecked(True)  # toggles back into here
            return
        self._draw_statistics()

    @property
    def statistics(self) -> HeadStatistics | None:
        """The statistics drawn now."""
        return self.image_statistics if self.source == IMAGE else self.folder_statistics

    @property
    def statistics_title(self) -> str:
        if self.source == FOLDER:
            name = Path(self.folder_name).name or self.folder_name
            return f"{name}: mean over {self.folder_images} image(s)"
        return self.image_name

    def set_selected(self, layer: int | None, head: int | None) -> None:
        """Ring the explorer's current head in every view; ``None`` (mean of heads) rings none."""
        self.selected = None if layer is None or head is None else (layer, head)
        self.distance_plot.set_selected(layer, head)
        self.entropy_map.set_selected(layer, head)
        self.prefix_map.set_selected(layer, head)

    def _draw_statistics(self) -> None:
        stats = self.statistics
        areas = (self.distance_area, self.entropy_area, self.prefix_area)
        if stats is None:
            for area in areas:
                area.show_empty()
            self._update_export()
            return
        title = self.statistics_title
        self.distance_plot.set_statistics(
            stats.distance,
            stats.entropy,
            stats.prefix_share,
            title=f"Mean attention distance per head — {title}",
        )
        self.entropy_map.set_values(stats.entropy)
        self.prefix_map.set_values(stats.prefix_share)
        for area in areas:
            area.show_view()
        self.set_selected(*(self.selected or (None, None)))
        self._update_export()

    def _head_clicked(self, layer: int, head: int) -> None:
        self.set_selected(layer, head)
        self.head_selected.emit(layer, head)

    # --- the folder run --------------------------------------------------------------------
    def _ask_for_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Average the head statistics over the images of a folder"
        )
        if folder:
            self.status.setText("")
            self.folder_requested.emit(folder)

    def _cancel_folder(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        self.folder_cancelled.emit()

    def _show_folder_run(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.folder_request_button.setEnabled(not running)
        if not running:
            self.cancel_button.setEnabled(True)
            self.cancel_button.setText("Cancel")

    # --- export ----------------------------------------------------------------------------
    def export(self, folder: Path) -> list[Path]:
        """Write what is shown into ``folder`` as one set, its card last; returns the files
        written (:func:`vitexplorer.gui.analytics_export.write_export`)."""
        folder_run = self.source == FOLDER
        shown = Shown(
            statistics=self.statistics,
            title=self.statistics_title,
            images=self.folder_images if folder_run else 1,
            image_name=None if folder_run else self.image_name,
            folder=self.folder_name if folder_run else None,
            aspect=self._aspect,
            model_name=self.model_name,
            model=self.model_facts(),
            similarity=self.similarity,
            position=self.similarity_view.selected,
            components=self.components,
            shares=self.shares,
        )
        return write_export(Path(folder), shown)

    def _ask_to_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the analytics into a folder")
        if not folder:
            return
        try:
            written = self.export(Path(folder))
        except OSError as exc:
            self.status.setText(f"could not export: {exc.strerror or exc}")
            return
        self.status.setText(f"wrote {len(written)} files to {folder}")

    def _update_export(self) -> None:
        self.export_button.setEnabled(self.statistics is not None or self.similarity is not None)
