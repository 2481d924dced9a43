"""Compare with another model: a second model beside the explorer's, on the same image, token,
method, layer and head (issue 13).

The two are models A and B of :mod:`vitexplorer.core.explain.model_compare`, and every difference is
B minus A. Which is which is decided once, when the other model loads, and kept until another
is chosen (a new fine-tune of the explorer's model does not turn them round): when the other
model is the explorer's model before fine-tuning it is A and the explorer's model B; any other
model is B beside the explorer's A (the first chosen). Only Swap turns them round. "Before" and
"after" are said only while one of the two is the other's base; otherwise B − A is neutral.

The other model is a second :class:`~vitexplorer.gui.session.ModelSession` (its own worker
thread, analyses and maps, as the explorer's model is the first): it is loaded there, with
progress and Cancel, and analyses the explorer's current image there; the GUI thread only
slices the analyses, as for the explorer's model. This module is a view over that session.
Both views share one colour scale by default; the difference B - A is drawn on a diverging
scale symmetric around zero (resampled to the image where the patch grids differ, by
:func:`~vitexplorer.core.explain.model_compare.compare_analyses`), and a table lists the heads whose
statistics changed most on this image
(:func:`~vitexplorer.core.explain.model_compare.head_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QWidget,
)

from vitexplorer.core.explain.maps import MapJob, caption
from vitexplorer.core.explain.method import MapChoice, get
from vitexplorer.core.explain.model_compare import (
    comparability,
    compare_analyses,
    counterpart_token,
    distance_units_note,
    head_changes,
)
from vitexplorer.core.explain.tokens import patch_for_token, token_for_patch
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.families.registry import SMALL_VIT
from vitexplorer.core.render.numbering import patch_label
from vitexplorer.gui.controls import model_choices
from vitexplorer.gui.drawing import ViewSource, draw_view, follow_lock, lock_view
from vitexplorer.gui.explorer_host import Explorer
from vitexplorer.gui.model_compare_panel import (
    ModelComparePanel,
)
from vitexplorer.gui.model_labels import (
    base_request,
    built_in,
    info_label,
    request_label,
    same_model,
    top_class,
)
from vitexplorer.gui.session import ModelSession
from vitexplorer.gui.views.common import shared_levels
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.workers import ModelCancelled, ModelFailed, ModelInfo, ModelRequest

METHOD, MODEL = "method", "model"  # Compare with: another method, or another model
CHOOSE, BEFORE, FILE = "", "before", "file"  # the model box's entries that are not a model
OTHER, EXPLORER = "other", "explorer"  # which of the two came first, when one was fine-tuned
WEIGHTS_FILTER = "Weights or checkpoint (*.safetensors *.pth *.pt *.bin)"


# --- the comparison ---------------------------------------------------------------------------


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
    changed = Signal()  # what the comparison draws changed: the window redraws

    def __init__(self, context: Explorer, explanations) -> None:
        super().__init__(context.parent)
        self.context, self.explanations = context, explanations
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
        # the compared model: a second model session, reading the explorer's decoded images
        self.session = ModelSession("vitexplorer-compare-model", context.decoded, self)
        # which came first: OTHER (the compared model is the one the explorer's was fine-tuned
        # from), EXPLORER (the compared model was fine-tuned from the explorer's), or "" (none
        # known: B − A is said neutrally)
        self.before = ""
        self.other_first = False  # the compared model is A: decided when it loads, then kept
        self._labels: dict[tuple, str] = {}  # (which model, its generation, ...) -> its name
        self.other_base: tuple[ModelRequest | None, str] = (None, "")
        self.swapped = False
        self.base: tuple[ModelRequest | None, str] = (None, "no model is loaded")
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
        session = self.session
        session.ready.connect(self._model_ready)
        session.failed.connect(self._model_failed)
        session.download_offered.connect(self._download_offered)
        session.download_progress.connect(self._download_progress)
        session.analysis_ready.connect(self._analysis_ready)
        session.analysis_failed.connect(self._analysis_failed)
        session.map_arrived.connect(self._map_arrived)
        session.map_failed.connect(self._map_failed)
        panel.view.patch_clicked.connect(self._other_clicked)
        panel.difference.patch_clicked.connect(self._difference_clicked)
        panel.view.arrow_pressed.connect(context.host.move_patch)
        panel.difference.arrow_pressed.connect(context.host.move_patch)
        panel.view.patch_hovered.connect(lambda r, c: self._hover(r, c, panel.view))
        panel.difference.patch_hovered.connect(lambda r, c: self._hover(r, c, panel.difference))
        self._show_empty()

    def connect_views(self) -> None:
        """The explorer's overlay settings apply to these views too."""
        bar = self.context.view_bar
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
                self.context.parent, "Compare with a weights file or checkpoint", "", WEIGHTS_FILTER
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
        model = self.context.model
        return model.request.device if model is not None else "auto"

    # --- the compared model's session ----------------------------------------------------------
    @property
    def info(self) -> ModelInfo | None:
        """The compared model, once loaded."""
        return self.session.info

    @property
    def loading(self) -> ModelRequest | None:
        """A load under way."""
        return self.session.loading_request

    @property
    def analyses(self):  # OrderedDict[str, ImageAnalysis]
        """The compared model's analyses, by image key (the last few)."""
        return self.session.analyses

    @property
    def failed(self) -> dict[str, str]:
        """Image key -> why the compared model could not analyse it."""
        return self.session.failed_images

    @property
    def maps(self):  # MapCache
        return self.session.maps

    def load(self, request: ModelRequest) -> None:
        """Load ``request`` as the compared model, in its session's worker."""
        self.session.request_model(request)
        self.panel.show_state(f"Loading {request_label(request)}…", busy=True)

    def set_feed(self, feed) -> None:  # core.explorer.state.Feed
        """Images are fed another way (crop or whole): analysed again when drawn."""
        self.session.set_feed(feed)
        self._view_image = self._difference_image = None

    def _retire(self) -> None:
        """The compared model goes: its session's worker stops without being waited for."""
        self.session.retire()
        self.before, self.swapped, self.other_first = "", False, False
        self._view_image = self._difference_image = None

    def stop(self) -> None:
        """The window closes: every worker of compared models stops (each waited for a
        moment, as the explorer's own)."""
        self.session.stop()

    def threads(self) -> list:  # list[WorkerThread]
        """The compared models' worker threads still held (tests check they end)."""
        return self.session.threads()

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
        self.other_base = base_request(info)
        self.before = self._which_before()
        self.other_first = self.before == OTHER  # kept while this model stays
        self.swapped = False
        self._view_image = self._difference_image = None
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

    def _model_failed(self, outcome: ModelFailed | ModelCancelled) -> None:
        what = request_label(outcome.request)
        self.panel.model_box.setCurrentIndex(0)  # the model that stays, or none
        stays = f"; {self.other_label()} stays" if self.info is not None else ""
        if isinstance(outcome, ModelCancelled):
            self.panel.show_state(f"Download of {what} cancelled{stays}.")
        else:
            text = " ".join(outcome.message.split())  # one line, whatever the message holds
            self.panel.show_state(f"Could not load {what}: {text}{stays}", error=True)
        self.model_failed.emit(self.panel.status.full_text)

    def _download_offered(self, offer) -> None:  # workers.DownloadOffer
        self._offer = offer
        self.panel.show_state(
            f"{offer.description} are not downloaded ({offer.size_mb:.0f} MB)", download=True
        )

    def _download(self) -> None:
        if self._offer is not None:
            self.load(replace(self._offer.request, allow_download=True))

    def _download_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.panel.progress.setRange(0, 1000)
            self.panel.progress.setValue(int(1000 * done / total))

    # --- the compared model's analyses ------------------------------------------------------------
    def _analysis_ready(self, done) -> None:  # workers.AnalysisDone
        if done.key not in self.context.images.entries or not self.session.keep_analysis(done):
            return  # removed since, a replaced model's, or made the other way
        if done.key == self.context.current_key:
            self._redraw()

    def _analysis_failed(self, key: str, message: str) -> None:
        self.failed[key] = " ".join(message.split())
        if key == self.context.current_key:
            self._redraw()

    def _map_arrived(self, key: str) -> None:
        if key == self.context.current_key:
            self._redraw()

    def _map_failed(self, failed) -> None:  # workers.MapFailed
        self.panel.show_state(
            f"Could not compute model B's {failed.job.method}: {failed.message}", error=True
        )

    def _analysis(self, key: str):  # ImageAnalysis | None
        """The compared model's analysis of image ``key``, asked of its worker when missing."""
        return self.session.analysis(key, self.context.images.entries[key].source)

    def _ask_map(self, key: str, job: MapJob) -> None:
        self.session.ask_map(key, self.context.images.entries[key].source, job)

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
        if self.context.analysis is not None and self.explanations.comparing and self.active:
            self.changed.emit()  # the window's subscriber redraws
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
        return self._label("explorer", self.context.model)

    def _label(self, which: str, info: ModelInfo | None) -> str:
        if info is None:
            return ""
        run = self.context.host.adopted_run()
        key = (which, info.generation, info.weights_file, id(run) if info.fine_tuned else 0)
        if key not in self._labels:
            self._labels = {k: v for k, v in self._labels.items() if k[0] != which}
            self._labels[key] = info_label(info, run)
        return self._labels[key]

    def _which_before(self) -> str:
        """Whether one of the two models was fine-tuned from the other (see ``before``)."""
        if self.info is None:
            return ""
        if same_model(self.base[0], self.info.request):
            return OTHER
        explorer = self.context.model
        if explorer is not None and not explorer.fine_tuned:  # else its request is its base's
            if same_model(self.other_base[0], explorer.request):
                return EXPLORER
        return ""

    def draw(self, patch) -> None:
        """Both models' maps of the explorer's choice on the current image, the difference
        B - A and the head table; the explorer's own view included."""
        ctx, explanations = self.context, self.explanations
        choice = explanations.method_bar.choice()
        explorer_role, other_role = ("B", "A") if self.other_is_a else ("A", "B")
        explorer = Side(
            explorer_role,
            self.explorer_label(),
            ctx.analysis,
            ctx.state,
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
        draw_view(ctx.image_view, choice, patch, explorer.heat, levels, source)
        tab = self.panel.tabs
        tab.setTabText(0, f"Model {other_role}")
        tab.setTabText(1, "B − A")
        if not isinstance(other, Side):
            self.panel.view.show_placeholder(other)
            self._view_image = self._difference_image = None
            self._draw_difference(None, None, other)
            return
        if levels is not None:  # one scale for both, locked: B on A's locked levels
            follow_lock(self.panel.view, ctx.image_view)
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
        ctx = self.context
        if self.info is None:
            return "Loading…" if self.loading else "No model to compare with: choose one above"
        key = ctx.current_key
        label = self.other_label()
        if key in self.failed:
            return f"{label} could not analyse this image: {self.failed[key]}"
        analysis = self._analysis(key)
        if analysis is None:
            return f"{label}: analysing {ctx.current.name}…"
        spec, sel = analysis.spec, ctx.state
        try:
            token, _ = counterpart_token(sel.token, ctx.analysis.spec, spec)
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
            same = spec.class_names == ctx.analysis.spec.class_names
            target = choice.target if same else None
            choice = replace(choice, options=replace(choice.options, target_class=target))
        selection = Selection(sel.layer, sel.head, token)
        heat = self.maps.map(key, analysis, choice.method, choice.at(selection))
        return Side(role, label, analysis, selection, choice, heat)

    def _draw_other(self, other: Side, levels) -> None:
        view, ctx = self.panel.view, self.context
        key = ctx.current_key
        shown = (key, id(other.analysis))
        if shown != self._view_image:
            view.set_image(other.analysis.display, other.analysis.spec.grid)
            self._view_image = shown
        name = ctx.current.name
        source = ViewSource(
            other.analysis,
            other.selection,
            f"{self._role_words(other.role)} · {other.label} — ",
            ctx.state.feed,
            lambda job: self._ask_map(key, job),
            lambda what, flat: self.explanations._notice(
                f"{other.role} {what}", f"{name}, {other.label}, {what}: {flat}."
            ),
        )
        draw_view(view, other.choice, other.patch, other.heat, levels, source)

    def _draw_difference(self, a: Side | None, b: Side | None, reason: str) -> None:
        """The difference B - A over A's image (resampled to it when the grids differ), the
        head table, and the line that says how the two compare."""
        panel, ctx = self.panel, self.context
        self.comparison = None
        if a is None or b is None:
            panel.difference.show_placeholder(reason)
            panel.heads.show_message(reason)
            panel.set_note("")
            return
        feed = ctx.state.feed
        check = comparability(a.analysis.spec, b.analysis.spec, feed)
        other, explorer = (a, b) if self.other_is_a else (b, a)
        _, token_note = counterpart_token(ctx.state.token, ctx.analysis.spec, other.analysis.spec)
        notes = [check.message, token_note]
        if other.choice.described.class_specific and other.choice.target != explorer.choice.target:
            notes.append("the two models have other classes: each explains its own prediction")
        self._draw_heads(a, b)
        view = panel.difference
        if self._difference_image != (id(a.analysis), ctx.current_key):
            view.set_image(a.analysis.display, a.analysis.spec.grid)
            self._difference_image = (id(a.analysis), ctx.current_key)
        what = caption(explorer.choice.method, explorer.choice.at(ctx.state), ctx.analysis)
        names = f"{b.label} minus {a.label}"
        if a.heat is None or b.heat is None:
            view.clear_heat()
            view.set_selected_patch(None)
            view.title.setText(f"B − A{self._relation()} · {what}: computing…")
            panel.set_note("; ".join(n for n in notes if n))
            return
        result = compare_analyses(a.analysis, b.analysis, a.heat, b.heat, feed, (token_note,))
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
            f"{self.context.current.name} · A: {a.label}{top_class(a.analysis)} · "
            f"B: {b.label}{top_class(b.analysis)}"
        )
        table.show_changes(changes, f"{caption} Note: {units}." if units else caption)
        table.shown = made_from

    # --- clicks and hovering ---------------------------------------------------------------------
    def _other_clicked(self, row: int, col: int) -> None:
        """A patch of the compared model's view: the same place in the explorer's (its own
        token where the grids agree, else the explorer's patch under its centre)."""
        analysis = self.analyses.get(self.context.current_key)
        explorer = self.context.analysis
        if analysis is None or explorer is None:
            return
        spec = analysis.spec
        token = token_for_patch(row, col, spec.grid, spec.num_prefix_tokens)
        self.context.host.select_token(counterpart_token(token, spec, explorer.spec)[0])

    def _difference_clicked(self, row: int, col: int) -> None:
        """The difference is drawn over A's image: a click there is a click in A's view."""
        if self.other_is_a:
            self._other_clicked(row, col)
        else:
            self.context.host.select_patch(row, col)

    def _hover(self, row: int, col: int, view: ImageView) -> None:
        grid = view.grid
        if row < 0 or view.heat_values.size == 0 or grid == (0, 0):
            self.context.host.hover_text("")
            return
        values = view.heat_values
        # a difference resampled to the image: the mean over the patch's pixels
        rows, cols = values.shape[0] / grid[0], values.shape[1] / grid[1]
        block = values[
            int(row * rows) : max(int((row + 1) * rows), int(row * rows) + 1),
            int(col * cols) : max(int((col + 1) * cols), int(col * cols) + 1),
        ]
        what = "B − A" if view is self.panel.difference else "map"
        self.context.host.hover_text(f"{patch_label(row, col)} · {what} {float(block.mean()):.4g}")
