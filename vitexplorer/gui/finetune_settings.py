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
from vitexplorer.core.training.pixel_csv import is_pixel_csv
from vitexplorer.gui.architecture_form import ERROR_STYLE, ArchitectureForm
from vitexplorer.gui.path_edit import PathEdit

CIFAR10 = "cifar10"
FOLDER = "folder"
CIFAR10_CLASSES = 10
# torchvision's CIFAR10.classes, in its order (the demo model's classes)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")  # fmt: skip
HEAD_CHOICES = [
    ("keep", "The model's own, when it fits",
     "Keep the model's classifier when the dataset's classes are the model's (same names, same "
     "order); otherwise a new head"),
    ("new", "A new head",
     "A new classifier for the dataset's classes, every weight zero: every class starts equally "
     "likely"),
]  # fmt: skip
# core.timelapse's DEFAULT_PROBES and MAX_PROBES (a test holds them equal; importing it here
# would import torch before the window shows)
DEFAULT_PROBES, MAX_PROBES = 10, 64
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
    ("none", "None"),
    ("flip", "Horizontal flips"),
    ("crop-flip", "Crops and flips"),
    ("crop-flip-rotate", "Crops, flips, small turns"),
    ("trivialaugment", "Crops, flips, TrivialAugment"),
    ("randaugment", "Crops, flips, RandAugment"),
]
# Each mode's starting values (TrainConfig's from scratch, FinetuneConfig's otherwise)
DEFAULTS = {
    FINETUNE: {
        "per_class": 100, "test_per_class": 50, "val_percent": 10, "lr": 1e-3, "epochs": 5,
        "batch_size": 64, "weight_decay": 1e-4, "warmup": 0.0, "smoothing": 0.0,
        "optimizer": "adamw", "schedule": "cosine", "momentum": 0.9, "seed": 0,
        "mixed_precision": 1, "probes": DEFAULT_PROBES, "head": "keep",
    },
    SCRATCH: {
        "per_class": 5000, "test_per_class": 1000, "val_percent": 10, "lr": 1e-3, "epochs": 50,
        "batch_size": 128, "weight_decay": 0.05, "warmup": 5.0, "smoothing": 0.1,
        "optimizer": "adamw", "schedule": "cosine", "momentum": 0.9, "seed": 0,
        "mixed_precision": 1, "augment_policy": "crop-flip", "clip_grad": 1.0,
        "probes": DEFAULT_PROBES,
    },
}  # fmt: skip
# Each choice is named by what it trains. The values are what QSettings keeps (and what older
# versions kept, under other names): "none" freezes nothing, so everything trains.
FREEZE_CHOICES = [
    ("head", "Head only", "Only a new classification head trains; the model stays as it is"),
    (
        "last",
        "Head + last blocks",
        "A new head and the model's last blocks train (how many: the box beside)",
    ),
    ("none", "Everything", "Every parameter trains: embeddings, all blocks and a new head"),
]


class SciSpinBox(QDoubleSpinBox):
    """A positive number shown as 0.001 or 3e-05; the arrows multiply or divide by 2. Only
    finite numbers within the range can be entered."""

    def __init__(self, value: float, minimum: float = 0.0, maximum: float = 10.0) -> None:
        super().__init__()
        self.setDecimals(12)
        self.setRange(minimum, maximum)
        self.setValue(value)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:
        return f"{value:g}"

    def valueFromText(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            return self.value()
        return value if math.isfinite(value) else self.value()

    def validate(self, text: str, pos: int):
        from PySide6.QtGui import QValidator

        stripped = text.strip()
        if not stripped or stripped.endswith(("e", "e-", "E", "E-", ".", "-")):
            return QValidator.Intermediate, text, pos
        try:
            value = float(stripped)
        except ValueError:
            return QValidator.Invalid, text, pos
        if not math.isfinite(value):  # nan, inf, 1e400
            return QValidator.Invalid, text, pos
        if not self.minimum() <= value <= self.maximum():  # more typing may mend it (1e-5)
            return QValidator.Intermediate, text, pos
        return QValidator.Acceptable, text, pos

    def stepBy(self, steps: int) -> None:
        value = self.value() or self.minimum() or 1e-4
        self.setValue(value * 2.0**steps)


def _spin(low: int, high: int, value: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setKeyboardTracking(False)
    return box


def _double(low: float, high: float, value: float, step: float, decimals: int = 2):
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setKeyboardTracking(False)
    return box


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
            self.mode_box.setItemData(self.mode_box.count() - 1, tip, Qt.ToolTipRole)
        self.architecture = ArchitectureForm()
        self.augment_box = QComboBox()
        for value, label in AUGMENTATION_CHOICES:
            self.augment_box.addItem(label, value)
        self.augment_box.setToolTip(
            "Random changes to each training image: crops of the image padded by 4 px, "
            "left-right flips, turns of up to 15 degrees, torchvision's policies"
        )
        self.clip_grad = _double(0.0, 1000.0, 1.0, 0.5, 2)
        self.clip_grad.setToolTip("The largest gradient norm a step may take; 0 for no clipping")
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
        self.per_class = _spin(1, 100000, 100)
        self.per_class.setToolTip("Training images per class (a tenth of them validate)")
        self.freeze_box = QComboBox()
        for value, label, tip in FREEZE_CHOICES:
            self.freeze_box.addItem(label, value)
            self.freeze_box.setItemData(self.freeze_box.count() - 1, tip, Qt.ToolTipRole)
        self.freeze_box.setToolTip("What trains; the rest keeps the base model's values")
        self.blocks = _spin(1, 1, 1, " block")
        self.head_box = QComboBox()
        for value, label, tip in HEAD_CHOICES:
            self.head_box.addItem(label, value)
            self.head_box.setItemData(self.head_box.count() - 1, tip, Qt.ToolTipRole)
        self.head_box.setToolTip("Which classifier the run starts from")
        self.head_label = QLabel("")  # what the run will start from, said by the panel
        self.head_label.setWordWrap(True)
        self.head_label.setStyleSheet("color: #555;")
        self.optimizer_box = QComboBox()
        self.optimizer_box.addItem("AdamW", "adamw")
        self.optimizer_box.addItem("SGD with momentum", "sgd")
        self.lr = SciSpinBox(1e-3, 1e-7, 10.0)
        self.lr.setToolTip("Learning rate (type 3e-4 or use the arrows to halve and double it)")
        self.epochs = _spin(1, 1000, 5)
        self.probes = _spin(0, MAX_PROBES, DEFAULT_PROBES)
        self.probes.setSpecialValueText("off")
        self.probes.setToolTip(
            "The time-lapse follows this many test images (a class-balanced handful): what the "
            "model does with them before the first step and after every epoch, saved with the "
            "model. 0 turns it off."
        )
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
        self.test_per_class = _spin(1, 100000, 50)
        self.val_percent = _spin(0, 90, 10, " %")
        self.batch_size = _spin(1, 4096, 64)
        self.weight_decay = SciSpinBox(1e-4, 0.0, 10.0)
        self.momentum = _double(0.0, 0.999, 0.9, 0.05, 3)
        self.schedule_box = QComboBox()
        self.schedule_box.addItem("Cosine decay", "cosine")
        self.schedule_box.addItem("Constant", "constant")
        self.warmup = _double(0.0, 100.0, 0.0, 0.5, 1)
        self.smoothing = _double(0.0, 0.9, 0.0, 0.05)
        self.augment = QCheckBox("Random horizontal flips")
        self.mixed_precision = QCheckBox("Mixed precision")
        self.mixed_precision.setChecked(True)
        self.precision_note = QLabel("On a GPU, or a CPU with AMX; elsewhere full precision")
        self.precision_note.setWordWrap(True)  # a narrow column wraps it, never clips it
        self.precision_note.setStyleSheet("color: #555;")
        self.mixed_precision.setToolTip(self.precision_note.text())
        self.seed = _spin(0, 2**31 - 1, 0)

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

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        top.addRow("Train", self.mode_box)
        layout.addLayout(top)
        layout.addWidget(self.architecture)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
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
        form.addRow("Images per class", self.per_class)
        freeze_row = QHBoxLayout()
        freeze_row.setContentsMargins(0, 0, 0, 0)
        freeze_row.addWidget(self.freeze_box, 1)
        freeze_row.addWidget(self.blocks)
        self.freeze_widget = QWidget()
        self.freeze_widget.setLayout(freeze_row)
        form.addRow("Fine-tune", self.freeze_widget)
        form.addRow("Head", self.head_box)
        form.addRow("", self.head_label)
        form.addRow("Augmentation", self.augment_box)
        form.addRow("Optimiser", self.optimizer_box)
        form.addRow("Learning rate", self.lr)
        form.addRow("Epochs", self.epochs)
        probe_row = QHBoxLayout()
        probe_row.setContentsMargins(0, 0, 0, 0)
        probe_row.addWidget(self.probes, 1)
        probe_row.addWidget(self.probe_button)
        probe_row.addWidget(self.probe_clear)
        self.probe_widget = QWidget()
        self.probe_widget.setLayout(probe_row)
        form.addRow("Time-lapse probes", self.probe_widget)
        form.addRow("", self.probe_label)
        layout.addLayout(form)
        layout.addWidget(self.params_label)

        self.more_button = QToolButton()
        self.more_button.setText("More settings")
        self.more_button.setCheckable(True)
        self.more_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.more_button.setArrowType(Qt.RightArrow)
        self.more_button.setAutoRaise(True)
        self.more = QWidget()
        more = QFormLayout(self.more)
        more.setContentsMargins(12, 0, 0, 0)
        more.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        more.addRow("Test images per class", self.test_per_class)
        more.addRow("Validation share", self.val_percent)
        more.addRow("Batch size", self.batch_size)
        more.addRow("Weight decay", self.weight_decay)
        more.addRow("Momentum (SGD)", self.momentum)
        more.addRow("Schedule", self.schedule_box)
        more.addRow("Warm-up epochs", self.warmup)
        more.addRow("Label smoothing", self.smoothing)
        more.addRow("Clip gradients at", self.clip_grad)
        self.more_form = more
        more.addRow("", self.augment)
        more.addRow("", self.mixed_precision)
        more.addRow("", self.precision_note)
        more.addRow("Seed", self.seed)
        self.more.setVisible(False)
        self.more_button.toggled.connect(self._toggle_more)
        layout.addWidget(self.more_button)
        layout.addWidget(self.more)

    def _toggle_more(self, shown: bool) -> None:
        self.more.setVisible(shown)
        self.more_button.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)

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
        common = {
            "per_class": self.per_class.value(),
            "test_per_class": self.test_per_class.value(),
            "val_fraction": self.val_percent.value() / 100,
            "freeze": self.freeze(),
            "optimizer": self.optimizer_box.currentData(),
            "lr": self.lr.value(),
            "weight_decay": self.weight_decay.value(),
            "momentum": self.momentum.value(),
            "batch_size": self.batch_size.value(),
            "epochs": self.epochs.value(),
            "schedule": self.schedule_box.currentData(),
            "warmup_epochs": self.warmup.value(),
            "label_smoothing": self.smoothing.value(),
            "augment": self.augment.isChecked(),
            "mixed_precision": self.mixed_precision.isChecked(),
            "seed": self.seed.value(),
            "probes": self.probes.value(),
            "probe_files": self.probe_files,
            "head": self.head_box.currentData(),
        }
        if not self.from_scratch():
            return common
        del common["freeze"]  # everything trains
        del common["head"]  # a new model's head is its own
        common["augment"] = False
        return {
            **common,
            "augment_policy": self.augment_box.currentData(),
            "clip_grad": self.clip_grad.value(),
        }

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
        """The widgets each mode keeps apart, by their QSettings keys."""
        fields = {
            "per_class": self.per_class,
            "optimizer": self.optimizer_box,
            "lr": self.lr,
            "epochs": self.epochs,
            "test_per_class": self.test_per_class,
            "val_percent": self.val_percent,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "schedule": self.schedule_box,
            "warmup": self.warmup,
            "smoothing": self.smoothing,
            "mixed_precision": self.mixed_precision,
            "seed": self.seed,
            "probes": self.probes,
        }
        if self.from_scratch():
            return {**fields, "augment_policy": self.augment_box, "clip_grad": self.clip_grad}
        return {**fields, "freeze": self.freeze_box, "blocks": self.blocks,
                "augment": self.augment, "head": self.head_box}  # fmt: skip

    def _dataset_fields(self) -> dict:
        """The dataset, shared by both modes (kept where older versions kept it)."""
        return {"source": self.source_box, "folder": self.folder_edit}

    def remember(self) -> None:
        self.store.setValue("train/mode", self.mode)
        for group, fields in (("finetune", self._dataset_fields()), (self.mode, self._fields())):
            for key, widget in fields.items():
                self.store.setValue(f"{group}/{key}", _value(widget))
        self.store.setValue(f"{self.mode}/probe_files", list(self.probe_files))
        if self.from_scratch():
            self.architecture.remember(self.store, SCRATCH)

    def _restore_dataset(self) -> None:
        for key, widget in self._dataset_fields().items():
            value = self.store.value(f"finetune/{key}")
            if value is not None:
                self._set(widget, value)

    def _restore(self) -> None:
        """This mode's remembered values, or its defaults where there are none."""
        defaults = DEFAULTS[self.mode]
        for key, widget in self._fields().items():
            value = self.store.value(f"{self.mode}/{key}", defaults.get(key))
            if value is not None:
                self._set(widget, value)
        files = self.store.value(f"{self.mode}/probe_files")
        files = [files] if isinstance(files, str) else files if isinstance(files, list) else []
        self.set_probe_files(files[:MAX_PROBES])
        if self.from_scratch():
            self.architecture.restore(self.store, SCRATCH)

    def _set(self, widget: QWidget, value: object) -> None:
        try:
            if widget is self.freeze_box and str(value).startswith("last:"):
                self._wanted_blocks = int(str(value)[5:])  # the engine's form, last:N
                value = "last"
            if isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(0, widget.findData(value)))
            elif isinstance(widget, QLineEdit):
                widget.setText(str(value))
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(int(value)))
            elif widget is self.blocks:
                self._wanted_blocks = int(value)
                self.set_num_layers(self.num_layers)
            elif isinstance(widget, QSpinBox):
                widget.setValue(int(value))
            elif math.isfinite(float(value)):  # Qt would turn a NaN into the maximum
                widget.setValue(float(value))
        except (TypeError, ValueError):
            pass


def _value(widget: QWidget) -> object:
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QLineEdit):
        return widget.text()
    if isinstance(widget, QCheckBox):
        return int(widget.isChecked())
    return widget.value()


def breakable(path: str) -> str:
    """``path`` with a zero-width space after each separator, so that a word-wrapped label can
    break a long path instead of cutting it off."""
    return path.replace("/", "/\u200b").replace("\\", "\\\u200b")


def _subfolders(path: str) -> list[str]:
    """Names of the class folders in ``path``, as the dataset reader lists them."""
    return [p.name for p in subfolders(path)]
