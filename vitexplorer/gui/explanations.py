"""The explorer's explanations: the method bar and the side-by-side compare view (another
method, or another model: :mod:`vitexplorer.gui.model_compare_view`), maps asked of the worker
(methods that need the model), the model analytics tab, and File > Export view. Wiring only: the
maps come from :mod:`vitexplorer.core.explain.maps`, the statistics from core.explain."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QSplitter, QVBoxLayout, QWidget

from vitexplorer.core.explain.maps import MapCache, MapJob, caption
from vitexplorer.core.explain.method import Computation, MapChoice, get
from vitexplorer.core.explain.methods.attention import ATTENTION
from vitexplorer.core.explain.tokens import attention_matrix
from vitexplorer.core.io.folders import image_paths
from vitexplorer.core.render.scales import uniform_mark
from vitexplorer.gui.all_methods import AllMethodsView
from vitexplorer.gui.analytics_tab import AnalyticsTab
from vitexplorer.gui.controls import NOT_APPLIED
from vitexplorer.gui.drawing import ViewSource, draw_view, follow_lock, lock_view
from vitexplorer.gui.explorer_host import Explorer
from vitexplorer.gui.method_bar import MethodBar
from vitexplorer.gui.model_compare_view import ModelCompare
from vitexplorer.gui.views.common import shared_levels
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.workers import FolderStatsDone, ModelInfo, StructureDone


def folder_images(folder: str) -> list[str]:
    """The images that the analytics tab's folder average reads: every image file under
    ``folder`` (subfolders too); none when it cannot be listed."""
    try:
        return image_paths(folder, recursive=True)
    except OSError:
        return []


class Explanations(QObject):
    """Builds the method bars, the compare panel and the analytics tab for ``window`` (a
    MainWindow, which keeps them as attributes) and answers their signals."""

    redraw_wanted = Signal()  # the views are to be drawn again though the state did not change

    def __init__(self, context: Explorer) -> None:
        super().__init__(context.parent)
        self.context = context
        self.session = context.model_session  # the explorer's model: its worker and maps
        self.state = context.state
        self.noticed: set[tuple[str, str]] = set()  # (image key, what) already in the notice bar
        self.method_bar = MethodBar()
        self.compare_bar = MethodBar(compare=False, title="Compare with")
        self.compare_bar.set_method(self.compare_bar.method_box.itemData(1))  # the second
        self.compare_view = ImageView()
        self.models = ModelCompare(context, self)  # Compare with: another model
        self.compare_panel = QWidget()
        layout = QVBoxLayout(self.compare_panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.models.mode_row)
        layout.addWidget(self.compare_bar)
        layout.addWidget(self.compare_bar.options_bar)
        layout.addWidget(self.compare_view, 1)
        layout.addWidget(self.models.panel, 1)
        self.compare_panel.setVisible(False)
        self.explorer = QSplitter(Qt.Horizontal)
        self.explorer.addWidget(context.image_view)
        self.explorer.addWidget(self.compare_panel)
        self.all_methods = AllMethodsView(self)  # every method at once, instead of the views
        self.all_methods.setVisible(False)
        self.explorer.addWidget(self.all_methods)
        self.analytics = AnalyticsTab()
        self.worker = None  # the model worker, once connected (folders and structure)
        self.generation: int | None = None  # the model the views show
        self.structure_asked: int | None = None  # the model whose structure was asked for
        self.matrix_method = ATTENTION.name  # what the matrix panel shows: attention or rollout
        self._matrix_shown: tuple | None = None  # its settings, for the image on screen

    def connect_views(self) -> None:
        ctx = self.context
        ctx.view_bar.opacity_changed.connect(self.compare_view.set_opacity)
        ctx.view_bar.grid_toggled.connect(self.compare_view.set_grid_visible)
        ctx.view_bar.scale_locked.connect(ctx.image_view.lock_scale)
        ctx.view_bar.scale_locked.connect(
            lambda locked: lock_view(self.compare_view, locked, self.comparing_methods)
        )
        self.method_bar.choice_changed.connect(self._method_changed)
        self.method_bar.compare_toggled.connect(self.show_compare)
        self.method_bar.all_methods_toggled.connect(self.show_all_methods)
        self.method_bar.method_chosen.connect(self._asked_again)
        self.compare_bar.method_chosen.connect(self._asked_again)
        self.compare_bar.choice_changed.connect(self._method_changed)
        self.method_bar.same_scale_toggled.connect(self._method_changed)
        self.models.mode_changed.connect(self._compare_mode_changed)
        self.models.connect_views()
        self.compare_view.patch_clicked.connect(ctx.host.select_patch)
        self.compare_view.patch_hovered.connect(self._hover_compare)
        self.compare_view.arrow_pressed.connect(ctx.host.move_patch)
        self.analytics.head_selected.connect(self.open_head)
        self.analytics.folder_requested.connect(self.average_folder)
        self._method_changed()  # the state starts with the bars' choices

    @property
    def maps(self) -> MapCache:
        """What the open images' maps are read from (the explorer's session's)."""
        return self.session.maps

    @property
    def maps_asked(self) -> set[tuple[str, MapJob]]:
        return self.session.maps_asked

    def connect_worker(self, worker) -> None:
        """The worker's folder averages and model structure, for the analytics tab (its maps
        and analyses reach the window through the session)."""
        worker.folder_progress.connect(self.analytics.set_folder_progress)
        worker.folder_done.connect(self._folder_done)
        self.analytics.folder_cancelled.connect(worker.cancel_folder)
        worker.structure_ready.connect(self._structure_ready)
        self.analytics.shown.connect(self._ask_structure)
        self.worker = worker

    def model_ready(self, info: ModelInfo) -> None:
        spec = info.spec
        for bar in (self.method_bar, self.compare_bar):
            bar.set_num_layers(spec.num_layers)
            bar.set_predictions([])  # class indices of the old model mean nothing now
            bar.set_classes(spec.class_names if spec.has_classifier else ())
            bar.set_classifier_available(spec.has_classifier)
        self.noticed.clear()
        self.context.notice.withdraw("model")  # what the old model's output said
        self.analytics.clear_statistics()
        self.analytics.set_model_facts(spec, info.weights_file, info.device)
        self.analytics.set_aspect(self.state.feed.aspect)
        # the model's structure is read when the analytics tab first needs it, not before the
        # explorer may use the model
        self.generation = info.generation
        self.models.explorer_model_changed(info)
        self.analytics.show_structure_message(
            f"Reading {spec.display_name}'s position embeddings and patch filters\u2026"
        )
        self._ask_structure()

    def _ask_structure(self) -> None:
        """Ask the worker for the current model's structure, once, if the tab is on screen."""
        if (
            self.worker is None
            or self.generation is None
            or self.structure_asked == self.generation
            or not self.analytics.isVisible()
        ):
            return
        self.structure_asked = self.generation
        self.worker.request_structure()

    def _structure_ready(self, done: StructureDone) -> None:
        if done.generation != self.generation:
            return  # an older model's: the tab asks again for the current one
        if done.structure is not None:
            self.analytics.set_structure(*done.structure)
        else:
            name = getattr(self.context.model.spec, "display_name", "The model")
            self.analytics.show_structure_message(
                f"{name}: its position embeddings and patch filters cannot be read ({done.reason})"
            )

    def show_analysis(self, analysis) -> None:  # ImageAnalysis
        self._matrix_shown = None  # another image, or the same analysed anew
        for bar in (self.method_bar, self.compare_bar):
            bar.blockSignals(True)
            bar.set_predictions(analysis.predictions)
            bar.blockSignals(False)
        self.compare_view.set_image(analysis.display, analysis.spec.grid)
        self.models.show_analysis(analysis)
        self.analytics.set_image_statistics(analysis.statistics, self.context.current.name)
        from vitexplorer.core.explain.analysis import constant_output  # torch is loaded by now

        reason = constant_output(analysis.logits) if analysis.spec.has_classifier else None
        if reason:
            self._notice("output", f"{self.context.current.name}: {reason}.")
        # what the bars now hold (this image's classes), for the state's next change; the
        # window draws the image right after
        self.state.update(choice=self.method_bar.choice(), compare_choice=self.compare_bar.choice())

    def _notice(self, what: str, message: str) -> None:
        """``message`` in the window's notice bar, once per image and ``what``."""
        key = (self.context.current_key, what)
        if key not in self.noticed:
            self.noticed.add(key)
            self.context.notice.add(message, tag="model")  # it holds for this model only

    def draw(self, patch) -> None:
        """The overlays of the main view and, when shown, the compare view; with "Same scale",
        both on one colour scale spanning both maps. Compared with another model, that model's
        views draw them (:class:`~vitexplorer.gui.model_compare_view.ModelCompare`)."""
        sel = self.context.state
        self.analytics.set_selected(sel.layer, sel.head)
        self.all_methods.refresh()  # only while on screen, and when what it shows changed
        if self.comparing and self.models.active:
            self.models.draw(patch)
            return
        views = [(self.context.image_view, self.method_bar.choice())]
        if self.comparing_methods:
            views.append((self.compare_view, self.compare_bar.choice()))
        heats = [self._heat(choice) for _, choice in views]
        levels = None
        shown = [heat for heat in heats if heat is not None and heat.size]
        if len(shown) == 2 and self.same_scale:
            levels = shared_levels(shown)
        for (view, choice), heat in zip(views, heats, strict=True):
            if view is self.compare_view and levels is not None:  # one scale, also locked
                follow_lock(view, self.context.image_view)
            self._draw(view, choice, patch, heat, levels)

    def _asked_again(self, _method: str) -> None:
        """A method picked from the list (the one shown, too): maps the person cancelled are
        computed again."""
        if self.session.maps_cancelled:
            self.session.again()
            self.redraw_wanted.emit()

    def show_all_methods(self, shown: bool) -> None:
        """Every method at once in place of the image and compare views, or those again."""
        self.context.image_view.setVisible(not shown)
        self.compare_panel.setVisible(not shown and self.method_bar.compare_box.isChecked())
        self.all_methods.setVisible(shown)  # computed when shown
        self.state.update(comparing=self.comparing)

    @property
    def same_scale(self) -> bool:
        box = self.method_bar.same_scale_box
        return box is not None and box.isChecked()

    def _method_changed(self, _choice: object = None) -> None:
        """A method bar's method, option or scale changed: the state says so (and the window
        redraws)."""
        self.update_controls()
        self.state.update(
            choice=self.method_bar.choice(),
            compare_choice=self.compare_bar.choice(),
            same_scale=self.same_scale,
        )

    def update_controls(self) -> None:
        """The layer and head apply while a shown image draws raw attention; under rollout or
        relevance alone they are disabled, saying why."""
        methods = [self.method_bar.choice().method]
        if self.comparing_methods:
            methods.append(self.compare_bar.choice().method)
        applies = [m for m in methods if m not in NOT_APPLIED]
        self.context.view_bar.set_applies((applies or methods)[0])

    def draw_panels(self) -> None:
        """The Heads and Attention matrix panels and their captions. The heads always show raw
        attention; the matrix follows the method where it has one (rollout: every token's row),
        and is set again only when what it shows changed."""
        ctx = self.context
        analysis, sel, key = ctx.analysis, ctx.state, ctx.current_key
        choice = self.method_bar.choice()
        method, options = choice.method, choice.at(sel)
        heads = "mean of heads" if sel.head is None else f"head {sel.head + 1}"
        token = analysis.spec.token_label(sel.token)
        raw = "Raw attention" if method == ATTENTION.name else f"Raw attention, not {method}"
        ctx.heads_panel.set_caption(f"{raw} · layer {sel.layer + 1} · {token}")
        compute = get(method).computation
        # a method with every token's row (rollout): it overrides Computation.whole
        whole = type(compute).whole is not Computation.whole
        if whole:
            shown = (method, *compute.key(options, analysis.spec))
            what = caption(method, options, analysis)  # "rollout · mean of heads, …"
            words = f"{what[:1].upper()}{what[1:]} · row: the query token"
        else:
            shown = (ATTENTION.name, sel.layer, sel.head)
            words = f"{raw} · layer {sel.layer + 1}, {heads}"
        ctx.matrix_panel.set_caption(words)
        if shown != self._matrix_shown:
            if whole:
                matrix = self.maps.whole(key, analysis, method, options)
            else:
                matrix = attention_matrix(analysis.attention, sel.layer, sel.head)
            # every row a distribution over the matrix's tokens: 1/N marked (never relevance)
            ctx.matrix_view.set_matrix(matrix, uniform_mark(shown[0], matrix.shape[0]))
            self._matrix_shown = shown
        self.matrix_method = shown[0]

    def _hover_compare(self, row: int, col: int) -> None:
        self.context.host.hover_patch(row, col, self.compare_view, self.compare_bar)

    def _heat(self, choice: MapChoice):  # np.ndarray | None
        """The current image's map for ``choice``; None while the worker computes it."""
        ctx = self.context
        options = choice.at(ctx.state)
        return self.maps.map(ctx.current_key, ctx.analysis, choice.method, options)

    def _draw(self, view: ImageView, choice: MapChoice, patch, heat, levels) -> None:
        """One view of the explorer's model: see :func:`draw_view`."""
        draw_view(view, choice, patch, heat, levels, self.explorer_source())

    def explorer_source(self, title: str | None = None) -> ViewSource:
        """The explorer's analysis and selection, for :func:`draw_view`; side by side, each
        title names only its method (the image is the same), else the image too."""
        ctx = self.context
        name = ctx.current.name
        if title is None:
            title = "" if self.comparing else f"{name} — "
        key = ctx.current_key
        return ViewSource(
            ctx.analysis,
            ctx.state,
            title,
            self.state.feed,
            lambda job: self._ask_map(key, job),
            lambda what, flat: self._notice(what, f"{name}, {what}: {flat}."),
            lambda job: self.session.cancelled(key, job),
        )

    def show_compare(self, shown: bool) -> None:
        """The second view, side by side, with its own method or class, or another model."""
        self.compare_panel.setVisible(shown)
        self._compare_mode_changed()

    def _compare_mode_changed(self) -> None:
        """Compare with another method (the compare bar and view) or another model (its
        panel); the method bar's "Same scale" is the method comparison's (a model comparison
        has its own, on by default)."""
        models = self.models.active
        self.compare_bar.setVisible(not models)
        self.compare_view.setVisible(not models)
        self.models.panel.setVisible(models)
        self.method_bar.show_same_scale(not (models and self.comparing))
        if self.comparing:  # the two views side by side, as wide as each other
            half = max(self.explorer.width() // 2, 1)
            self.explorer.setSizes([half, half])
        self.update_controls()
        analysis = self.context.analysis
        if analysis is not None and self.comparing_methods:
            self.compare_view.set_image(analysis.display, analysis.spec.grid)
        # the window redraws when what the views show changed (its subscriber)
        self.state.update(comparing=self.comparing, compare_with="model" if models else "method")

    @property
    def comparing(self) -> bool:
        """Compare is on, whether or not the explorer's tab is the one on screen (the views
        are kept current behind another tab, so nothing stale shows when it comes back)."""
        return not self.compare_panel.isHidden()

    @property
    def comparing_methods(self) -> bool:
        """Compare is on with another method (or class) of the explorer's model."""
        return self.comparing and not self.models.active

    def show_placeholder(self) -> None:
        """The explorer waits for an analysis: the compare views show nothing old."""
        self.compare_view.show_placeholder("")
        self.models.show_placeholder()

    def before_close(self) -> None:
        """The window closes: the compared model's worker stops."""
        self.models.stop()

    def _ask_map(self, key: str, job: MapJob) -> None:
        """A map the explorer's model is still to compute, asked of its session once."""
        entry = self.context.images.entries.get(key)
        if entry is not None:
            self.session.ask_map(key, entry.source, job)

    # --- model analytics ----------------------------------------------------------------------
    def open_head(self, layer: int, head: int) -> None:
        """A head picked in the analytics tab: its raw attention in the explorer."""
        self.method_bar.set_method(ATTENTION.name)
        self.context.host.show_explorer()
        analysis = self.context.analysis
        if analysis is None:
            self.state.head = head
        else:  # one change, one redraw
            self.state.update(head=head, layer=max(0, min(layer, analysis.spec.num_layers - 1)))

    def average_folder(self, folder: str) -> None:
        """Head statistics averaged over a folder's images (subfolders too), in the worker."""
        paths = folder_images(folder)
        if self.context.model_session.worker is None or self.context.model is None:
            self.analytics.stop_folder_progress("Load a model first.")
        elif not paths:
            self.analytics.stop_folder_progress(f"No images in {folder}.")
        else:
            self.analytics.set_folder_progress(0, len(paths))
            self.context.model_session.worker.request_folder_statistics(folder, paths)

    def _folder_done(self, done: FolderStatsDone) -> None:
        skipped = f", {len(done.skipped)} unreadable skipped" if done.skipped else ""
        if done.statistics is None or (
            self.context.model and done.generation != self.context.model.generation
        ):
            why = "cancelled" if done.cancelled else "no image could be analysed"
            self.analytics.stop_folder_progress(f"Folder average {why}{skipped}.")
            return
        self.analytics.set_folder_statistics(done.statistics, done.folder, done.images)
        if done.cancelled or done.skipped:
            state = f"cancelled after {done.images} images" if done.cancelled else "done"
            self.analytics.stop_folder_progress(f"Folder average {state}{skipped}.")

    # --- export -----------------------------------------------------------------------------
    def export_view(self) -> None:
        """File > Export view: the overlay (and the compare view) as PNG and SVG, the maps as
        .npy and a method card each, named after the image and the method."""
        if self.context.analysis is None:
            return
        stem = Path(self.context.current.name).stem or "image"
        method = self.method_bar.choice().method
        folder = self.context.settings.value("export/folder", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(
            self.context.parent,
            "Export view (PNG, SVG, the map as .npy and a JSON method card)",
            str(Path(str(folder)) / f"{stem}.{method}.png"),
            "PNG image (*.png)",
        )
        if not path:
            return
        from vitexplorer.gui.export import refuse_overwrite, saved_scale, view_paths

        scale = saved_scale(self.context.settings)
        base = Path(path)
        if base.suffix.lower() == ".png":
            base = base.with_suffix("")
        outputs = view_paths(base) + view_paths(base.with_name(f"{base.name}.compare"))
        if refuse_overwrite(self.context.parent, outputs, "Export view"):
            return
        try:
            written = self.export_to(base, scale)
        except OSError as exc:
            self.context.host.show_message(
                "Could not export the view", f"{base}: {exc.strerror or exc}"
            )
            return
        self.context.settings.setValue("export/folder", str(base.parent))
        self.context.host.say(
            f"Exported {len(written)} files: {', '.join(p.name for p in written)}", 10000
        )

    def export_to(self, base: Path, scale: float = 2) -> list[Path]:
        """Write the views as ``base``.png/.svg/.npy/.json (the compare view as
        ``base``.compare.*), each picture ``scale`` times its size on screen and titled as the
        command line's figures; returns the files written."""
        from types import SimpleNamespace

        from vitexplorer.core.explain.card import map_card
        from vitexplorer.core.explain.provenance import json_ready
        from vitexplorer.gui.export import export_view, titled

        analysis, sel, entry = (
            self.context.analysis,
            self.context.state,
            self.context.current,
        )
        info = self.context.model
        facts = SimpleNamespace(
            spec=analysis.spec,
            weights_file=None if info.weights_file is None else Path(info.weights_file),
            device=info.device,
        )
        views = [(base, self.context.image_view, self.method_bar)]
        if self.comparing_methods:
            views.append(
                (base.with_name(f"{base.name}.compare"), self.compare_view, self.compare_bar)
            )
        written: list[Path] = []
        for target, view, bar in views:
            if view.heat_values.size == 0:
                continue  # a map the worker is still computing
            choice = bar.choice()
            subtitle = f"{analysis.spec.display_name} · {entry.name}"
            prediction = analysis.predictions[0] if analysis.predictions else None
            card = map_card(
                facts,
                choice.method,
                choice.at(sel),
                analysis,
                view.heat_values,
                entry.source if isinstance(entry.source, str) else entry.name,
                # how the input was made: the model's crop, or the whole image on a grid
                {
                    "aspect": self.state.feed.aspect,
                    "grid": list(analysis.spec.grid),
                },
                {
                    "subtitle": subtitle,
                    "prediction": {
                        "index": prediction.index,
                        "name": prediction.name,
                        "probability": prediction.probability,
                    }
                    if prediction
                    else None,  # an image encoder has no classifier
                },
            )
            title = card["title"]
            card = json_ready(card)[0]  # a probability that is not finite is null: valid JSON
            with titled(view.title, title, subtitle):
                written += export_view(target, view.scene(), view.heat_values, card, scale)
        return written
