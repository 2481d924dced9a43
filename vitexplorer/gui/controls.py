"""Toolbars: which model on which device, which layer, head and token to look at, and which
explanation method draws the overlay."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolBar,
)

from vitexplorer.core.explain.method import catalogue
from vitexplorer.core.models import spec as specs
from vitexplorer.core.models.families.registry import (
    FAMILIES,
    SMALL_VIT,
    TORCHVISION_VITS,
    info_for,
    library_family,
)
from vitexplorer.core.models.spec import DEMO, DEMO_LABEL
from vitexplorer.gui.method_bar import OPTION_WIDGETS as OPTION_WIDGETS  # the method bar's
from vitexplorer.gui.method_bar import ClassPicker as ClassPicker
from vitexplorer.gui.method_bar import MethodBar as MethodBar
from vitexplorer.gui.workers import ModelRequest

# from core.spec, which imports no torch: the window shows before torch loads
MODEL_CHOICES = [*TORCHVISION_VITS.items(), (SMALL_VIT, "Small ViT")]


def model_choices() -> list[tuple[str, str]]:
    """The model box's built-in entries: the demo model first where this installation has it."""
    demo = [(DEMO, DEMO_LABEL)] if specs.demo_path().is_file() else []
    return [*demo, *MODEL_CHOICES]


WEIGHT_CHOICES = [("default", "Pretrained weights"), ("none", "Random weights")]
FINETUNED = "fine-tuned"  # the weights entry of a model trained in this session, not in a file
MISSING = "missing"  # the weights entry of pretrained weights that were not downloaded
NO_MODEL = ""  # the data of both boxes' "no model" entries, there while no model is loaded
FAMILY_ITEM = "family:"  # the model box's entries that ask for a model of a family by name


def family_label(name: str) -> str:
    """How the model box shows a timm: or hf: model (as its family says)."""
    family = library_family(name)
    return family.shown(name) if family is not None else name


def is_checkpoint(path: str | None) -> bool:
    """Whether ``path`` is a vitexplorer checkpoint (safetensors whose metadata records the
    architecture), read from its header only."""
    if not path or not path.endswith(".safetensors"):
        return False
    from vitexplorer.core.models.checkpoint import WeightsFileError, read_safetensors_header

    try:
        return read_safetensors_header(Path(path))[1] is not None
    except (WeightsFileError, OSError, ValueError):
        return False


class ModelBar(QToolBar):
    """Model, weights and device pickers; emits a request when the user changes any of them."""

    model_requested = Signal(object)  # ModelRequest
    open_file_requested = Signal()
    family_requested = Signal(str)  # a family's name ("timm"): the user wants to name a model
    refused = Signal(str)  # a change that cannot be made, and why

    def __init__(self) -> None:
        super().__init__("Model")
        self.setObjectName("model_toolbar")
        self.model_box = QComboBox()
        for name, label in model_choices():
            self.model_box.addItem(label, name)
        self.model_box.insertSeparator(self.model_box.count())
        for family in FAMILIES:  # those that ask for a model by name, installed here
            if family.asking is not None and family.installed:
                self.model_box.addItem(family.asking.menu, FAMILY_ITEM + family.name)
        self._shown_index = 0
        self._checkpoint: str | None = None  # the checkpoint shown: "Random weights" is its shape
        self.finetuned_label = "fine-tuned, not saved"  # the weights entry of a trained model
        self.model_box.setToolTip("Architecture")
        self.weights_box = QComboBox()
        for value, label in WEIGHT_CHOICES:
            self.weights_box.addItem(label, value)
        self.weights_box.setToolTip("Where the parameters come from")
        # a long file name is elided in the box (the list shows it whole): the toolbar fits 1024 px
        self.weights_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.weights_box.setMinimumContentsLength(18)
        self.device_box = QComboBox()
        self.device_box.addItem("auto", "auto")
        self.device_box.addItem("cpu", "cpu")
        self.device_box.setToolTip("Where inference runs")
        self.file_button = QPushButton("Weights file…")
        self.file_button.setToolTip("Open a .pth or .safetensors weights file or a checkpoint")
        self.addWidget(QLabel(" Model "))
        self.addWidget(self.model_box)
        self.addWidget(self.weights_box)
        self.addWidget(self.file_button)
        self.addWidget(QLabel("  Device "))
        self.addWidget(self.device_box)
        for box in (self.model_box, self.weights_box, self.device_box):
            box.setFocusPolicy(Qt.NoFocus)  # arrow keys belong to the patch selection
        self.model_box.activated.connect(self._architecture_changed)
        self.weights_box.activated.connect(self._changed)
        self.device_box.activated.connect(self._changed)
        self.file_button.clicked.connect(self.open_file_requested)

    def current_request(self) -> ModelRequest:
        return ModelRequest(
            self.model_box.currentData(),
            self.weights_box.currentData(),
            self.device_box.currentData(),
        )

    def _architecture_changed(self, _index: int = 0) -> None:
        """A new architecture starts from its default weights, not the last file."""
        data = self.model_box.currentData() or ""
        if data.startswith(FAMILY_ITEM):  # ask for the name; the box shows the loaded model
            self.model_box.setCurrentIndex(self._shown_index)
            self.family_requested.emit(data[len(FAMILY_ITEM) :])
            return
        if self.weights_box.currentData() not in ("default", "none"):
            self.weights_box.setCurrentIndex(self.weights_box.findData("default"))
        self._changed(shaped_by_checkpoint=False)

    def _changed(self, _index: int = 0, shaped_by_checkpoint: bool = True) -> None:
        request = self.current_request()
        if NO_MODEL in (request.name, request.weights):  # "no model" is nothing to load
            return
        if request.weights == FINETUNED:  # nothing to load it from: put back what is shown
            base, architecture, device = self._finetuned
            self.show_finetuned(base, architecture)
            if request.device != device:
                self.refused.emit(
                    "The fine-tuned model exists only in memory: save it (File > Save model), "
                    "then open the file to use it on another device"
                )
            return
        if request.weights == MISSING:  # chosen again: offer the download again
            request = ModelRequest(request.name, "default", request.device)
        family = info_for(request.name)
        if family is not None and not family.pretrained and request.weights == "default":
            request = ModelRequest(request.name, "none", request.device)  # what it means
        # "Random weights" beside a checkpoint: its architecture (shape, classes) untrained
        shaped_by_checkpoint &= self.model_box.currentIndex() == self._shown_index
        if request.weights == "none" and shaped_by_checkpoint and self._checkpoint is not None:
            request = ModelRequest(self._checkpoint, "none", request.device)
        self.model_requested.emit(request)

    def show_request(self, request: ModelRequest, architecture: str) -> None:
        """Reflect the loaded model without emitting anything."""
        for box in (self.model_box, self.weights_box, self.device_box):
            box.blockSignals(True)
        if self.model_box.findData(NO_MODEL) >= 0:  # a model again: "no model" goes
            self.model_box.removeItem(self.model_box.findData(NO_MODEL))
        if library_family(architecture) is not None and self.model_box.findData(architecture) < 0:
            # a timm or Hugging Face model: listed above the entries that ask for another
            first_family = self._first_family_index()
            self.model_box.insertItem(first_family, family_label(architecture), architecture)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(architecture)))
        self._shown_index = self.model_box.currentIndex()
        while self.weights_box.count() > len(WEIGHT_CHOICES):  # the last file's entry
            self.weights_box.removeItem(self.weights_box.count() - 1)
        architectures = [name for name, _ in model_choices()]
        weights_file = request.weights if request.weights not in ("default", "none") else None
        named = request.name in architectures or library_family(request.name) is not None
        weights_file = weights_file or (None if named else request.name)
        self._checkpoint = weights_file if is_checkpoint(weights_file) else None
        if weights_file is None:
            index = self.weights_box.findData(request.weights)
        else:  # a weights file or a checkpoint: show its name (random weights: shaped by it)
            self.weights_box.addItem(f"file: {weights_file.rsplit('/', 1)[-1]}", weights_file)
            index = self.weights_box.count() - 1
            if request.weights == "none":
                index = self.weights_box.findData("none")
        self.weights_box.setCurrentIndex(index)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(request.device)))
        for box in (self.model_box, self.weights_box, self.device_box):
            box.blockSignals(False)

    def _first_family_index(self) -> int:
        for index in range(self.model_box.count()):
            if (self.model_box.itemData(index) or "").startswith(FAMILY_ITEM):
                return index
        return self.model_box.count()

    def show_finetuned(
        self, base: ModelRequest, architecture: str, label: str = "fine-tuned, not saved"
    ) -> None:
        """A model fine-tuned in this session: its architecture, and in the weights box an entry
        that says so. Another architecture or weights entry loads that; the same entry on
        another device is refused (there is no file to load it from)."""
        self.show_request(base, architecture)
        self._finetuned = (base, architecture, base.device)
        self.finetuned_label = label
        self.weights_box.blockSignals(True)
        self.weights_box.addItem(label, FINETUNED)
        self.weights_box.setCurrentIndex(self.weights_box.count() - 1)
        self.weights_box.blockSignals(False)

    def show_missing(self, request: ModelRequest) -> None:
        """No model is loaded: ``request``'s pretrained weights were not downloaded. The
        toolbar says so instead of naming weights that are not there."""
        self.show_request(request, request.name)
        self.weights_box.blockSignals(True)
        self.weights_box.addItem("not downloaded", MISSING)
        self.weights_box.setCurrentIndex(self.weights_box.count() - 1)
        self.weights_box.blockSignals(False)

    def show_none(self) -> None:
        """No model is loaded (a load failed before any worked): both boxes say so, instead
        of naming a model that is not there."""
        for box in (self.model_box, self.weights_box):
            box.blockSignals(True)
        if self.model_box.findData(NO_MODEL) < 0:
            self.model_box.insertItem(0, "no model", NO_MODEL)
        self.model_box.setCurrentIndex(0)
        self._shown_index = 0
        while self.weights_box.count() > len(WEIGHT_CHOICES):
            self.weights_box.removeItem(self.weights_box.count() - 1)
        self.weights_box.addItem("no weights", NO_MODEL)
        self.weights_box.setCurrentIndex(self.weights_box.count() - 1)
        for box in (self.model_box, self.weights_box):
            box.blockSignals(False)

    def set_devices(self, devices: list[str]) -> None:
        current = self.device_box.currentData()
        self.device_box.blockSignals(True)
        self.device_box.clear()
        for device in ["auto", *devices]:
            self.device_box.addItem(device, device)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(current)))
        self.device_box.blockSignals(False)


LAYER_TIP = "Encoder layer ( [ and ] step through layers )"
HEAD_TIP = "One head, or the mean over the layer's heads"
# why the layer and head do not apply, by method: shown as the disabled controls' tooltips
NOT_APPLIED = {m.name: m.not_applied for m in catalogue() if m.not_applied}


class ViewBar(QToolBar):
    """Layer, head and token; the overlay's settings sit in a second toolbar, ``overlay_bar``
    (the window puts it beside the method bar, so that each row fits a 1024 px window)."""

    layer_changed = Signal(int)  # 0-based
    head_changed = Signal(object)  # int or None for the mean
    cls_requested = Signal()
    token_requested = Signal(int)  # a prefix token chosen from the list (distillation, register)
    opacity_changed = Signal(float)
    grid_toggled = Signal(bool)
    aspect_toggled = Signal(bool)  # True: whole images at their own aspect ratio
    scale_locked = Signal(bool)  # True: keep the present colour levels for every map

    def __init__(self) -> None:
        super().__init__("View")
        self.setObjectName("view_toolbar")
        self.layer_spin = QSpinBox()
        self.layer_spin.setRange(1, 1)
        self.layer_spin.setPrefix("Layer ")
        self.layer_spin.setToolTip(LAYER_TIP)
        self.head_box = QComboBox()
        self.head_box.setToolTip(HEAD_TIP)
        self.head_box.setFocusPolicy(Qt.NoFocus)
        self.set_num_heads(1)
        self.cls_button = QPushButton("CLS token")
        self.cls_button.setToolTip("Show where the CLS token attends")
        self.cls_button.setFocusPolicy(Qt.NoFocus)
        self.prefix_box = QComboBox()  # shown for models with more than one prefix token
        self.prefix_box.setToolTip("A prefix token: class, distillation or register token")
        self.prefix_box.setFocusPolicy(Qt.NoFocus)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.setFocusPolicy(Qt.NoFocus)
        self.grid_box = QCheckBox("Grid")
        self.grid_box.setChecked(True)
        self.grid_box.setToolTip("Draw the patch grid")
        self.grid_box.setFocusPolicy(Qt.NoFocus)
        self.aspect_box = QCheckBox("Whole image")
        self.aspect_box.setToolTip(
            "Analyse the whole image at its own aspect ratio (a rectangular patch grid, the "
            "position embeddings resized to it) instead of the model's square centre crop"
        )
        self.aspect_box.setFocusPolicy(Qt.NoFocus)
        self.lock_box = QCheckBox("Lock scale")
        self.lock_box.setToolTip(
            "Keep the present colour scale for every layer, head and image shown after, so that "
            "colours compare (values beyond it take the end colours); off: each map on its own "
            "range. The colour bar always shows the scale in use"
        )
        self.lock_box.setFocusPolicy(Qt.NoFocus)
        self.addWidget(self.layer_spin)
        self.addWidget(self.head_box)
        self._cls_action = self.addWidget(self.cls_button)
        self._prefix_action = self.addWidget(self.prefix_box)
        self._prefix_action.setVisible(False)
        self.overlay_bar = QToolBar("Overlay")
        self.overlay_bar.setObjectName("overlay_toolbar")
        self.overlay_bar.addWidget(self.aspect_box)
        self.overlay_bar.addWidget(QLabel("  Opacity "))
        self.overlay_bar.addWidget(self.opacity)
        self.overlay_bar.addWidget(self.grid_box)
        self.overlay_bar.addWidget(self.lock_box)
        self.layer_spin.valueChanged.connect(lambda v: self.layer_changed.emit(v - 1))
        self.head_box.currentIndexChanged.connect(
            lambda _i: self.head_changed.emit(self.head_box.currentData())
        )
        self.cls_button.clicked.connect(self.cls_requested)
        self.prefix_box.activated.connect(lambda i: self.token_requested.emit(i))
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.grid_box.toggled.connect(self.grid_toggled)
        self.aspect_box.toggled.connect(self.aspect_toggled)
        self.lock_box.toggled.connect(self.scale_locked)

    def set_num_layers(self, layers: int) -> None:
        self.layer_spin.setRange(1, layers)
        self.layer_spin.setSuffix(f" / {layers}")

    def set_prefix_tokens(self, names: tuple[str, ...]) -> None:
        """The model's prefix tokens: one (the CLS button), several (a list), or none."""
        self.prefix_box.blockSignals(True)
        self.prefix_box.clear()
        for name in names:
            self.prefix_box.addItem(f"{name} token" if name in ("CLS", "distillation") else name)
        self.prefix_box.blockSignals(False)
        self._cls_action.setVisible(len(names) == 1)
        self._prefix_action.setVisible(len(names) > 1)
        if names:
            self.cls_button.setText(f"{names[0]} token")

    def show_token(self, token: int) -> None:
        """Reflect the selected token in the prefix list (patches leave it as it was)."""
        if 0 <= token < self.prefix_box.count():
            self.prefix_box.blockSignals(True)
            self.prefix_box.setCurrentIndex(token)
            self.prefix_box.blockSignals(False)

    def set_num_heads(self, heads: int) -> None:
        if self.head_box.count() == heads + 1:
            return
        self.head_box.blockSignals(True)
        self.head_box.clear()
        self.head_box.addItem("Mean of heads", None)
        for head in range(heads):
            self.head_box.addItem(f"Head {head + 1}", head)
        self.head_box.blockSignals(False)

    def set_applies(self, method: str) -> None:
        """The layer and head are enabled while a shown image follows them (raw attention); for
        rollout or relevance they are disabled, their tooltips saying why."""
        reason = NOT_APPLIED.get(method)
        for widget, tip in ((self.layer_spin, LAYER_TIP), (self.head_box, HEAD_TIP)):
            widget.setEnabled(reason is None)
            widget.setToolTip(tip if reason is None else reason)

    def applies(self) -> bool:
        """Whether the layer and head choose what the image shows."""
        return self.layer_spin.isEnabled()

    def show_selection(self, layer: int, head: int | None) -> None:
        """Reflect the explorer's state without emitting anything."""
        self.layer_spin.blockSignals(True)
        self.layer_spin.setValue(layer + 1)
        self.layer_spin.blockSignals(False)
        self.head_box.blockSignals(True)
        self.head_box.setCurrentIndex(0 if head is None else head + 1)
        self.head_box.blockSignals(False)
