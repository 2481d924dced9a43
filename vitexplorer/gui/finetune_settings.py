"""The training settings form: what to train (the explorer's model, fine-tuned, or a small ViT
from scratch, with its architecture), dataset, images per class, freeze policy or augmentation,
optimiser, epochs, the time-lapse's probe images, and the less common settings folded away under
"More settings".

It only collects values (the fields of ``core.training.FinetuneConfig``, or of ``TrainConfig``
and the architecture from scratch) and remembers them in QSettings, each mode's apart; the
engine checks them and says what is wrong. Each widget's range lies inside what
``FinetuneConfig.check`` accepts (a test sets every widget to its ends and checks), and no
widget takes NaN or infinity: Qt would quietly clamp a NaN to the maximum.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.io.folders import subfolders
from vitexplorer.core.io.paths import UserPathError, expand_user
from vitexplorer.core.models.architecture import default_warmup
from vitexplorer.core.models.download import CIFAR10_FOLDER, default_data_root
from vitexplorer.core.training.config import (
    MAX_PROBES,
    FinetuneConfig,
    Setting,
    TrainConfig,
    defaults_of,
    described,
)
from vitexplorer.core.training.pixel_csv import is_pixel_csv
from vitexplorer.gui.architecture_form import ERROR_STYLE, ArchitectureForm
from vitexplorer.gui.finetune_fields import field_value, set_field, spin_box, widget_for
from vitexplorer.gui.path_edit import PathEdit

W = TypeVar("W", bound=QWidget)
CIFAR10 = "cifar10"
FOLDER = "folder"
CIFAR10_CLASSES = 10
# torchvision's CIFAR10.classes, in its order (the demo model's classes)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")  # fmt: skip
HEAD_CHOICES = [(c.value, c.label, c.tip) for c in described(FinetuneConfig, "head").choices]
PROBE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"
FINETUNE, SCRATCH = "finetune", "scratch"  # the two modes, and their QSettings groups
MODES = [
    (FINETUNE, "Fine-tune the explorer's model",
     "Start from the model the explorer shows: a new head, and as much of the rest as you say"),
    (SCRATCH, "A new small ViT, from scratch",
     "Random weights, the architecture set below, every weight trained: the path of learning "
     "how ViTs work"),
]  # fmt: skip
AUGMENTATION_CHOICES = [
    (c.value, c.label) for c in described(TrainConfig, "augment_policy").choices
]
# the fields each mode's form sets (and remembers, each mode's apart)
COMMON_FIELDS = (
    "per_class", "test_per_class", "val_fraction", "optimizer", "lr", "weight_decay", "momentum",
    "batch_size", "epochs", "schedule", "warmup_epochs", "label_smoothing", "mixed_precision",
    "seed", "probes",
)  # fmt: skip
FINETUNE_FIELDS = (*COMMON_FIELDS, "freeze", "augment", "head")
SCRATCH_FIELDS = (*COMMON_FIELDS, "augment_policy", "clip_grad")
# Each mode's starting values: its configuration's defaults
DEFAULTS = {FINETUNE: defaults_of(FinetuneConfig), SCRATCH: defaults_of(TrainConfig)}
# Each choice is named by what it trains. The values are what QSettings keeps (and what older
# versions kept, under other names): "none" freezes nothing, so everything trains.
FREEZE_CHOICES = [(c.value, c.label, c.tip) for c in described(FinetuneConfig, "freeze").choices]
# the settings the form shows (the architecture has a form of its own)
FORM_SETTINGS: dict[str, Setting] = {
    **{name: described(FinetuneConfig, name) for name in FINETUNE_FIELDS},
    **{name: described(TrainConfig, name) for name in ("augment_policy", "clip_grad")},
}
# what older versions remembered under other names: the field, and the value from the old one
OLD_KEYS = {
    "val_fraction": ("val_percent", lambda percent: float(percent) / 100),
    "warmup_epochs": ("warmup", float),
    "label_smoothing": ("smoothing", float),
}


class FinetuneSettings(QWidget):
    """Every setting of a run; ``changed`` when one that changes the parameter count, the
    memory or the time a run takes moves."""

    changed = Signal()
    download_requested = Signal()

    def __init__(self, settings: QSettings) -> None:
        super().__init__()
        self.store = settings
        self.data_root = default_data_root()
        self.num_layers = 1
        self._wanted_blocks = 1  # remembered before the model's depth is known
        self.mode = FINETUNE

        # what to train
        self.mode_box = QComboBox()
        for value, label, tip in MODES:
            self.mode_box.addItem(label, value)
            self.mode_box.setItemData(self.mode_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.architecture = ArchitectureForm()
        # a widget per setting, made from its metadata (core.training.config), by field name
        self.widgets = {name: widget_for(meta, DEFAULTS[FINETUNE if name in DEFAULTS[FINETUNE]
                                                       else SCRATCH][name])
                        for name, meta in FORM_SETTINGS.items()}  # fmt: skip
        self.augment_box = self._widget("augment_policy", QComboBox)
        self.clip_grad = self._widget("clip_grad", QDoubleSpinBox)
        # dataset
        self.source_box = QComboBox()
        self.source_box.addItem("CIFAR-10", CIFAR10)
        self.source_box.addItem("Folder of class subfolders", FOLDER)
        self.folder_edit = PathEdit()
        self.folder_edit.setPlaceholderText("a folder of class subfolders, or a pixel CSV file")
        self.folder_button = QPushButton("Choose…")
        self.csv_button = QPushButton("CSV…")
        self.csv_button.setToolTip(
            "A pixel CSV file: header label,pixel0,pixel1,..., then one square grayscale image "
            "per row (MNIST-style digits)"
        )
        self.download_button = QPushButton("Download CIFAR-10 (170 MB)")
        self.dataset_label = QLabel("")
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setStyleSheet("color: #555;")
        # what to train
        self.per_class = self._widget("per_class", QSpinBox)
        self.freeze_box = self._widget("freeze", QComboBox)
        self.blocks = spin_box(1, 1, 1, " block")
        self.head_box = self._widget("head", QComboBox)
        self.head_label = QLabel("")  # what the run will start from, said by the panel
        self.head_label.setWordWrap(True)
        self.head_label.setStyleSheet("color: #555;")
        self.optimizer_box = self._widget("optimizer", QComboBox)
        self.lr = self._widget("lr", QDoubleSpinBox)
        self.epochs = self._widget("epochs", QSpinBox)
        self.probes = self._widget("probes", QSpinBox)
        self.probes.setSpecialValueText("off")
        self.probe_files: tuple[str, ...] = ()  # the user's probe images, instead of test images
        self.probe_button = QPushButton("Choose images…")
        self.probe_button.setToolTip("Follow images of your own instead of test images")
        self.probe_clear = QToolButton()
        self.probe_clear.setText("✕")
        self.probe_clear.setToolTip("Follow test images again, not the images chosen")
        self.probe_clear.setAutoRaise(True)
        self.probe_label = QLabel("")
        self.probe_label.setWordWrap(True)
        self.probe_label.setStyleSheet("color: #555;")
        self.params_label = QLabel("")
        self.params_label.setWordWrap(True)
        # more settings
        self.test_per_class = self._widget("test_per_class", QSpinBox)
        self.val_percent = self._widget("val_fraction", QSpinBox)  # counted in percent
        self.batch_size = self._widget("batch_size", QSpinBox)
        self.weight_decay = self._widget("weight_decay", QDoubleSpinBox)
        self.momentum = self._widget("momentum", QDoubleSpinBox)
        self.schedule_box = self._widget("schedule", QComboBox)
        self.warmup = self._widget("warmup_epochs", QDoubleSpinBox)
        self.smoothing = self._widget("label_smoothing", QDoubleSpinBox)
        self.augment = self._widget("augment", QCheckBox)
        self.mixed_precision = self._widget("mixed_precision", QCheckBox)
        self.precision_note = QLabel(FORM_SETTINGS["mixed_precision"].tip)
        self.precision_note.setWordWrap(True)  # a narrow column wraps it, never clips it
        self.precision_note.setStyleSheet("color: #555;")
        self.seed = self._widget("seed", QSpinBox)

        self._build()
        self._epochs_seen = self.epochs.value()
        self.epochs.valueChanged.connect(self._epochs_changed)
        self._restore_dataset()
        stored = self.store.value("train/mode")
        self.mode = SCRATCH if stored == SCRATCH else FINETUNE
        self.mode_box.setCurrentIndex(self.mode_box.findData(self.mode))
        self._restore()
        self._show_mode()
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.architecture.changed.connect(self.changed)
        # the memory and time estimates follow these too
        for box in (self.per_class, self.test_per_class, self.val_percent, self.epochs,
                    self.batch_size):  # fmt: skip
            box.valueChanged.connect(self.changed)
        self._epochs_changed(self.epochs.value())
        self.source_box.currentIndexChanged.connect(self._source_changed)
        self.folder_button.clicked.connect(self.choose_folder)
        self.csv_button.clicked.connect(self.choose_csv)
        self.folder_edit.editingFinished.connect(self._source_changed)
        self.download_button.clicked.connect(self.download_requested)
        self.freeze_box.currentIndexChanged.connect(self._freeze_changed)
        self.head_box.currentIndexChanged.connect(self.changed)
        self.optimizer_box.currentIndexChanged.connect(self._optimizer_changed)
        self.blocks.valueChanged.connect(self._blocks_changed)
        self.probe_button.clicked.connect(self.choose_probe_files)
        self.probe_clear.clicked.connect(lambda: self.set_probe_files(()))
        self._source_changed()
        self._freeze_changed()
        self._optimizer_changed()

    def _widget(self, name: str, kind: type[W]) -> W:
        """The form's widget of the setting ``name``, a ``kind`` as its metadata makes it."""
        widget = self.widgets[name]
        if not isinstance(widget, kind):
            raise TypeError(f"the {name} setting shows as a {type(widget).__name__}")
        return widget

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        top.addRow("Train", self.mode_box)
        layout.addLayout(top)
        layout.addWidget(self.architecture)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.main_form = form
        form.addRow("Dataset", self.source_box)
        # the path on a line of its own: beside the buttons, a narrow column left it 25 px
        folder_rows = QVBoxLayout()
        folder_rows.addWidget(self.folder_edit)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.folder_button)
        buttons.addWidget(self.csv_button)
        folder_rows.addLayout(buttons)
        self.folder_widget = QWidget()
        self.folder_widget.setLayout(folder_rows)
        folder_rows.setContentsMargins(0, 0, 0, 0)
        form.addRow("", self.folder_widget)
        form.addRow("", self.download_button)
        form.addRow("", self.dataset_label)
        form.addRow(_label("per_class"), self.per_class)
        freeze_row = QHBoxLayout()
        freeze_row.setContentsMargins(0, 0, 0, 0)
        freeze_row.addWidget(self.freeze_box, 1)
        freeze_row.addWidget(self.blocks)
        self.freeze_widget = QWidget()
        self.freeze_widget.setLayout(freeze_row)
        form.addRow(_label("freeze"), self.freeze_widget)
        form.addRow(_label("head"), self.head_box)
        form.addRow("", self.head_label)
        form.addRow(_label("augment_policy"), self.augment_box)
        form.addRow(_label("optimizer"), self.optimizer_box)
        form.addRow(_label("lr"), self.lr)
        form.addRow(_label("epochs"), self.epochs)
        probe_row = QHBoxLayout()
        probe_row.setContentsMargins(0, 0, 0, 0)
        probe_row.addWidget(self.probes, 1)
        probe_row.addWidget(self.probe_button)
        probe_row.addWidget(self.probe_clear)
        self.probe_widget = QWidget()
        self.probe_widget.setLayout(probe_row)
        form.addRow(_label("probes"), self.probe_widget)
        form.addRow("", self.probe_label)
        layout.addLayout(form)
        layout.addWidget(self.params_label)

        self.more_button = QToolButton()
        self.more_button.setText("More settings")
        self.more_button.setCheckable(True)
        self.more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more_button.setArrowType(Qt.ArrowType.RightArrow)
        self.more_button.setAutoRaise(True)
        self.more = QWidget()
        more = QFormLayout(self.more)
        more.setContentsMargins(12, 0, 0, 0)
        more.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        more.addRow(_label("test_per_class"), self.test_per_class)
        more.addRow(_label("val_fraction"), self.val_percent)
        more.addRow(_label("batch_size"), self.batch_size)
        more.addRow(_label("weight_decay"), self.weight_decay)
        more.addRow(_label("momentum"), self.momentum)
        more.addRow(_label("schedule"), self.schedule_box)
        more.addRow(_label("warmup_epochs"), self.warmup)
        more.addRow(_label("label_smoothing"), self.smoothing)
        more.addRow(_label("clip_grad"), self.clip_grad)
        self.more_form = more
        more.addRow("", self.augment)
        more.addRow("", self.mixed_precision)
        more.addRow("", self.precision_note)
        more.addRow(_label("seed"), self.seed)
        self.more.setVisible(False)
        self.more_button.toggled.connect(self._toggle_more)
        layout.addWidget(self.more_button)
        layout.addWidget(self.more)

    def _toggle_more(self, shown: bool) -> None:
        self.more.setVisible(shown)
        self.more_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # --- values ---------------------------------------------------------------------------
    def source(self) -> str:
        """``cifar10``, or the folder's or pixel CSV's path."""
        if self.source_box.currentData() == CIFAR10:
            return CIFAR10
        return self.folder_edit.text().strip()

    def freeze(self) -> str:
        value = self.freeze_box.currentData()
        return f"last:{self.blocks.value()}" if value == "last" else value

    def trained_blocks(self) -> int:
        value = self.freeze_box.currentData()
        return {"head": 0, "none": self.num_layers}.get(value, self.blocks.value())

    def from_scratch(self) -> bool:
        return self.mode == SCRATCH

    def config(self) -> dict:
        """The fields of core.training.FinetuneConfig, or from scratch of TrainConfig."""
        values = {name: field_value(widget, FORM_SETTINGS[name])
                  for name, widget in self._fields().items()}  # fmt: skip
        values["probe_files"] = self.probe_files
        if not self.from_scratch():
            return {**values, "freeze": self.freeze()}
        return {**values, "augment": False}  # the augmentation is augment_policy's

    def num_classes(self) -> int | None:
        """Classes of the chosen dataset, if a quick look can tell (for the parameter count)."""
        names = self.class_names()
        return None if names is None else len(names)

    def class_names(self) -> tuple[str, ...] | None:
        """The chosen dataset's class names in the dataset reader's order, if a quick look can
        tell (a pixel CSV's are known once the file is read)."""
        if self.source_box.currentData() == CIFAR10:
            return CIFAR10_NAMES
        path = self.source()
        if not path or is_pixel_csv(path):
            return None
        try:
            folders = _subfolders(path)
            if {"train", "test"} <= set(folders):
                folders = _subfolders(os.path.join(path, "train"))
        except OSError:
            return None
        return tuple(folders) if len(folders) >= 2 else None

    def dataset_problem(self) -> str | None:
        """Why no run can start on the chosen dataset yet (not downloaded, not there), or None."""
        if self.source_box.currentData() == CIFAR10:
            if self.cifar10_present():
                return None
            return "CIFAR-10 is not on this computer yet: download it (the button above) first"
        path = self.source()
        try:
            missing = bool(path) and not os.path.exists(expand_user(path))
        except UserPathError as exc:  # '~nouser/...'
            return f"{exc}: choose a folder of class subfolders or a pixel CSV"
        if missing:
            return f"{path} does not exist: choose a folder of class subfolders or a pixel CSV"
        return None

    def set_data_root(self, root: str | Path) -> None:
        """Where CIFAR-10 is kept and downloaded to."""
        self.data_root = Path(root)
        self._source_changed()

    def cifar10_present(self) -> bool:
        return (self.data_root / CIFAR10_FOLDER).is_dir()

    def set_num_layers(self, layers: int) -> None:
        self.num_layers = max(1, layers)
        wanted = self._wanted_blocks
        self.blocks.blockSignals(True)
        self.blocks.setRange(1, self.num_layers)
        self.blocks.setValue(min(wanted, self.num_layers))
        self.blocks.blockSignals(False)
        self.blocks.setSuffix(" block" if self.blocks.value() == 1 else " blocks")
        self.blocks.setToolTip(f"How many of the model's {self.num_layers} blocks train")

    def set_params_text(self, text: str) -> None:
        self.params_label.setText(text)

    def set_head_text(self, text: str) -> None:
        self.head_label.setText(text)

    # --- reactions ------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.folder_edit.text() or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Dataset folder (one subfolder per class)",
                                                start)  # fmt: skip
        if path:
            self.folder_edit.setText(path)
            self.source_box.setCurrentIndex(self.source_box.findData(FOLDER))
            self._source_changed()

    def choose_csv(self) -> None:
        start = os.path.dirname(self.folder_edit.text()) or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Pixel CSV (label,pixel0,pixel1,...)", start,
                                              "CSV files (*.csv);;All files (*)")  # fmt: skip
        if path:
            self.folder_edit.setText(path)
            self.source_box.setCurrentIndex(self.source_box.findData(FOLDER))
            self._source_changed()

    def choose_probe_files(self) -> None:
        start = os.path.dirname(self.probe_files[0]) if self.probe_files else str(Path.home())
        paths, _ = QFileDialog.getOpenFileNames(self, "Probe images for the time-lapse", start,
                                                PROBE_FILTER)  # fmt: skip
        if paths:
            self.set_probe_files(paths[:MAX_PROBES])

    def set_probe_files(self, paths) -> None:  # a sequence of paths
        """Follow ``paths`` in the time-lapse instead of test images (none: test images)."""
        self.probe_files = tuple(str(p) for p in paths)
        chosen = bool(self.probe_files)
        self.probes.setEnabled(not chosen)
        self.probe_clear.setVisible(chosen)
        self.probe_label.setVisible(chosen)
        names = ", ".join(Path(p).name for p in self.probe_files[:3])
        more = f" and {len(self.probe_files) - 3} more" if len(self.probe_files) > 3 else ""
        self.probe_label.setText(f"The time-lapse follows your images: {names}{more}")
        self.probe_label.setToolTip("\n".join(self.probe_files))

    def refresh_dataset_status(self) -> None:
        self._source_changed()

    def _source_changed(self, _index: int = 0) -> None:
        cifar = self.source_box.currentData() == CIFAR10
        self.folder_widget.setVisible(not cifar)
        present = cifar and self.cifar10_present()
        self.download_button.setVisible(cifar and not present)
        if cifar:
            root = breakable(str(self.data_root))
            self.dataset_label.setText(
                f"CIFAR-10 is in {root}" if present
                else f"CIFAR-10 is not on this computer yet; it will be kept in {root}"
            )  # fmt: skip
        else:
            n = self.num_classes() if self.source() else None
            problem = self.dataset_problem()
            if problem is not None:
                text = f"<span style='{ERROR_STYLE}'>{problem[:1].upper()}{problem[1:]}.</span>"
            elif is_pixel_csv(self.source()):
                text = "A pixel CSV, one image per row; the test images are set aside from it"
            elif n is None:
                text = "Class subfolders of images, optionally inside train/ and test/, or a CSV"
            else:
                text = f"{n} class folders"
            self.dataset_label.setText(text)
        self.changed.emit()

    def _freeze_changed(self, _index: int = 0) -> None:
        self.blocks.setVisible(self.freeze_box.currentData() == "last")
        self.changed.emit()

    def _blocks_changed(self, value: int) -> None:
        self._wanted_blocks = value
        self.blocks.setSuffix(" block" if value == 1 else " blocks")
        self.changed.emit()

    def _epochs_changed(self, epochs: int) -> None:
        """The warm-up cannot be longer than the run (the engine refuses it). From scratch, a
        warm-up the user left at the recipe's value for the old length follows the new one (a
        tenth of the run, at most 5 epochs), as ``vitexplorer train`` does."""
        previous, self._epochs_seen = self._epochs_seen, epochs
        # whether the warm-up follows is read before the new maximum clamps it: clamped first,
        # 5 warm-up epochs became 3 of a 3-epoch run, no longer the recipe's, and stayed the
        # whole run
        followed = round(default_warmup(previous), self.warmup.decimals())
        follows = self.from_scratch() and math.isclose(self.warmup.value(), followed)
        self.warmup.setMaximum(float(epochs))
        if follows:
            self.warmup.setValue(round(default_warmup(epochs), self.warmup.decimals()))

    def _optimizer_changed(self, _index: int = 0) -> None:
        self.momentum.setEnabled(self.optimizer_box.currentData() == "sgd")

    def _mode_changed(self, _index: int = 0) -> None:
        """Each mode keeps its own values: those of the mode left are remembered, those of the
        mode chosen come back (its defaults the first time)."""
        mode = self.mode_box.currentData()
        if mode == self.mode:
            return
        self.remember()
        self.mode = mode
        self._restore()
        self._show_mode()
        self.changed.emit()

    def _show_mode(self) -> None:
        scratch = self.from_scratch()
        self.architecture.setVisible(scratch)
        self.main_form.setRowVisible(self.freeze_widget, not scratch)
        self.main_form.setRowVisible(self.head_box, not scratch)
        self.main_form.setRowVisible(self.head_label, not scratch)
        self.main_form.setRowVisible(self.augment_box, scratch)
        self.more_form.setRowVisible(self.augment, not scratch)
        self.more_form.setRowVisible(self.clip_grad, scratch)

    # --- memory ---------------------------------------------------------------------------
    def _fields(self) -> dict:
        """The widgets of this mode's settings, by field name (also their QSettings keys)."""
        names = SCRATCH_FIELDS if self.from_scratch() else FINETUNE_FIELDS
        return {name: self.widgets[name] for name in names}

    def _dataset_fields(self) -> dict:
        """The dataset, shared by both modes (kept where older versions kept it)."""
        return {"source": self.source_box, "folder": self.folder_edit}

    def remember(self) -> None:
        """This mode's values under their field names, in the fields' units; the names older
        versions kept them under go (they were read once, by :meth:`_restore`)."""
        self.store.setValue("train/mode", self.mode)
        for key, widget in self._dataset_fields().items():
            self.store.setValue(f"finetune/{key}", _value(widget))
        for key, value in self.config().items():
            if key in self._fields() or key == "probe_files":
                self.store.setValue(f"{self.mode}/{key}", _stored(value))
        for old in (*(old for old, _ in OLD_KEYS.values()), "blocks"):
            self.store.remove(f"{self.mode}/{old}")
        if self.from_scratch():
            self.architecture.remember(self.store, SCRATCH)

    def _restore_dataset(self) -> None:
        for key, widget in self._dataset_fields().items():
            value = self.store.value(f"finetune/{key}")
            if value is not None:
                _set_dataset(widget, value)

    def _restore(self) -> None:
        """This mode's remembered values (under the names older versions used, where only
        those are there), or its defaults where there are none."""
        defaults = DEFAULTS[self.mode]
        for key, widget in self._fields().items():
            value = self._remembered(key)
            if value is None:
                value = defaults[key]
            if key == "freeze":
                self._set_freeze(str(value))
            else:
                set_field(widget, FORM_SETTINGS[key], value)
        files = self.store.value(f"{self.mode}/probe_files")
        files = [files] if isinstance(files, str) else files if isinstance(files, list) else []
        self.set_probe_files(files[:MAX_PROBES])
        if self.from_scratch():
            self.architecture.restore(self.store, SCRATCH)

    def _remembered(self, key: str) -> object:
        """The value remembered for the field ``key`` in this mode, in the field's units: under
        its name, or under the name an older version used; None when neither is there."""
        value = self.store.value(f"{self.mode}/{key}")
        if value is not None or key not in OLD_KEYS:
            return value
        old, convert = OLD_KEYS[key]
        value = self.store.value(f"{self.mode}/{old}")
        try:
            return None if value is None else convert(value)
        except (TypeError, ValueError):
            return None

    def _set_freeze(self, value: str) -> None:
        """Show the freeze policy ``value`` (head, last:K or none; older versions kept "last"
        and the number of blocks apart)."""
        blocks: object = None
        if value.startswith("last:"):
            value, blocks = "last", value[5:]
        elif value == "last":
            blocks = self.store.value(f"{self.mode}/blocks")
        try:
            wanted = None if blocks is None else int(str(blocks))
        except ValueError:  # last:many: not a policy, the first choice
            value, wanted = "", None
        set_field(self.freeze_box, FORM_SETTINGS["freeze"], value)
        if wanted is not None:
            self._wanted_blocks = wanted
            self.set_num_layers(self.num_layers)


def _label(name: str) -> str:
    """The form's label of the setting ``name``."""
    return FORM_SETTINGS[name].label


def _stored(value: object) -> object:
    """``value`` as QSettings keeps it: true or false as 1 or 0, a tuple as a list."""
    if isinstance(value, bool):
        return int(value)
    return list(value) if isinstance(value, tuple) else value


def _value(widget: QWidget) -> object:
    """What a dataset widget holds: the source's choice or the folder's text."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QLineEdit):
        return widget.text()
    raise TypeError(f"a dataset setting shows as a {type(widget).__name__}")


def _set_dataset(widget: QWidget, value: object) -> None:
    """Show a remembered dataset choice or folder."""
    if isinstance(widget, QComboBox):
        widget.setCurrentIndex(max(0, widget.findData(value)))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))


def breakable(path: str) -> str:
    """``path`` with a zero-width space after each separator, so that a word-wrapped label can
    break a long path instead of cutting it off."""
    return path.replace("/", "/\u200b").replace("\\", "\\\u200b")


def _subfolders(path: str) -> list[str]:
    """Names of the class folders in ``path``, as the dataset reader lists them."""
    return [p.name for p in subfolders(path)]
