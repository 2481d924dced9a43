"""Compare with another model: a second model beside the explorer's, on the same image, token,
method, layer and head (issue 13).

The two are models A and B of :mod:`vitexplorer.core.explain.model_compare`, and every difference is
B minus A. Which is which is decided once, when the other model loads, and kept until another
is chosen (a new fine-tune of the explorer's model does not turn them round): when the other
model is the explorer's model before fine-tuning it is A and the explorer's model B; any other
model is B beside the explorer's A (the first chosen). Only Swap turns them round. "Before" and
"after" are said only while one of the two is the other's base; otherwise B − A is neutral.

The other model lives in a worker of its own (a :class:`~vitexplorer.gui.workers.ModelWorker`
in its own thread): it is loaded there, with progress and Cancel, and analyses the explorer's
current image there; the GUI thread only slices the analyses, as for the explorer's model.
Both views share one colour scale by default; the difference B - A is drawn on a diverging
scale symmetric around zero (resampled to the image where the patch grids differ, by
:func:`~vitexplorer.core.explain.model_compare.compare_analyses`), and a table lists the heads whose
statistics changed most on this image
(:func:`~vitexplorer.core.explain.model_compare.head_changes`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
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

from vitexplorer.core.explain.maps import MapCache, MapJob, caption
from vitexplorer.core.explain.method import MapChoice, get
from vitexplorer.core.explain.model_compare import (
    HEAD_STATISTICS,
    comparability,
    compare_analyses,
    counterpart_token,
    distance_units_note,
    head_changes,
)
from vitexplorer.core.explain.tokens import patch_for_token, token_for_patch
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.families.registry import SMALL_VIT, TORCHVISION_VITS
from vitexplorer.core.models.spec import DEMO, DEMO_LABEL
from vitexplorer.core.render.numbering import patch_label
from vitexplorer.gui.controls import model_choices
from vitexplorer.gui.views.common import DIFFERENCE_COLORMAP, shared_levels
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.workers import ModelInfo, ModelRequest, WorkerThread

METHOD, MODEL = "method", "model"  # Compare with: another method, or another model
CHOOSE, BEFORE, FILE = "", "before", "file"  # the model box's entries that are not a model
OTHER, EXPLORER = "other", "explorer"  # which of the two came first, when one was fine-tuned
WEIGHTS_FILTER = "Weights or checkpoint (*.safetensors *.pth *.pt *.bin)"
KEEP = 4  # the other model's analyses kept, by image
SIGNALS = (  # the compared model's worker's answers, each to this module's method "_" + name
    "model_ready",
    "model_failed",
    "download_offered",
    "download_progress",
    "analysis_ready",
    "analysis_failed",
    "map_ready",
    "map_failed",
)
STATISTIC_WORDS = {
    "distance": ("mean distance", "px", ".2f"),
    "entropy": ("entropy", "nats", ".3f"),
    "prefix_share": ("prefix share", "", ".3f"),
}


# --- which model, in words and as a request (no Qt) -----------------------------------------


def model_label(spec: Any, metadata: dict | None = None) -> str:
    """A model for titles: the file it was read from, else its name and where its weights came
    from, and how it was trained when known
    (:func:`~vitexplorer.core.explain.provenance.model_name`)."""
    from vitexplorer.core.explain.provenance import model_name

    return model_name(spec, metadata)


def info_label(info: ModelInfo | None, window: Any = None) -> str:
    """:func:`model_label` of a loaded model, with how it was trained: a model fine-tuned in
    this session from the run the Train tab holds (``window.finetune.adopted``), a checkpoint
    from its file's metadata."""
    if info is None:
        return ""
    from vitexplorer.core.explain.provenance import weights_metadata

    metadata = None
    if info.fine_tuned:
        result = getattr(getattr(window, "finetune", None), "adopted", None)
        model = getattr(result, "model", None)
        if model is not None and getattr(model, "spec", None) is info.spec:
            metadata = result.metadata()
    else:  # a model saved in this session keeps no weights_file: its request names the file
        metadata = weights_metadata(info.weights_file or info.request.name)
    return model_label(info.spec, metadata)


def request_label(request: ModelRequest) -> str:
    """What a request loads, in a few words, before it is loaded."""
    if request.name == DEMO and request.weights in ("default", "none"):
        return DEMO_LABEL if request.weights == "default" else f"{DEMO_LABEL}, random weights"
    if request.weights not in ("default", "none"):
        return Path(request.weights).name
    if request.name in TORCHVISION_VITS:
        shown = TORCHVISION_VITS[request.name]
        return f"{shown}, random weights" if request.weights == "none" else shown
    if request.name == SMALL_VIT:
        return "Small ViT, random weights"
    return Path(request.name).name or request.name


def built_in(name: str, device: str = "auto") -> ModelRequest:
    """A model of the model box by name: its pretrained weights, random for the small ViT
    (which has none)."""
    return ModelRequest(name, "none" if name == SMALL_VIT else "default", device)


def same_model(first: ModelRequest | None, second: ModelRequest | None) -> bool:
    """Whether two requests load the same model (on whichever device)."""
    if first is None or second is None:
        return False
    return (first.name, first.weights) == (second.name, second.weights)


def base_request(info: ModelInfo) -> tuple[ModelRequest | None, str]:
    """The explorer's model before fine-tuning: a request that loads it and a label, or None
    and why there is none. A model fine-tuned in this session remembers the request it started
    from; a checkpoint names its base in its metadata ("finetune", as
    :meth:`~vitexplorer.core.training.engine.FinetuneResult.metadata` writes it), which is looked up
    among the built-in models and beside the checkpoint. Reads the checkpoint's header only,
    never its tensors."""
    if info.fine_tuned:
        if info.request.weights == "none":
            return None, "it was trained from scratch: no model came before it"
        return info.request, request_label(info.request)
    from vitexplorer.core.models.base_record import BaseRecordError, loadable_base, read_record
    from vitexplorer.core.models.checkpoint import WeightsFileError, is_safetensors_file
    from vitexplorer.core.models.checkpoint import read_safetensors_header as read_header

    # a model saved in this session keeps no weights_file: its request names the file
    saved_here = (
        info.weights_file is None
        and info.request.weights == "default"
        and is_safetensors_file(info.request.name)
    )
    if info.weights_file is None and not saved_here:
        return None, "it was not fine-tuned from another model"
    path = Path(info.weights_file or info.request.name)
    if not is_safetensors_file(path):
        return None, "its weights file records no model it was fine-tuned from"
    try:
        meta = read_header(path)[1] or {}
    except (WeightsFileError, OSError, ValueError) as exc:
        return None, f"its weights file cannot be read again ({exc})"
    if "train" in meta:
        return None, "it was trained from scratch: no model came before it"
    record = meta.get("finetune")
    recorded = read_record(record)  # how the base loads again (family, name, weights, hash)
    if recorded is not None:
        try:
            found = loadable_base(recorded, path)
        except BaseRecordError as exc:
            return None, str(exc)
        request = ModelRequest(found.name, found.weights, info.request.device)
        return request, request_label(request)
    base = record.get("base") if isinstance(record, dict) else None
    if not isinstance(base, str):
        return None, "its weights file records no model it was fine-tuned from"
    request = request_for_base(base, path.parent, info.request.device)
    if request is None:
        return None, (
            f"its checkpoint names its base as {base!r}, which is not a built-in model nor a "
            f"file beside it: open the base with 'Weights or checkpoint file…'"
        )
    return request, request_label(request)


def request_for_base(label: str, folder: Path, device: str = "auto") -> ModelRequest | None:
    """The request that loads the base a checkpoint names (its "display name, weights"): the
    demo model, a torchvision ViT's pretrained weights, or a file of that name in ``folder``
    (the checkpoint's); None when it is none of those (random weights cannot be had again)."""
    from vitexplorer.core.models.spec import RANDOM

    if label.startswith(f"{DEMO_LABEL}, "):
        return ModelRequest(DEMO, "default", device)
    architecture = next(
        (name for name, shown in TORCHVISION_VITS.items() if label.startswith(f"{shown}, ")),
        None,
    )
    if label.endswith(f", {RANDOM}"):
        return None
    _, marker, file_name = label.rpartition(", file ")
    if marker:
        path = folder / file_name
        if not path.is_file():
            return None
        if architecture is not None:  # a torchvision state dict needs its architecture
            return ModelRequest(architecture, str(path), device)
        return ModelRequest(str(path), "default", device)
    if architecture is not None:
        return ModelRequest(architecture, "default", device)
    return None


def top_class(analysis: Any) -> str:
    """The model's most probable class on the image, in parentheses ("" without a classifier)."""
    if not analysis.predictions:
        return ""
    top = analysis.predictions[0]
    return f" ({top.name} {100 * top.probability:.0f}%)"


# --- the panel's widgets ---------------------------------------------------------------------


class ElidedLabel(QLabel):
    """One line that never widens its panel: the text is cut with an ellipsis to the width
    the layout gives it, whole in the tooltip."""

    def __init__(self) -> None:
        super().__init__("")
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
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
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.ElideRight, width))


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
        self.sort_box.setFocusPolicy(Qt.NoFocus)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
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
        columns = [("Layer", None, ""), ("Head", None, "")]
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
        item.setData(Qt.UserRole, value)
        item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
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
        self.model_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_box.setMinimumContentsLength(12)
        self.model_box.setFocusPolicy(Qt.NoFocus)
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
            button.setFocusPolicy(Qt.NoFocus)
        for widget in (self.same_scale_box, self.swap_button):
            widget.setFocusPolicy(Qt.NoFocus)
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


# --- the comparison ---------------------------------------------------------------------------


def lock_view(view: ImageView, locked: bool, current: bool) -> None:
    """Lock scale for a second view: ``current`` when its map is the present one (it is on
    screen, or kept drawn behind a tab); else its old map's levels are not kept, the next map's
    are."""
    if locked and not current:
        view.clear_heat()  # a stale map: the next one drawn gives the locked levels
    view.lock_scale(locked)


def follow_lock(view: ImageView, leader: ImageView) -> None:
    """While the scale is locked and two views are on one colour scale: ``view`` kept on the
    levels ``leader`` is locked to (drawn before it), so that one colour is one value in both
    whenever each view was locked."""
    if leader.locked_levels is None or view.locked_levels == leader.locked_levels:
        return
    view.lock_scale(False)  # forget a lock of its own, or one waiting for its next map
    view.locked_levels = leader.locked_levels


@dataclass(frozen=True)
class Side:
    """One model's part of the comparison on the current image."""

    role: str  # "A" or "B"
    label: str
    analysis: Any  # ImageAnalysis
    selection: Selection
    choice: MapChoice
    heat: np.ndarray | None  # None while the worker computes the map

    @property
    def patch(self) -> tuple[int, int] | None:
        spec = self.analysis.spec
        return patch_for_token(self.selection.token, spec.grid, spec.num_prefix_tokens)


class ModelCompare(QObject):
    """Compare with another model: its worker, its analyses of the explorer's images, and the
    drawing of both views, the difference and the head table. Built by
    :class:`~vitexplorer.gui.explanations.Explanations`, which asks it to draw while the compare
    panel shows another model."""

    mode_changed = Signal()
    model_ready = Signal(object)  # ModelInfo: the compared model is loaded (and shown)
    model_failed = Signal(str)  # the one line the panel shows

    def __init__(self, window, explanations) -> None:
        super().__init__(window)
        self.window, self.explanations = window, explanations
        self.mode_box = QComboBox()
        self.mode_box.addItem("another method", METHOD)
        self.mode_box.addItem("another model", MODEL)
        self.mode_box.setFocusPolicy(Qt.NoFocus)
        self.mode_box.setToolTip(
            "Another method or class of the explorer's model, or another model (the model "
            "before fine-tuning, a built-in model or a checkpoint) on the same image, token, "
            "method, layer and head"
        )
        self.mode_row = QWidget()
        row = QHBoxLayout(self.mode_row)
        row.setContentsMargins(4, 2, 4, 2)
        row.addWidget(QLabel("Compare with"))
        row.addWidget(self.mode_box)
        row.addStretch(1)
        self.panel = ModelComparePanel()
        self.panel.setVisible(False)
        self._thread: WorkerThread | None = None
        self._retired: list[WorkerThread] = []  # stopping without being waited for
        self.info: ModelInfo | None = None  # the compared model, once loaded
        self.loading: ModelRequest | None = None  # a load under way
        # which came first: OTHER (the compared model is the one the explorer's was fine-tuned
        # from), EXPLORER (the compared model was fine-tuned from the explorer's), or "" (none
        # known: B − A is said neutrally)
        self.before = ""
        self.other_first = False  # the compared model is A: decided when it loads, then kept
        self._labels: dict[tuple, str] = {}  # (which model, its generation, ...) -> its name
        self.other_base: tuple[ModelRequest | None, str] = (None, "")
        self.swapped = False
        self.base: tuple[ModelRequest | None, str] = (None, "no model is loaded")
        # image key -> (whole image or not, the compared model's ImageAnalysis of it)
        self.analyses: OrderedDict[str, tuple[bool, Any]] = OrderedDict()
        self.failed: dict[str, str] = {}  # image key -> why the compared model could not
        self.asked: set[str] = set()  # images with the worker
        self.maps_asked: set[tuple[str, MapJob]] = set()  # (image key, job) in the worker
        self.maps = MapCache()  # what the compared model's maps are read from
        self.comparison = None  # the last MapComparison drawn (core.model_compare)
        self._view_image: tuple | None = None  # what the compared model's view's photo shows
        self._difference_image: tuple | None = None  # and the difference view's
        self._offer = None  # the weights a download was offered for
        self._fill_model_box()
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        panel = self.panel
        panel.model_box.activated.connect(self._model_chosen)
        panel.close_button.clicked.connect(self.close_model)
        panel.cancel_button.clicked.connect(self.cancel)
        panel.download_button.clicked.connect(self._download)
        panel.same_scale_box.toggled.connect(self._redraw)
        panel.swap_button.clicked.connect(self.swap)
        panel.heads.sort_changed.connect(self._redraw)
        panel.heads.head_chosen.connect(self.explanations.open_head)
        panel.view.patch_clicked.connect(self._other_clicked)
        panel.difference.patch_clicked.connect(self._difference_clicked)
        panel.view.arrow_pressed.connect(window.move_patch)
        panel.difference.arrow_pressed.connect(window.move_patch)
        panel.view.patch_hovered.connect(lambda r, c: self._hover(r, c, panel.view))
        panel.difference.patch_hovered.connect(lambda r, c: self._hover(r, c, panel.difference))
        self._show_empty()

    def connect_views(self) -> None:
        """The explorer's overlay settings apply to these views too."""
        bar = self.window.view_bar
        for view in (self.panel.view, self.panel.difference):
            bar.opacity_changed.connect(view.set_opacity)
            bar.grid_toggled.connect(view.set_grid_visible)
        bar.scale_locked.connect(self.lock_scale)

    def lock_scale(self, locked: bool) -> None:
        """The explorer's Lock scale, for the other model's view and the difference too: each
        keeps the levels it shows now (B's are A's while they share one scale, see
        :func:`follow_lock`), or, not drawn for the present image, its next map's."""
        current = self.explanations.comparing and self.active
        for view in (self.panel.view, self.panel.difference):
            lock_view(view, locked, current)

    # --- the mode and the model box -----------------------------------------------------------
    @property
    def active(self) -> bool:
        """The compare panel compares with another model (whether or not it is shown)."""
        return self.mode_box.currentData() == MODEL

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(self.mode_box.findData(mode))

    def _mode_changed(self, _index: int) -> None:
        self.mode_changed.emit()

    def _fill_model_box(self) -> None:
        box = self.panel.model_box
        box.addItem("Choose a model…", CHOOSE)
        box.addItem("Before fine-tuning", BEFORE)
        box.insertSeparator(box.count())
        for name, label in model_choices():  # by name: see built_in
            box.addItem(f"{label} (random weights)" if name == SMALL_VIT else label, name)
        box.insertSeparator(box.count())
        box.addItem("Weights or checkpoint file…", FILE)
        self._show_base()

    def _show_base(self) -> None:
        """The model box's "Before fine-tuning" entry: the explorer's model's base, or why it
        has none (disabled, the reason in its tooltip)."""
        box = self.panel.model_box
        index = box.findData(BEFORE)
        request, words = self.base
        item = box.model().item(index)
        if request is None:
            box.setItemText(index, "Before fine-tuning (none known)")
            item.setToolTip(f"The explorer's model has no model before fine-tuning: {words}")
            item.setEnabled(False)
        else:
            box.setItemText(index, f"Before fine-tuning: {words}")
            item.setToolTip(f"The model the explorer's model was fine-tuned from: {words}")
            item.setEnabled(True)

    def explorer_model_changed(self, info: ModelInfo) -> None:
        """The explorer has another model: its base is looked up again, and the compared model
        is "before" only if it is this model's base."""
        self.base = base_request(info)
        self._show_base()
        self.before = self._which_before()
        self._view_image = self._difference_image = None
        self._show_loaded()

    def _model_chosen(self, _index: int) -> None:
        data = self.panel.model_box.currentData()
        if not data:  # CHOOSE: the compared model's own entry
            return
        if data == FILE:
            path, _ = QFileDialog.getOpenFileName(
                self.window, "Compare with a weights file or checkpoint", "", WEIGHTS_FILTER
            )
            if path:
                self.load(ModelRequest(path, "default", self._device()))
            return
        if data == BEFORE:
            if self.base[0] is not None:
                self.load(self.base[0])
            return
        self.load(built_in(data, self._device()))

    def _device(self) -> str:
        model = self.window.model
        return model.request.device if model is not None else "auto"

    # --- the compared model's worker ------------------------------------------------------------
    def load(self, request: ModelRequest) -> None:
        """Load ``request`` as the compared model, in its worker."""
        self.loading = request
        worker = self._worker()
        worker.keep_aspect = self.window.keep_aspect
        worker.request_model(request)
        self.panel.show_state(f"Loading {request_label(request)}…", busy=True)

    def _worker(self):  # ModelWorker
        if self._thread is None:
            self._prune()
            self._thread = WorkerThread(name="vitexplorer-compare-model")
            worker = self._thread.worker
            for signal in SIGNALS:  # bound slots of this GUI-thread object: queued, run here
                getattr(worker, signal).connect(getattr(self, f"_{signal}"))
        return self._thread.worker

    def _mine(self) -> bool:
        """Whether the signal being answered comes from the current worker (a cancelled or
        closed one's late answers are dropped)."""
        return self._thread is not None and self.sender() is self._thread.worker

    def _retire(self) -> None:
        """Stop the worker without waiting for it (a load cannot be interrupted): its model
        goes with it, and whatever it still sends is dropped."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.worker.clear_queue()
            thread.worker.cancel_event.set()
            thread.thread.quit()
            self._retired.append(thread)
        self._prune()
        self.info = self.loading = None
        self.before, self.swapped, self.other_first = "", False, False
        self._forget()

    def _prune(self) -> None:
        self._retired = [t for t in self._retired if not t.thread.isFinished()]

    def stop(self) -> None:
        """The window closes: every worker of compared models stops (each waited for a
        moment, as the explorer's own)."""
        for thread in [t for t in (self._thread, *self._retired) if t is not None]:
            thread.stop()
        self._thread = None
        self._retired = []

    def threads(self) -> list[WorkerThread]:
        """The compared models' worker threads still held (tests check they end)."""
        return [t for t in (self._thread, *self._retired) if t is not None]

    def _forget(self) -> None:
        self.analyses.clear()
        self.failed.clear()
        self.asked.clear()
        self.maps_asked.clear()
        self.maps.forget()
        self._view_image = self._difference_image = None

    def cancel(self) -> None:
        """Cancel a load under way (and a download): the worker goes, with the model it held."""
        if self.loading is None:
            return
        what = request_label(self.loading)
        self._retire()
        self._show_loaded()
        self.panel.model_box.setCurrentIndex(0)
        self.panel.show_state(f"Loading {what} cancelled: choose a model to compare with.")
        self._redraw()

    def close_model(self) -> None:
        """Unload the compared model; its views are emptied."""
        self._retire()
        self._show_loaded()
        self.panel.model_box.setCurrentIndex(0)
        self.panel.show_state("Choose a model to compare with the explorer's.")
        self._redraw()

    def swap(self) -> None:
        self.swapped = not self.swapped
        self._redraw()

    def _model_ready(self, info: ModelInfo) -> None:
        if not self._mine():
            return
        self.info, self.loading = info, None
        self.other_base = base_request(info)
        self.before = self._which_before()
        self.other_first = self.before == OTHER  # kept while this model stays
        self.swapped = False
        self._forget()
        self._show_loaded()
        self._redraw()
        self.model_ready.emit(info)

    def _show_loaded(self) -> None:
        """The model box's first entry names the compared model (or asks for one), and the
        state line says what it is."""
        box = self.panel.model_box
        box.setItemText(0, "Choose a model…" if self.info is None else self.other_label())
        if self.info is None or self.loading is not None:
            return
        box.setCurrentIndex(0)
        info = self.info
        what = {
            OTHER: "The explorer's model before fine-tuning",
            EXPLORER: "Fine-tuned from the explorer's model",
        }.get(self.before, "Loaded")
        self.panel.show_state(f"{what} · {info.device}, {info.seconds:.1f} s")
        self.panel.status.setToolTip(f"{self.other_label()}: {self.panel.status.full_text}")

    def _model_failed(self, message: str) -> None:
        if not self._mine():
            return
        what = request_label(self.loading) if self.loading is not None else "the model"
        self.loading = None
        self.panel.model_box.setCurrentIndex(0)  # the model that stays, or none
        stays = f"; {self.other_label()} stays" if self.info is not None else ""
        if message == "download cancelled":
            self.panel.show_state(f"Download of {what} cancelled{stays}.")
        else:
            text = " ".join(message.split())  # one line, whatever the message holds
            self.panel.show_state(f"Could not load {what}: {text}{stays}", error=True)
        self.model_failed.emit(self.panel.status.full_text)

    def _download_offered(self, offer) -> None:  # workers.DownloadOffer
        if not self._mine():
            return
        self.loading = None
        self._offer = offer
        self.panel.show_state(
            f"{offer.description} are not downloaded ({offer.size_mb:.0f} MB)", download=True
        )

    def _download(self) -> None:
        if self._offer is not None:
            self.load(replace(self._offer.request, allow_download=True))

    def _download_progress(self, done: int, total: int) -> None:
        if self._mine() and total > 0:
            self.panel.progress.setRange(0, 1000)
            self.panel.progress.setValue(int(1000 * done / total))

    # --- the compared model's analyses ------------------------------------------------------------
    def _analysis_ready(self, done) -> None:  # workers.AnalysisDone
        if not self._mine() or self.info is None or done.generation != self.info.generation:
            return
        self.asked.discard(done.key)
        window = self.window
        if done.key not in window.session.entries or done.keep_aspect != window.keep_aspect:
            return  # removed since, or made the other way (asked again when drawn)
        self.analyses[done.key] = (done.keep_aspect, done.analysis)
        self.analyses.move_to_end(done.key)
        while len(self.analyses) > KEEP:
            self.analyses.popitem(last=False)
        self.maps.forget(done.key)
        if done.key == self.window.session.current_key:
            self._redraw()

    def _analysis_failed(self, key: str, message: str) -> None:
        if not self._mine():
            return
        self.asked.discard(key)
        self.failed[key] = " ".join(message.split())
        if key == self.window.session.current_key:
            self._redraw()

    def _map_ready(self, done) -> None:  # workers.MapDone
        if not self._mine() or self.info is None or done.generation != self.info.generation:
            return
        self.maps_asked.discard((done.key, done.job))
        if done.keep_aspect != self.window.keep_aspect:
            return
        self.maps.store(done.key, done.job, done.matrix)
        if done.key == self.window.session.current_key:
            self._redraw()

    def _map_failed(self, failed) -> None:  # workers.MapFailed
        if not self._mine():
            return
        self.maps_asked.discard((failed.key, failed.job))
        self.panel.show_state(
            f"Could not compute model B's {failed.job.method}: {failed.message}", error=True
        )

    def _analysis(self, key: str):  # ImageAnalysis | None
        """The compared model's analysis of image ``key``, asked of its worker when missing."""
        keep, analysis = self.analyses.get(key, (None, None))
        if analysis is not None and keep != self.window.keep_aspect:
            del self.analyses[key]  # the other way (crop or whole image): asked again
            self.maps.forget(key)
            analysis = None
        if analysis is None and key not in self.asked and key not in self.failed:
            self.asked.add(key)
            worker = self._thread.worker
            worker.keep_aspect = self.window.keep_aspect
            worker.request_analysis(key, self.window.session.entries[key].source, first=True)
        return analysis

    def _ask_map(self, key: str, job: MapJob) -> None:
        if self._thread is None or (key, job) in self.maps_asked:
            return
        self.maps_asked.add((key, job))
        source = self.window.session.entries[key].source
        self._thread.worker.request_map(key, source, job)

    # --- drawing --------------------------------------------------------------------------------
    def show_analysis(self, analysis) -> None:
        """The explorer shows an image's analysis (drawn by :meth:`draw` right after)."""
        self._view_image = self._difference_image = None

    def show_placeholder(self) -> None:
        """The explorer waits for an analysis (another image, another model): nothing old
        stays in the compared model's views."""
        waiting = "Waiting for the explorer's analysis…"
        self.panel.view.show_placeholder(waiting if self.info is not None else "")
        self.panel.difference.show_placeholder("")
        self.panel.heads.show_message("")
        self.panel.set_note("")
        self._view_image = self._difference_image = None
        self.comparison = None

    def _show_empty(self) -> None:
        self.panel.view.show_placeholder("No model to compare with: choose one above")
        self.panel.difference.show_placeholder("")
        self.panel.heads.show_message("Choose a model to compare with.")
        self.panel.set_note("")
        self.comparison = None
        self._view_image = self._difference_image = None

    def _redraw(self) -> None:
        if self.window.analysis is not None and self.explanations.comparing and self.active:
            self.window._refresh()
        elif self.info is None and self.loading is None:
            self._show_empty()

    @property
    def other_is_a(self) -> bool:
        """The compared model is A and the explorer's B: decided when the compared model
        loaded (A when it is the explorer's base), turned round only by Swap."""
        return self.other_first != self.swapped

    def other_label(self) -> str:
        """The compared model's name for people (:func:`info_label`), worked out once."""
        return self._label("other", self.info)

    def explorer_label(self) -> str:
        """The explorer's model's name for people (:func:`info_label`), worked out once."""
        return self._label("explorer", self.window.model)

    def _label(self, which: str, info: ModelInfo | None) -> str:
        if info is None:
            return ""
        run = getattr(getattr(self.window, "finetune", None), "adopted", None)
        key = (which, info.generation, info.weights_file, id(run) if info.fine_tuned else 0)
        if key not in self._labels:
            self._labels = {k: v for k, v in self._labels.items() if k[0] != which}
            self._labels[key] = info_label(info, self.window)
        return self._labels[key]

    def _which_before(self) -> str:
        """Whether one of the two models was fine-tuned from the other (see ``before``)."""
        if self.info is None:
            return ""
        if same_model(self.base[0], self.info.request):
            return OTHER
        explorer = self.window.model
        if explorer is not None and not explorer.fine_tuned:  # else its request is its base's
            if same_model(self.other_base[0], explorer.request):
                return EXPLORER
        return ""

    def draw(self, patch) -> None:
        """Both models' maps of the explorer's choice on the current image, the difference
        B - A and the head table; the explorer's own view included."""
        from vitexplorer.gui.explanations import draw_view

        window, explanations = self.window, self.explanations
        choice = explanations.method_bar.choice()
        explorer_role, other_role = ("B", "A") if self.other_is_a else ("A", "B")
        explorer = Side(
            explorer_role,
            self.explorer_label(),
            window.analysis,
            window.selection,
            choice,
            explanations._heat(choice),
        )
        other = self._other_side(choice, other_role)
        levels = None
        heats = [s.heat for s in (explorer, other) if isinstance(s, Side) and s.heat is not None]
        if len(heats) == 2 and self.panel.same_scale_box.isChecked():
            levels = shared_levels([h for h in heats if h.size])
        title = f"{self._role_words(explorer_role)} · {explorer.label} — "
        source = explanations.explorer_source(title)
        draw_view(window.image_view, choice, patch, explorer.heat, levels, source)
        tab = self.panel.tabs
        tab.setTabText(0, f"Model {other_role}")
        tab.setTabText(1, "B − A")
        if not isinstance(other, Side):
            self.panel.view.show_placeholder(other)
            self._view_image = self._difference_image = None
            self._draw_difference(None, None, other)
            return
        if levels is not None:  # one scale for both, locked: B on A's locked levels
            follow_lock(self.panel.view, window.image_view)
        self._draw_other(other, levels)
        a, b = (other, explorer) if self.other_is_a else (explorer, other)
        self._draw_difference(a, b, "")

    def _role_words(self, role: str) -> str:
        """ "A", or "A (before)" / "A (after)" while one model is the other's base."""
        if not self.before:
            return role
        other = (role == "A") == self.other_is_a  # the compared model has this role
        before = other == (self.before == OTHER)
        return f"{role} ({'before' if before else 'after'})"

    def _other_side(self, choice: MapChoice, role: str) -> Side | str:
        """The compared model's part, or why it has none on this image."""
        window = self.window
        if self.info is None:
            return "Loading…" if self.loading else "No model to compare with: choose one above"
        key = window.session.current_key
        label = self.other_label()
        if key in self.failed:
            return f"{label} could not analyse this image: {self.failed[key]}"
        analysis = self._analysis(key)
        if analysis is None:
            return f"{label}: analysing {window.session.current.name}…"
        spec, sel = analysis.spec, window.selection
        try:
            token, _ = counterpart_token(sel.token, window.analysis.spec, spec)
        except ValueError as exc:
            return f"{label}: {exc}"
        described = get(choice.method)
        if "layer" in described.options:
            if sel.layer >= spec.num_layers:
                return f"{label} has {spec.num_layers} layers: it has no layer {sel.layer + 1}"
        if "head" in described.options:
            if sel.head is not None and sel.head >= spec.num_heads:
                return f"{label} has {spec.num_heads} heads per layer: no head {sel.head + 1}"
        if described.requires_classifier and not spec.has_classifier:
            return f"{label} has no classifier: no class {choice.method}"
        if described.class_specific:
            same = spec.class_names == window.analysis.spec.class_names
            target = choice.target if same else None
            choice = replace(choice, options=replace(choice.options, target_class=target))
        selection = Selection(sel.layer, sel.head, token)
        heat = self.maps.map(key, analysis, choice.method, choice.at(selection))
        return Side(role, label, analysis, selection, choice, heat)

    def _draw_other(self, other: Side, levels) -> None:
        from vitexplorer.gui.explanations import ViewSource, draw_view

        view, window = self.panel.view, self.window
        key = window.session.current_key
        shown = (key, id(other.analysis))
        if shown != self._view_image:
            view.set_image(other.analysis.display, other.analysis.spec.grid)
            self._view_image = shown
        name = window.session.current.name
        source = ViewSource(
            other.analysis,
            other.selection,
            f"{self._role_words(other.role)} · {other.label} — ",
            window.keep_aspect,
            lambda job: self._ask_map(key, job),
            lambda what, flat: self.explanations._notice(
                f"{other.role} {what}", f"{name}, {other.label}, {what}: {flat}."
            ),
        )
        draw_view(view, other.choice, other.patch, other.heat, levels, source)

    def _draw_difference(self, a: Side | None, b: Side | None, reason: str) -> None:
        """The difference B - A over A's image (resampled to it when the grids differ), the
        head table, and the line that says how the two compare."""
        panel, window = self.panel, self.window
        self.comparison = None
        if a is None or b is None:
            panel.difference.show_placeholder(reason)
            panel.heads.show_message(reason)
            panel.set_note("")
            return
        check = comparability(a.analysis.spec, b.analysis.spec, window.keep_aspect)
        other, explorer = (a, b) if self.other_is_a else (b, a)
        _, token_note = counterpart_token(
            window.selection.token, window.analysis.spec, other.analysis.spec
        )
        notes = [check.message, token_note]
        if other.choice.described.class_specific and other.choice.target != explorer.choice.target:
            notes.append("the two models have other classes: each explains its own prediction")
        self._draw_heads(a, b)
        view = panel.difference
        if self._difference_image != (id(a.analysis), window.session.current_key):
            view.set_image(a.analysis.display, a.analysis.spec.grid)
            self._difference_image = (id(a.analysis), window.session.current_key)
        what = caption(
            explorer.choice.method, explorer.choice.at(window.selection), window.analysis
        )
        names = f"{b.label} minus {a.label}"
        if a.heat is None or b.heat is None:
            view.clear_heat()
            view.set_selected_patch(None)
            view.title.setText(f"B − A{self._relation()} · {what}: computing…")
            panel.set_note("; ".join(n for n in notes if n))
            return
        result = compare_analyses(
            a.analysis, b.analysis, a.heat, b.heat, window.keep_aspect, (token_note,)
        )
        self.comparison = result
        panel.set_note("; ".join(n for n in (*result.notes, *notes[2:]) if n))
        largest = result.difference_levels[1] if result.difference_levels else 0.0
        levels = result.difference_levels
        if not largest:  # equal maps: a small scale around zero, and the title says so
            span = max((abs(v) for v in (result.levels or (1.0,))), default=1.0) or 1.0
            levels = (-1e-3 * span, 1e-3 * span)
        view.set_heat(result.difference, levels)
        view.set_selected_patch(a.patch)
        how = "equal maps: no difference" if not largest else f"largest |B − A| {largest:.3g}"
        resampled = ", resampled to the image" if result.resampled_to else ""
        view.title.setText(f"B − A{self._relation()}: {names} · {what}{resampled} · {how}")

    def _relation(self) -> str:
        """What B − A means, in parentheses, while one model is the other's base; else ""."""
        if not self.before:
            return ""
        a_before = self.other_is_a == (self.before == OTHER)
        return " (after minus before)" if a_before else " (before minus after)"

    def _draw_heads(self, a: Side, b: Side) -> None:
        table = self.panel.heads
        made_from = (id(a.analysis), id(b.analysis), table.sort_by)
        if made_from == table.shown:
            return
        try:
            changes = head_changes(a.analysis.statistics, b.analysis.statistics, table.sort_by)
        except ValueError as exc:
            table.show_message(f"No head table: {exc}")
            table.shown = made_from
            return
        units = distance_units_note(a.analysis.spec, b.analysis.spec)
        caption = (
            f"{self.window.session.current.name} · A: {a.label}{top_class(a.analysis)} · "
            f"B: {b.label}{top_class(b.analysis)}"
        )
        table.show_changes(changes, f"{caption} Note: {units}." if units else caption)
        table.shown = made_from

    # --- clicks and hovering ---------------------------------------------------------------------
    def _other_clicked(self, row: int, col: int) -> None:
        """A patch of the compared model's view: the same place in the explorer's (its own
        token where the grids agree, else the explorer's patch under its centre)."""
        analysis = self.analyses.get(self.window.session.current_key, (None, None))[1]
        explorer = self.window.analysis
        if analysis is None or explorer is None:
            return
        spec = analysis.spec
        token = token_for_patch(row, col, spec.grid, spec.num_prefix_tokens)
        self.window.select_token(counterpart_token(token, spec, explorer.spec)[0])

    def _difference_clicked(self, row: int, col: int) -> None:
        """The difference is drawn over A's image: a click there is a click in A's view."""
        if self.other_is_a:
            self._other_clicked(row, col)
        else:
            self.window.select_patch(row, col)

    def _hover(self, row: int, col: int, view: ImageView) -> None:
        label = self.window.hover_label
        grid = view.grid
        if row < 0 or view.heat_values.size == 0 or grid == (0, 0):
            label.setText("")
            return
        values = view.heat_values
        # a difference resampled to the image: the mean over the patch's pixels
        rows, cols = values.shape[0] / grid[0], values.shape[1] / grid[1]
        block = values[
            int(row * rows) : max(int((row + 1) * rows), int(row * rows) + 1),
            int(col * cols) : max(int((col + 1) * cols), int(col * cols) + 1),
        ]
        what = "B − A" if view is self.panel.difference else "map"
        label.setText(f"{patch_label(row, col)} · {what} {float(block.mean()):.4g}")
