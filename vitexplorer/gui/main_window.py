"""The main window: assembly and wiring of the views, the controls and the model worker.

Every interaction after an image's forward pass (click a patch, change layer or head) slices the
stored :class:`~vitexplorer.core.explain.analysis.ImageAnalysis` with ``core.explain``; no torch
here.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import urllib.parse
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QDataStream,
    QIODevice,
    QPoint,
    QRect,
    QSettings,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from vitexplorer import __version__
from vitexplorer.core.explain.tokens import head_maps, token_for_patch
from vitexplorer.core.explorer.decoded import DecodedImages
from vitexplorer.core.explorer.session import ImageSession, expand_paths
from vitexplorer.core.explorer.state import DRAWN, ExplorerState
from vitexplorer.core.io.folders import IMAGE_SUFFIXES
from vitexplorer.core.models import spec as specs
from vitexplorer.core.models.families.registry import family_named, info_for
from vitexplorer.core.models.feed import CROP, WHOLE
from vitexplorer.core.models.spec import DEMO, DEMO_LABEL
from vitexplorer.core.render.numbering import patch_label
from vitexplorer.core.render.numbering import shown as number
from vitexplorer.gui.controls import NO_MODEL, ModelBar, ViewBar
from vitexplorer.gui.dialogs import Choice, DownloadProgress, FamilyPicker, NoModelBar, host
from vitexplorer.gui.explanations import Explanations
from vitexplorer.gui.explorer_host import Explorer
from vitexplorer.gui.finetune_tab import FinetuneTab
from vitexplorer.gui.previews import PreviewLoader
from vitexplorer.gui.session import ModelSession
from vitexplorer.gui.views.head_grid import MEAN, HeadGridView
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.views.matrix_view import AttentionMatrixView
from vitexplorer.gui.views.panels import Captioned, NoticeBar, PredictionsPanel, ThumbnailStrip
from vitexplorer.gui.workers import (
    AnalysisDone,
    DownloadFailed,
    DownloadOffer,
    MapCancelled,
    MapFailed,
    MapProgress,
    ModelCancelled,
    ModelFailed,
    ModelInfo,
    ModelRequest,
)

IMAGE_FILTER = "Images ({})".format(" ".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES))
DEFAULT_MODEL = ModelRequest("vit_b_16", "default", "auto")
MAX_RECENT = 10
ADD_CHUNK = 500  # images added to the strip per turn of the event loop
DEFAULT_SIZE = QSize(1400, 900)
# The saved dock and toolbar layout is used only by the version of the app that saved it (and
# this layout's number, raised when the docks or toolbars change): another's is ignored.
LAYOUT_VERSION = 4  # 4: the method options on a row of their own
LAYOUT_KEY = f"{__version__}/{LAYOUT_VERSION}"
GEOMETRY_MAGIC = 0x1D9D0CB  # QWidget.saveGeometry's first four bytes


# photos in vitexplorer.resources that the demo model classifies right (CIFAR-10 classes); the
# first is the one the app opens on
SAMPLES = {
    "container-ship.jpg": "Container ship",
    "sports-car.jpg": "Sports car",
    "robin.jpg": "Robin (a bird)",
    "border-collie.jpg": "Border collie (a dog)",
}


def sample_image_path(name: str = "sample.png") -> str:
    """A bundled photo (the package vitexplorer.resources); by default the cat of the tests."""
    return str(files("vitexplorer.resources") / name)


def greeting_image_path() -> str:
    """The photo the app opens on: one the demo model gets right."""
    return sample_image_path(next(iter(SAMPLES)))


def local_path(url: QUrl) -> str:
    """The file a ``file:`` URL names, exactly: a name whose bytes are not UTF-8 comes back as
    Python spells it (surrogate escapes), where ``toLocalFile`` would put U+FFFD in their place
    and name no file."""
    if os.name == "nt" or url.host():
        return url.toLocalFile()
    raw = urllib.parse.unquote_to_bytes(url.path(QUrl.ComponentFormattingOption.FullyEncoded))
    return os.fsdecode(raw)


class MainWindow(QMainWindow):
    analysis_shown = Signal(str)  # key of the image now on screen
    image_failed = Signal(str, str)  # key, message
    model_changed = Signal(object)  # ModelInfo
    model_failed = Signal(str)  # message, after it is shown

    def __init__(
        self, settings: QSettings | None = None, model_request: ModelRequest | None = None
    ) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self.setWindowTitle("vitexplorer")
        self.setAcceptDrops(True)
        self._default_geometry()
        self.session = ImageSession()
        self._loading = False  # a model load is under way
        # what the views show (evented: the window and the views subscribe to its changes)
        self.state = ExplorerState()
        self.selection = self.state  # its layer, head and token
        self.images = DecodedImages()  # one decode per image for both models' jobs
        # the explorer's model: its worker, its info and its maps (a compared model is another)
        self.model_session = ModelSession("vitexplorer-model", self.images, self)
        self._requested: set[str] = set()  # images queued with the worker for this model
        self._progress: DownloadProgress | None = None
        self.message_box: QMessageBox | None = None
        self._offer: DownloadOffer | None = None  # the last download offered
        self.help_window = None  # Help > How to use, made when first asked for
        self.family_picker: FamilyPicker | None = None  # the timm or Hugging Face list
        self._showing_demo_offer = False  # the demo model opened while weights are missing
        self._hover_again = None  # redraws the hover readout for the map now shown
        self._initial_request = model_request or self._saved_request()
        self._build()
        self._restore_layout()
        self._show_model_in_use()

    # --- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.image_view = ImageView()
        self.previews = PreviewLoader(self)  # images shown before a model has analysed them
        self.previews.decoded.connect(self._preview_decoded)
        self.previews.failed.connect(self._analysis_failed)  # reported as an analysis would be
        self.notice = NoticeBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.notice)
        self.no_model_bar = NoModelBar()  # a declined download: the choices stay at hand
        self.no_model_bar.chosen.connect(self._choose_model)
        layout.addWidget(self.no_model_bar)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.predictions = PredictionsPanel()
        self.head_grid = HeadGridView()
        self.matrix_view = AttentionMatrixView()
        # each says what it shows: raw attention, or the method's matrix where it has one
        self.heads_panel = Captioned(self.head_grid)
        from vitexplorer.gui.views.matrix_view import SquareHolder

        self.matrix_panel = Captioned(SquareHolder(self.matrix_view))
        self.view_bar = ViewBar()
        # what the explorer's controllers use of this window, named (gui/explorer_host.py)
        self.explorer_context = Explorer(
            self,
            self,
            self.state,
            self.session,
            self.model_session,
            self.images,
            self.settings,
            self.notice,
            self.image_view,
            self.view_bar,
            self.heads_panel,
            self.matrix_panel,
            self.matrix_view,
        )
        # methods, compare view, analytics, export
        self.explanations = Explanations(self.explorer_context)
        for name in ("method_bar", "compare_bar", "compare_view", "compare_panel", "analytics"):
            setattr(self, name, getattr(self.explanations, name))
        self.tabs.addTab(self.explanations.explorer, "Explorer")
        self.finetune = FinetuneTab(self, self.tabs)
        self.tabs.addTab(self.analytics, "Model analytics")
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.thumbnails = ThumbnailStrip()
        from vitexplorer.gui.overview import Overview

        self.overview = Overview(
            self.explorer_context, self.explanations
        )  # every layer x head, or every image, at once
        right = [
            self._dock("Predictions", self.predictions, Qt.RightDockWidgetArea),
            self._dock("Heads", self.heads_panel, Qt.RightDockWidgetArea),
            self._dock("Attention matrix", self.matrix_panel, Qt.RightDockWidgetArea),
            self._dock("Overview", self.overview, Qt.RightDockWidgetArea),
        ]
        # heads, matrix and overview share one place as tabs, each as tall as the column allows
        # (stacked, the matrix was a 160 x 35 px strip in a 1024 x 700 window)
        self.tabifyDockWidget(right[1], right[2])
        self.tabifyDockWidget(right[2], right[3])
        right[3].visibilityChanged.connect(self.overview.set_on_screen)
        right[1].raise_()
        # the right-hand column runs down to the status bar, the image strip under the image
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        self.docks = [*right, self._dock("Images", self.thumbnails, Qt.BottomDockWidgetArea)]
        self.resizeDocks(right[:2], [168, 520], Qt.Vertical)
        from vitexplorer.gui.column_share import ColumnShare

        # the column's width follows the window's (about 30 %), not a fixed 360 px
        self.column_share = ColumnShare(self, right[0])
        self.column_share.apply()
        self.model_bar = ModelBar()
        # two rows that each fit a 1024 px window: model, layer and head; method and overlay
        self.addToolBar(self.model_bar)
        self.addToolBar(self.view_bar)
        self.addToolBarBreak()
        self.addToolBar(self.method_bar)
        self.addToolBar(self.view_bar.overlay_bar)
        self.addToolBarBreak()  # the method's options on a row of their own, while it has some
        self.addToolBar(self.method_bar.options_bar)
        # (the options bar comes and goes with the method bar)
        self.explorer_bars = [self.view_bar, self.method_bar, self.view_bar.overlay_bar]
        self._build_menus()
        self._build_status_bar()

        self.image_view.patch_clicked.connect(self.select_patch)
        self.image_view.patch_hovered.connect(self.hover_patch)
        self.image_view.arrow_pressed.connect(self.move_patch)
        self.matrix_view.token_clicked.connect(self.select_token)
        self.matrix_view.cell_hovered.connect(self._hover_cell)
        self.head_grid.head_clicked.connect(self._head_tile_clicked)
        self.thumbnails.image_selected.connect(self.select_image)
        self.thumbnails.thumbnails_wanted.connect(self._decode_thumbnails)
        self.model_bar.model_requested.connect(self.request_model)
        self.model_bar.open_file_requested.connect(self.open_weights_file)
        self.model_bar.family_requested.connect(self.ask_family_model)
        self.model_bar.refused.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.view_bar.layer_changed.connect(self.select_layer)
        self.view_bar.head_changed.connect(self.select_head)
        self.view_bar.cls_requested.connect(lambda: self.select_token(0))
        self.view_bar.token_requested.connect(self.select_token)
        self.view_bar.aspect_toggled.connect(self.set_keep_aspect)
        self.view_bar.scale_locked.connect(lambda locked: self.state.update(scale_locked=locked))
        self.view_bar.opacity_changed.connect(self.image_view.set_opacity)
        self.view_bar.grid_toggled.connect(self.image_view.set_grid_visible)
        self.explanations.connect_views()
        self.state.subscribe(self._state_changed)  # the window's one redraw
        self.explanations.models.changed.connect(self._redraw)  # the comparison's own changes
        self.explanations.redraw_wanted.connect(self._redraw)

    def _dock(self, title: str, widget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.lower().replace(" ", "_"))
        dock.setWidget(widget)
        # closable: without it Qt disables the dock's toggle in the View menu
        dock.setFeatures(
            QDockWidget.DockWidgetClosable
            | QDockWidget.DockWidgetMovable
            | QDockWidget.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open images…", self.open_images, QKeySequence.Open)
        samples = file_menu.addMenu("Open &sample image")
        for name, label in SAMPLES.items():
            self._action(samples, label, lambda _=False, n=name: self.open_sample(n))
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "&Paste image", self.paste, QKeySequence.Paste)
        file_menu.addSeparator()
        self.export_action = self._action(
            file_menu, "&Export view…", self.explanations.export_view, QKeySequence("Ctrl+E")
        )
        self.export_action.setEnabled(False)
        from vitexplorer.gui.export import scale_menu

        self.export_scale_menu = scale_menu(file_menu, self.settings)
        file_menu.addSeparator()
        self._action(file_menu, "Open &model (weights or checkpoint)…", self.open_weights_file)
        self.save_model_action = self._action(
            file_menu, "&Save model…", self.finetune.save_model, QKeySequence.Save
        )
        self.save_model_action.setEnabled(False)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.Quit)
        view_menu = self.menuBar().addMenu("&View")
        self._action(view_menu, "&Explorer", self.finetune.show_explorer, QKeySequence("Ctrl+1"))
        self._action(view_menu, "&Train", self.finetune.show_panel, QKeySequence("Ctrl+2"))
        self._action(
            view_menu,
            "Model &analytics",
            lambda: self.tabs.setCurrentWidget(self.analytics),
            QKeySequence("Ctrl+3"),
        )
        view_menu.addSeparator()
        self._action(view_menu, "Next layer", lambda: self.step_layer(1), QKeySequence("]"))
        self._action(view_menu, "Previous layer", lambda: self.step_layer(-1), QKeySequence("["))
        self._action(view_menu, "Select CLS token", lambda: self.select_token(0))
        view_menu.addSeparator()
        for dock in self.docks:
            view_menu.addAction(dock.toggleViewAction())
        self.reset_layout_action = self._action(view_menu, "&Reset layout", self.reset_layout)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&How to use", self._show_help, QKeySequence.HelpContents)
        self._update_recent_menu()

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(shortcut)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.hover_label = QLabel("")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setVisible(False)
        self.cancel_map_button = QPushButton("Cancel")  # a map job of the explorer's model
        self.cancel_map_button.setToolTip(
            "Stop computing the map; choose the method again to compute it"
        )
        self.cancel_map_button.setFocusPolicy(Qt.NoFocus)
        self.cancel_map_button.setVisible(False)
        self.cancel_map_button.clicked.connect(self.model_session.cancel_maps)
        self.activity_label = QLabel("")
        self.model_label = QLabel("no model")
        self.device_label = QLabel("")
        self.time_label = QLabel("")
        for widget in (
            self.hover_label,
            self.activity_label,
            self.busy,
            self.cancel_map_button,
            self.model_label,
            self.device_label,
            self.time_label,
        ):
            widget.setContentsMargins(6, 0, 6, 0)
            bar.addPermanentWidget(widget)

    # --- start-up and shut-down -----------------------------------------------------------
    def start(self, images: list[str] | None = None) -> None:
        """Start the worker (torch loads there, after the window is shown) and the model."""
        session = self.model_session
        session.set_feed(self.state.feed)
        worker = session.start()
        session.loading.connect(self._model_loading)
        session.ready.connect(self._model_ready)
        session.failed.connect(self._model_failed)
        session.download_offered.connect(self._download_offered)
        session.download_failed.connect(self._download_failed)
        session.download_progress.connect(self._download_progress)
        session.analysis_started.connect(self._analysis_started)
        session.analysis_ready.connect(self._analysis_ready)
        session.analysis_failed.connect(self._analysis_failed)
        session.map_arrived.connect(self._map_arrived)
        session.map_failed.connect(self._map_failed)
        session.map_progress.connect(self._map_progress)
        session.map_cancelled.connect(self._map_cancelled)
        session.working.connect(self._working)
        session.idle.connect(self._worker_idle)
        self.explanations.connect_worker(worker)
        self.request_model(self._initial_request)
        if images:
            self.add_images(images)

    @property
    def worker(self):  # ModelWorker | None
        return self.model_session.worker

    @property
    def model(self) -> ModelInfo | None:
        """The explorer's model (its session's)."""
        return self.model_session.info

    def closeEvent(self, event) -> None:
        self.finetune.before_close()  # cancels a run and waits for it; the layout comes back
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.layout_state())
        self.settings.setValue("layout_version", LAYOUT_KEY)
        if self.model is not None:
            request = self.model.request
            self.settings.setValue("model/name", request.name)
            self.settings.setValue("model/weights", request.weights)
            self.settings.setValue("model/device", request.device)
        self.settings.sync()
        self.previews.stop()
        self.explanations.before_close()  # the compared model's worker, if any
        self.model_session.stop()
        super().closeEvent(event)

    def _saved_request(self) -> ModelRequest:
        name = self.settings.value("model/name", DEFAULT_MODEL.name)
        weights = self.settings.value("model/weights", DEFAULT_MODEL.weights)
        device = self.settings.value("model/device", DEFAULT_MODEL.device)
        return ModelRequest(str(name), str(weights), str(device))

    # --- layout ---------------------------------------------------------------------------
    def _default_geometry(self) -> None:
        """1400 x 900, or less on a smaller screen, centred on it."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(DEFAULT_SIZE)
            return
        available = screen.availableGeometry()
        size = DEFAULT_SIZE.boundedTo(available.size() * 0.95)
        self.resize(size)
        self.move(available.center() - QPoint(size.width() // 2, size.height() // 2))

    def _restore_layout(self) -> None:
        """The saved geometry and dock layout, where they can be used: a geometry off every
        screen or larger than its screen, a layout saved by another version of the app, or
        bytes that are neither, leave the default in place."""
        self.default_state = self.layout_state()  # what View > Reset layout restores
        geometry = self.settings.value("geometry")
        if usable_geometry(geometry) and not self.restoreGeometry(geometry):
            self._default_geometry()
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray) and self.settings.value("layout_version") == LAYOUT_KEY:
            # bytes Qt cannot read change nothing; a column of the person's width stays so
            self.column_share.learn_on_show = self.set_layout_state(state)

    def layout_state(self) -> QByteArray:
        """The docks' and toolbars' places, sizes and visibility."""
        return self.saveState(LAYOUT_VERSION)

    def set_layout_state(self, state: QByteArray) -> bool:
        return self.restoreState(state, LAYOUT_VERSION)

    def reset_layout(self) -> None:
        """View > Reset layout: the docks and toolbars where and as large as they start."""
        self.finetune.reset_layout(self.default_state)

    # --- models -----------------------------------------------------------------------------
    def request_model(self, request: ModelRequest) -> None:
        if self.worker is None:
            self._initial_request = request
            return
        self._loading = True
        self.busy.setVisible(True)
        self.model_session.request_model(request)

    def model_saved(self, path: str) -> ModelInfo | None:
        """The explorer's model, trained here, was saved to ``path``: from now on it stands for
        that file (settings remember it; the model before it is found through the file). Its
        new description, or None without a model."""
        if self.model is None:
            return None
        request = ModelRequest(path, "default", self.model.request.device)
        info = dataclasses.replace(self.model, request=request, fine_tuned=False)
        self.model_session.info = info
        return info

    def _worker_idle(self) -> None:
        self.busy.setVisible(False)
        self.busy.setRange(0, 0)
        self.cancel_map_button.setVisible(False)
        self.activity_label.setText("")

    def open_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open weights or checkpoint", "", "Weights (*.safetensors *.pth *.pt *.bin)"
        )
        if path:
            current = self.model_bar.current_request()
            family = info_for(current.name)  # one without trained weights: the file decides
            shaped = current.name == NO_MODEL or (family is not None and not family.pretrained)
            name = path if shaped else current.name
            self.request_model(ModelRequest(name, path, current.device))

    def ask_family_model(self, family_name: str) -> None:
        """The model box's entry of a family that names its models ("timm model…", "Hugging
        Face model…"): a searchable list of the models of that family that vitexplorer can load
        (timm's registry, or the Hugging Face cache and a folder), as the family asks for them;
        the one chosen loads."""
        family = family_named(family_name)
        assert family.asking is not None
        names = family.asking.names()
        where = family.asking.note(names)
        if self.family_picker is not None:
            self.family_picker.close()
        self.family_picker = FamilyPicker(self, family, names, where)
        self.family_picker.select(str(self.settings.value(f"model/last_{family.prefix}", "")))
        self.family_picker.chosen.connect(self._family_chosen)
        self.family_picker.open()  # window-modal, never blocks the event loop

    def _family_chosen(self, name: str) -> None:
        prefix, _, rest = name.partition(":")
        self.settings.setValue(f"model/last_{prefix}", rest)
        current = self.model_bar.current_request()
        weights = current.weights if current.weights in ("default", "none") else "default"
        self.request_model(ModelRequest(name, weights, current.device))

    def _model_loading(self, name: str) -> None:
        self.activity_label.setText(f"loading {Path(name).name}…")

    def _model_ready(self, info: ModelInfo) -> None:
        self._close_progress()
        self._loading = False
        # the bar stays beside the demo model it opened (the download one click away), not
        # beside its random weights, which it would call trained
        demo = info.request.name == DEMO and info.request.weights == "default"
        self.no_model_bar.setVisible(self._showing_demo_offer and demo)
        self._showing_demo_offer = self.no_model_bar.isVisible()
        previous = self.model_session.previous
        spec = info.spec
        self.model_bar.set_devices(list(info.devices))
        self._show_model_in_use()
        self.view_bar.set_num_layers(spec.num_layers)
        self.view_bar.set_num_heads(spec.num_heads)
        self.view_bar.set_prefix_tokens(spec.prefix_names())
        self.explanations.model_ready(info)
        self.session.forget_analyses()  # nothing is drawn from the old model's analyses
        self.selection.fit(spec)
        if previous is None or previous.spec.num_layers != spec.num_layers:
            self.selection.layer = spec.num_layers - 1  # the last layer, as the command line
        self.view_bar.show_selection(self.selection.layer, self.selection.head)
        self.device_label.setText(info.device)
        self._say_what_the_demo_sees(info)
        self.hover_label.setText("")
        random = spec.random_weights
        if not spec.has_classifier:
            hint = (
                "This model has no classifier (an image encoder, such as DINO or CLIP's image "
                "tower): no predictions and no class relevance; attention, rollout and the "
                "head statistics work."
            )
        else:
            hint = "Random weights: these predictions mean nothing." if random else ""
        self.predictions.set_hint(hint)
        if info.fine_tuned:
            self.statusBar().showMessage(f"The explorer now uses the model {spec.weights}", 8000)
        else:
            notes = "".join(f" \u00b7 {note}" for note in spec.notes)  # defaults, random weights
            self.statusBar().showMessage(
                f"Loaded {spec.display_name} in {info.seconds:.1f} s{notes}",
                20000 if notes else 5000,
            )
        # images still queued with the worker will be analysed by this model; the others again
        self._analyse_again()
        self.finetune.model_ready(info)
        self.model_changed.emit(info)

    def _model_failed(self, outcome: ModelFailed | ModelCancelled) -> None:
        self._close_progress()
        self._loading = False
        self.activity_label.setText("")
        self._show_model_in_use()  # the previous model, still the one in use, or none
        if isinstance(outcome, ModelCancelled):
            message = "download cancelled"
            self.statusBar().showMessage("Download cancelled: choose a model in the toolbar")
        else:
            message = outcome.message
            self.statusBar().showMessage(f"Could not load the model: {message}", 15000)
            self.show_message("Could not load the model", message)
        self._show_waiting()
        self.model_failed.emit(message)

    def _show_waiting(self) -> None:
        """The placeholder of an image that has no analysis yet says what it waits for."""
        current = self.session.current
        if current is None or current.analysis is not None:
            return
        if self.model is None and not self._loading:
            self._placeholder(f"{current.name}: no model is loaded; choose one above")
            self.predictions.set_hint("No predictions: no model is loaded.")
        elif self.model is None:
            self._placeholder(f"{current.name}: waiting for the model to load…")
        else:
            self._placeholder(f"Analysing {current.name}…")

    def _placeholder(self, message: str) -> None:
        """No analysis to show: the current image as decoded (when it is) with the message as
        its title, and the compare view emptied (nothing of an old image or model stays)."""
        self.hover_label.setText("")  # no map: nothing to read at the pointer
        self._hover_again = None
        key = self.session.current_key
        preview = self.previews.preview(key) if key is not None else None
        if preview is not None:
            self.image_view.show_preview(preview, message)
        else:
            self.image_view.show_placeholder(message)
        self.explanations.show_placeholder()

    def _preview_decoded(self, key: str, _preview, thumbnail) -> None:
        """An image is decoded: its thumbnail, and itself if it is on screen without analysis."""
        entry = self.session.entries.get(key)
        if entry is None or entry.analysis is not None:
            return  # removed, or analysed already (the analysis has its own thumbnail)
        self.thumbnails.set_thumbnail(key, thumbnail)
        if key == self.session.current_key:
            self._show_waiting()

    def _decode_thumbnails(self, keys: list[str]) -> None:
        """Thumbnails scrolled near the view: decode those the analysis has not given yet."""
        for key in keys:
            entry = self.session.entries.get(key)
            if entry is not None and entry.analysis is None and key != self.session.current_key:
                self.previews.request(key, entry.source)

    def _show_model_in_use(self) -> None:
        """The model box, the status bar and the title name the model in use, or say that none
        is: after a load, and after any failed one."""
        info = self.model
        if info is None:
            offer = self._offer if self.no_model_bar.isVisible() else None
            if offer is not None:  # the architecture asked for, its weights "not downloaded"
                self.model_bar.show_missing(offer.request)
            else:
                self.model_bar.show_none()
            self.model_label.setText("no model")
            self.setWindowTitle("vitexplorer \u2014 no model")
            return
        spec = info.spec
        if info.fine_tuned:
            self.model_bar.show_finetuned(info.request, spec.name, self.model_bar.finetuned_label)
        else:  # the demo is a small ViT, but the box names it as the entry it was chosen by
            self.model_bar.show_request(
                info.request, DEMO if info.request.name == DEMO else spec.name
            )
        self.model_label.setText(f"{spec.display_name} \u00b7 {spec.weights}")
        self.setWindowTitle(f"vitexplorer \u2014 {spec.display_name} \u00b7 {spec.weights}")

    def _say_what_the_demo_sees(self, info: ModelInfo) -> None:
        """The first time the demo model is used, one line says that it sees 32x32 pixels."""
        self.notice.withdraw("demo")
        if info.request.name != DEMO or self.settings.value("notice/demo_input", False, bool):
            return
        spec = info.spec
        rows, cols = spec.grid
        self.notice.add(
            f"{DEMO_LABEL} sees every image as CIFAR-10 does, shrunk to {spec.image_size}x"
            f"{spec.image_size} pixels ({rows}x{cols} patches of {spec.patch_size} px), and knows "
            f"its {spec.num_classes} classes only.",
            tag="demo",
        )
        self.settings.setValue("notice/demo_input", True)

    def _download_offered(self, offer: DownloadOffer) -> None:
        """Weights that are not downloaded: never a modal question. The bar above the image
        offers the download and its alternatives; the model in use stays, and with none yet
        the demo model opens where this installation has it."""
        self._loading = False
        self.activity_label.setText("")
        self._offer = offer
        if self.model is None and specs.demo_path().is_file():
            self._showing_demo_offer = True
            self.no_model_bar.show_offer(offer, DEMO_LABEL)
            self.request_model(ModelRequest(DEMO, "default", offer.request.device))
            self.statusBar().showMessage(
                "Opening the demo model: the ImageNet weights are not downloaded", 10000
            )
            return
        in_use = None if self.model is None else self.model.spec.display_name
        self.no_model_bar.show_offer(offer, in_use)
        self._show_model_in_use()
        self.statusBar().showMessage(
            "No model loaded: download the weights or choose another model above"
            if self.model is None
            else f"{in_use} stays: the weights were not downloaded",
            10000,
        )
        self._show_waiting()

    def _download_failed(self, failed: DownloadFailed) -> None:
        """A download that could not reach its server: one line, above the same choices; the
        model in use stays (the box, the title and the status bar say which, or that none)."""
        self._close_progress()
        self._loading = False
        self.activity_label.setText("")
        offer = self._offer
        what = offer.description if offer is not None else f"weights of {failed.request.name}"
        in_use = None if self.model is None else self.model.spec.display_name
        stays = "No model is loaded" if in_use is None else f"{in_use} stays in use"
        server = host(offer.url) if offer is not None else "its server"
        message = (
            f"Could not download the {what}: {server} cannot be reached ({failed.reason}). {stays}."
        )
        bar = self.no_model_bar
        shown = bar.isVisible() and bar.offer == offer
        if offer is not None and offer.request.name == failed.request.name and not shown:
            bar.show_offer(offer, in_use)
            self._showing_demo_offer = self.model is not None and self.model.request.name == DEMO
        self.no_model_bar.show_failure(message)
        self._show_model_in_use()
        self.statusBar().showMessage(message, 30000)
        self._show_waiting()
        self.model_failed.emit(message)

    def _choose_model(self, choice: Choice) -> None:
        """One of the download offer's choices, from the bar above the image."""
        if choice == "file":
            self.open_weights_file()
            return
        assert isinstance(choice, ModelRequest)
        offer = self._offer
        if choice.allow_download and offer is not None and offer.request.name == choice.name:
            self._progress = DownloadProgress(self, offer, self.worker.cancel_event.set)
        self.request_model(choice)

    def _download_progress(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(done, total)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    # --- images -----------------------------------------------------------------------------
    def add_images(self, paths: list[str]) -> None:
        """Add the images (folders expanded) and show the first; a large drop is added a chunk
        per turn of the event loop, so the window answers while a folder of 50,000 comes in."""
        expanded: list[str] = []
        for path in paths:
            found = expand_paths([path])  # each folder listed once
            if os.path.isdir(path) and not found:
                self.notice.add(f"Could not open {Path(path).name}: the folder holds no images")
            expanded += found
        self._add_chunk(iter(expanded), first=True)

    def _add_chunk(self, paths: Iterator[str], first: bool = False) -> None:
        added = 0
        for path in itertools.islice(paths, ADD_CHUNK):
            self._add_entry(Path(path).name, path, select=first and added == 0)
            added += 1
        if added == ADD_CHUNK:
            QTimer.singleShot(0, self, functools.partial(self._add_chunk, paths))

    def add_image_bytes(self, data: bytes, name: str) -> None:
        self._add_entry(name, data, select=True)

    def _add_entry(self, name: str, source: str | bytes, select: bool) -> str:
        key = self.session.add(name, source)
        self.thumbnails.add_entry(key, name)  # its thumbnail is decoded when it scrolls near
        self._request_analysis(key, first=select)
        if select:
            self.previews.request(key, source)  # on screen while the model works
            self.thumbnails.select(key)
            self.finetune.show_explorer()
        return key

    def select_image(self, key: str) -> None:
        entry = self.session.entries.get(key)
        if entry is None:
            return
        self.session.current_key = key
        self.thumbnails.select(key)
        if entry.analysis is not None:
            self._show_analysis()
        else:
            self._show_waiting()
            self._request_analysis(key, first=True)

    def _request_analysis(self, key: str, first: bool = False) -> None:
        """Queue an image once per model; ``first`` puts it at the head of the queue."""
        if self.worker is None:
            return
        if key in self._requested:  # queued or running already: at most move it forward
            if first:
                self.worker.prioritise(key)
            return
        self._requested.add(key)
        self.busy.setVisible(True)
        self.model_session.request_analysis(key, self.session.entries[key].source, first=first)

    def _analysis_started(self, key: str) -> None:
        entry = self.session.entries.get(key)
        if entry is not None:
            self.busy.setVisible(True)
            self.activity_label.setText(f"analysing {entry.name}…")

    def set_keep_aspect(self, keep: bool) -> None:
        """Whole images at their own aspect ratio (a rectangular grid), or the model's centre
        crop (the state's ``feed``; see :meth:`_state_changed`)."""
        self.state.feed = WHOLE if keep else CROP

    def _state_changed(self, changed: frozenset[str]) -> None:
        """The explorer's state changed: a new feed analyses every image again, the current
        one first (both models' maps of the old feed go); what the views draw from redraws
        them. The one place that redraws the window."""
        if "feed" in changed:
            self.model_session.set_feed(self.state.feed)
            self.explanations.models.set_feed(self.state.feed)
            self.explanations.analytics.set_aspect(self.state.feed.aspect)
            self._analyse_again()
        if "token" in changed:
            self.view_bar.show_token(self.state.token)
        if changed & DRAWN and self.analysis is not None:
            self._refresh()

    def _redraw(self) -> None:
        if self.analysis is not None:
            self._refresh()

    def _map_arrived(self, key: str) -> None:
        """A map of the explorer's model arrived: drawn if it is the current image's."""
        if key == self.session.current_key and self.analysis is not None:
            self._refresh()

    def _map_failed(self, failed: MapFailed) -> None:
        method = failed.job.method
        self.statusBar().showMessage(f"Could not compute the {method}: {failed.message}", 15000)
        shown = {self.method_bar.choice().method, self.compare_bar.choice().method}
        if failed.key == self.session.current_key and method in shown:
            self.show_message(f"Could not compute the {method}", failed.message)

    def _map_progress(self, progress: MapProgress) -> None:
        """A map job of several passes: how far it is, and a Cancel button."""
        self.busy.setRange(0, progress.total)
        self.busy.setValue(progress.done)
        self.busy.setVisible(True)
        self.cancel_map_button.setVisible(True)
        method = progress.job.method
        self.activity_label.setText(f"{method}: {progress.done} of {progress.total} passes")

    def _map_cancelled(self, cancelled: MapCancelled) -> None:
        """A map the person cancelled: no map, the view says so (choosing the method again
        computes it)."""
        method = cancelled.job.method
        self.statusBar().showMessage(f"{method} cancelled: choose it again to compute it", 10000)
        self.cancel_map_button.setVisible(False)
        self.busy.setRange(0, 0)
        if cancelled.key == self.session.current_key and self.analysis is not None:
            self._refresh()

    def _working(self, what: str) -> None:
        self.busy.setRange(0, 0)
        self.busy.setVisible(True)
        self.cancel_map_button.setVisible(True)
        self.activity_label.setText(what)

    def _analyse_again(self) -> None:
        """Every open image analysed again (the model or the input changed), the current one
        first; images still queued are analysed the new way when their turn comes."""
        self.session.forget_analyses()
        current = self.session.current
        if current is not None:
            self._placeholder(f"Analysing {current.name}…")
            self._request_analysis(current.key, first=True)
        for key in self.session.entries:
            self._request_analysis(key)

    def _analysis_ready(self, done: AnalysisDone) -> None:
        self._requested.discard(done.key)
        entry = self.session.entries.get(done.key)
        if entry is None:
            return  # removed since
        stale_model = self.model is None or done.generation != self.model.generation
        if stale_model or done.feed != self.state.feed:
            self._request_analysis(done.key)  # made by a replaced model, or the other way
            return
        self.session.store(done.key, done.analysis)
        self.thumbnails.set_thumbnail(done.key, done.thumbnail)
        if isinstance(entry.source, str):
            self._remember_recent(entry.source)
        if done.key == self.session.current_key:
            self._show_analysis()

    def _analysis_failed(self, key: str, message: str) -> None:
        self._requested.discard(key)
        was_current = key == self.session.current_key
        if self.session.remove(key) is None:
            return
        self.previews.forget(key)
        self.images.forget(key)
        self.thumbnails.remove(key)
        self.statusBar().showMessage(f"Could not open {message}", 20000)
        self.notice.add(f"Could not open {message}")
        if was_current:
            remaining = self.thumbnails.keys()
            if remaining:
                self.select_image(remaining[-1])
            else:
                self._placeholder("Drop an image here")
        self.image_failed.emit(key, message)

    def open_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if paths:
            self.add_images(paths)

    def open_sample(self, name: str | None = None) -> None:
        """File > Open sample image: one of the bundled photos (the greeting's by default)."""
        self.add_images([sample_image_path(name) if name else greeting_image_path()])

    def paste(self) -> None:
        mime = QApplication.clipboard().mimeData()
        if mime.hasImage():
            self.add_image_from(mime, "pasted")
        elif mime.hasUrls():
            self.add_images([local_path(u) for u in mime.urls() if u.isLocalFile()])
        else:
            self.statusBar().showMessage("The clipboard holds no image", 5000)

    def _remember_recent(self, path: str) -> None:
        if Path(path).parent == Path(sample_image_path()).parent:
            return  # a bundled photo: File > Open sample image has it
        recent = [p for p in self._recent() if p != path]
        self.settings.setValue("recent_images", [path, *recent][:MAX_RECENT])
        self._update_recent_menu()

    def _recent(self) -> list[str]:
        value = self.settings.value("recent_images", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self._recent():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.add_images([p]))
        self.recent_menu.setEnabled(bool(self._recent()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        paths = [local_path(u) for u in mime.urls() if u.isLocalFile()]
        if paths:
            self.add_images(paths)
            event.acceptProposedAction()
        elif mime.hasImage():
            self.add_image_from(mime, "dropped")
            event.acceptProposedAction()

    def add_image_from(self, mime, how: str) -> None:
        """An image carried in MIME data (clipboard, drag from a browser), encoded as PNG."""
        buffer = QBuffer()
        buffer.open(QIODevice.WriteOnly)
        mime.imageData().save(buffer, "PNG")
        self.add_image_bytes(bytes(buffer.data()), f"{how} image {self.session.next_number()}")

    # --- selection ---------------------------------------------------------------------------
    @property
    def analysis(self):
        return self.session.analysis

    def select_patch(self, row: int, col: int) -> None:
        if self.analysis is not None:
            spec = self.analysis.spec
            self.select_token(token_for_patch(row, col, spec.grid, spec.num_prefix_tokens))

    def select_token(self, token: int) -> None:
        if self.analysis is None or not 0 <= token < self.analysis.spec.num_tokens:
            return
        self.state.token = token  # the view bar and the views follow (_state_changed)

    def select_layer(self, layer: int) -> None:
        if self.analysis is None:
            return
        self.state.layer = max(0, min(layer, self.analysis.spec.num_layers - 1))

    def select_head(self, head: int | None) -> None:
        self.state.head = head

    def step_layer(self, step: int) -> None:
        if not self.view_bar.applies():  # [ and ] do what the disabled layer box would
            self.statusBar().showMessage(self.view_bar.layer_spin.toolTip(), 8000)
            return
        self.select_layer(self.selection.layer + step)

    def _head_tile_clicked(self, head: int) -> None:
        """A head tile selects that head; under rollout or relevance, whose image no single head
        makes, the image switches to that head's raw attention."""
        if not self.view_bar.applies():
            from vitexplorer.core.explain.methods.attention import ATTENTION

            self.method_bar.set_method(ATTENTION.name)
            self.statusBar().showMessage("Showing the clicked head's raw attention", 5000)
        self.select_head(None if head == MEAN else head)

    def move_patch(self, d_row: int, d_col: int) -> None:
        if self.analysis is not None:
            self.select_token(self.selection.moved(d_row, d_col, self.analysis.spec))

    def _show_analysis(self) -> None:
        analysis = self.analysis
        self.session.touch(self.session.current_key)
        self.image_view.set_image(analysis.display, analysis.spec.grid)
        self.predictions.set_predictions(analysis.predictions, _undefined_prediction(analysis))
        self.explanations.show_analysis(analysis)
        self.time_label.setText(f"forward {analysis.seconds * 1e3:.0f} ms")
        self._refresh()
        self.image_view.setFocus()
        self.export_action.setEnabled(True)
        self.analysis_shown.emit(self.session.current_key)

    def _refresh(self) -> None:
        """Redraw every view from the stored analysis: numpy slicing, no torch (maps of methods
        that need the model come from the worker and are kept in ``explanations.maps``)."""
        analysis, sel = self.analysis, self.selection
        spec = analysis.spec
        grid, prefix = spec.grid, spec.num_prefix_tokens
        self.view_bar.show_selection(sel.layer, sel.head)
        patch = sel.patch(spec)
        self.explanations.draw(patch)
        heads = head_maps(analysis.attention, sel.layer, sel.token, grid, prefix)
        self.head_grid.set_maps(heads, sel.head)
        self.explanations.draw_panels()  # the matrix only when what it shows changed
        self.matrix_view.set_selected_token(sel.token)
        self.overview.refresh()  # only while on screen, and when what it shows changed
        if self._hover_again is not None:  # the readout reads the map now shown
            self._hover_again()

    # --- hover and messages ------------------------------------------------------------------
    def hover_patch(self, row: int, col: int, view=None, bar=None) -> None:
        view, bar = view or self.image_view, bar or self.method_bar
        values = view.heat_values
        self._hover_again = None
        if row < 0 or self.analysis is None or values.size == 0:
            self.hover_label.setText("")
            return
        self._hover_again = lambda: self.hover_patch(row, col, view, bar)
        spec = self.analysis.spec
        token = token_for_patch(row, col, spec.grid, spec.num_prefix_tokens)
        from vitexplorer.core.explain.method import get

        method = bar.choice().method
        value = values[row, col]
        # a row of a distribution reads in 4 decimals; relevance is tiny: 4 significant digits
        shown = f"{value:.4f}" if get(method).distribution else f"{value:.4g}"
        self.hover_label.setText(
            f"{patch_label(row, col)} (token {number(token)}) · {method} {shown}"
        )

    def _hover_cell(self, query: int, key: int) -> None:
        matrix = self.matrix_view.matrix
        self._hover_again = None
        if query < 0 or matrix.size == 0 or self.analysis is None:
            self.hover_label.setText("")
            return
        self._hover_again = lambda: self._hover_cell(query, key)
        what = self.explanations.matrix_method
        label = self.analysis.spec.token_label
        self.hover_label.setText(
            f"query token {number(query)} ({label(query)}) → key token {number(key)} "
            f"({label(key)}) · {what} {matrix[query, key]:.4f}"
        )

    # --- what the explorer's controllers may ask (explorer_host.ExplorerHost) ------------------
    def hover_text(self, text: str) -> None:
        self.hover_label.setText(text)

    def say(self, text: str, milliseconds: int) -> None:
        """One line in the status bar for ``milliseconds``."""
        self.statusBar().showMessage(text, milliseconds)

    def show_explorer(self) -> None:
        self.finetune.show_explorer()

    def adopted_run(self):  # FinetuneResult | None
        """The Train tab's run whose model the explorer adopted, if any."""
        return self.finetune.adopted

    def show_message(self, title: str, text: str) -> None:
        if self.message_box is not None:
            self.message_box.close()
        self.message_box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        self.message_box.open()  # window-modal, never blocks the event loop

    def _show_help(self) -> None:
        """Help > How to use: the help window, beside the main one."""
        from vitexplorer.gui.help import HelpWindow

        if self.help_window is None:
            self.help_window = HelpWindow(self, self.settings)
        self.help_window.show()
        self.help_window.raise_()


def usable_geometry(data: object) -> bool:
    """Whether ``data`` is a saved window geometry (QWidget.saveGeometry) whose window fits on a
    screen attached now: no larger than its available area and inside it (a frame's width of
    slack). Read with QDataStream from the documented layout: magic, version, frame and normal
    geometry."""
    if not isinstance(data, QByteArray) or data.size() < 40:
        return False
    stream = QDataStream(data)
    stream.setVersion(QDataStream.Qt_4_0)
    magic, major = stream.readUInt32(), stream.readUInt16()
    stream.readUInt16()  # minor version
    frame = [stream.readInt32() for _ in range(4)]  # left, top, right, bottom
    normal = [stream.readInt32() for _ in range(4)]
    if stream.status() != QDataStream.Ok or magic != GEOMETRY_MAGIC or not 1 <= major <= 3:
        return False
    left, top, right, bottom = normal if normal[2] > normal[0] else frame
    rect = QRect(QPoint(left, top), QPoint(right, bottom))
    if rect.width() < 200 or rect.height() < 150:
        return False
    for screen in QGuiApplication.screens():
        available = screen.availableGeometry()
        fits = rect.width() <= available.width() and rect.height() <= available.height()
        if fits and available.adjusted(-48, -48, 48, 48).contains(rect):
            return True
    return False


def _undefined_prediction(analysis) -> str | None:  # ImageAnalysis
    """Why the analysis has no prediction at all (outputs that are not numbers), or None."""
    if not analysis.spec.has_classifier:
        return None  # an image encoder: the hint says it predicts nothing
    from vitexplorer.core.explain.analysis import undefined_prediction  # torch is loaded by now

    return undefined_prediction(analysis.logits, analysis.probabilities)
