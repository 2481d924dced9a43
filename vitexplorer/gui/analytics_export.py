"""The Model analytics tab's export: what the tab shows, written into a folder as one set with
its card last, as ``vitexplorer stats`` writes its table, plot and ``head_stats.json``.

Every picture is drawn before any file is touched (pyqtgraph's exporters write to a path: they
draw into a temporary folder, whose bytes join the set), so a failure leaves the folder as it
was; then :func:`vitexplorer.core.io.files.write_set` writes the plot, the table and the
structure's pictures, and the card :data:`CARD_NAME` last: what was computed, from which model
and images, each file named with its size (:mod:`vitexplorer.core.explain.analytics_card`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from vitexplorer.core.explain.head_stats import HeadStatistics, statistics_csv
from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.gui.views.head_stats_view import export_distance_plot
from vitexplorer.gui.views.structure_views import FilterGridView, PositionSimilarityView

CSV_NAME = "head_stats.csv"  # the same names and columns as `vitexplorer stats`
PLOT_NAME = "distance_vs_depth.png"
PLOT_SVG_NAME = "distance_vs_depth.svg"
SIMILARITY_NAME = "position_similarity.png"
FILTERS_NAME = "filter_components.png"
CARD_NAME = "analytics.json"  # what was computed, from which model and images: written last


@dataclass(frozen=True)
class Shown:
    """What the analytics tab shows, to be exported."""

    statistics: HeadStatistics | None  # the drawn head statistics (None: none yet)
    title: str  # the statistics' source in words: the image, or the folder's mean
    images: int  # how many images they average
    image_name: str | None  # the image's name; None for a folder's average
    folder: str | None  # the folder averaged over; None for one image
    aspect: str | None  # how each input was made: "crop" or "keep" (None: not known)
    model_name: str
    model: Any  # the model the card describes: spec, weights_file, device (None: not known)
    similarity: np.ndarray | None  # (rows, cols, rows, cols)
    position: tuple[int, int] | None  # the position chosen in the similarity view
    components: np.ndarray | None  # (count, p, p, 3)
    shares: np.ndarray | None  # (count,)


def write_export(folder: Path, shown: Shown) -> list[Path]:
    """Write ``shown`` into ``folder`` as one set, the card last; the paths written (none when
    nothing is shown). OSError, the folder as it was, when the set cannot be written."""
    files = FileSet()
    stats = shown.statistics
    if stats is not None:
        title = f"{shown.model_name}: mean attention distance, {shown.title}"
        plot = partial(_distance_plot, stats.distance, title)
        files.add(folder / PLOT_NAME, _writer(_rendered(".png", plot)))
        try:
            files.add(folder / PLOT_SVG_NAME, _writer(_rendered(".svg", plot)))
        except ValueError:  # pyqtgraph 0.14.0 cannot parse Qt 6's closed paths (#3485)
            pass
        files.add(folder / CSV_NAME, _writer(statistics_csv(stats, shown.images).encode()))
    parts = (shown.similarity, shown.components, shown.shares)
    if parts[0] is not None and parts[1] is not None and parts[2] is not None:
        named = f"{shown.model_name}: " if shown.model_name else ""
        similarity = partial(_similarity_png, parts[0], shown.position, named)
        files.add(folder / SIMILARITY_NAME, _writer(_rendered(".png", similarity)))
        filters = partial(_filters_png, parts[1], parts[2])
        files.add(folder / FILTERS_NAME, _writer(_rendered(".png", filters)))
    if not files.files:
        return []
    data = [path for path, _ in files.files]
    files.card(folder / CARD_NAME, data, partial(card, shown, [p.name for p in data]))
    return files.write(file_mode())


def card(shown: Shown, names: list[str], listing: list[dict[str, Any]]) -> bytes:
    """The export's card: the model, the statistics' images and the structure, the files
    ``names`` written with their sizes (``listing``)."""
    from vitexplorer.core.explain.analytics_card import (
        DISTANCE,
        STATISTICS,
        STRUCTURE,
        card_bytes,
        statistics_facts,
        structure_facts,
    )

    stats = shown.statistics
    parameters: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if stats is not None:
        parameters.update(DISTANCE)
        outputs = {"table": CSV_NAME, "plot": PLOT_NAME}
        if PLOT_SVG_NAME in names:
            outputs["plot_svg"] = PLOT_SVG_NAME
        layers, heads = stats.distance.shape  # the table's rows
        shape = SimpleNamespace(num_layers=layers, num_heads=heads)
        if shown.image_name is None:  # a folder's average: its images are not known one by one
            extra.update(statistics_facts(shape, None, None, shown.aspect, outputs))
            extra["folder"] = {"path": shown.folder, "images": shown.images}
        else:
            extra.update(statistics_facts(shape, [shown.image_name], 0, shown.aspect, outputs))
    if shown.similarity is not None and shown.shares is not None:
        parameters["filter_components"] = len(shown.shares)
        extra["structure"] = structure_facts(
            shown.shares, {"position_similarity": SIMILARITY_NAME, "filters": FILTERS_NAME}
        )
    method = STATISTICS if stats is not None else STRUCTURE
    if shown.model is None:  # no model known: what was computed, still
        return card_bytes({"method": method, "parameters": parameters, **extra}, listing)
    from vitexplorer.core.explain.provenance import method_card

    return card_bytes(method_card(shown.model, method, parameters, extra=extra), listing)


def _rendered(suffix: str, write: Callable[[Path], None]) -> bytes:
    """The bytes ``write(path)`` puts in a file named with ``suffix`` (exporters pick the format
    by it), drawn in a temporary folder before any file of the export is touched."""
    with tempfile.TemporaryDirectory(prefix="vitexplorer-export-") as folder:
        path = Path(folder) / f"figure{suffix}"
        write(path)
        return path.read_bytes()


def _writer(data: bytes) -> Callable[[Any], None]:
    return lambda handle: handle.write(data)


def _distance_plot(distance: np.ndarray, title: str, path: Path) -> None:
    export_distance_plot(str(path), distance, title)


def _similarity_png(
    similarity: np.ndarray, position: tuple[int, int] | None, named: str, path: Path
) -> None:
    view = PositionSimilarityView()
    view.set_similarity(similarity)
    if position is not None:
        view.select_position(*position)
    if named:
        view.title.setText(f"{named}{view.title.text}")
    view.readout.setText("")
    _export_offscreen(view, path, 1100, 620)


def _filters_png(components: np.ndarray, shares: np.ndarray, path: Path) -> None:
    view = FilterGridView()
    view.set_components(components, shares)
    _export_offscreen(view, path, 900, 620)


def _export_offscreen(view: Any, path: Path, width: int, height: int) -> None:
    """Lay a view out at a fixed size without showing it on screen, and write it as PNG."""
    from pyqtgraph.exporters import ImageExporter

    view.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
    view.resize(width, height)
    view.show()
    QApplication.processEvents()
    exporter = ImageExporter(view.scene())
    exporter.parameters()["width"] = width
    exporter.export(str(path))
    view.close()
    view.deleteLater()
