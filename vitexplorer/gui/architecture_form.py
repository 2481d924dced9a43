"""The architecture of a small ViT to train from scratch: image size, patch size, width, depth,
heads, MLP ratio, dropout and stochastic depth, with the defaults for 32 px images.

A setting that cannot work (an image size that is not a multiple of the patch size, a width that
the heads do not divide) is said in red right under its field, whose label turns red; ``problem()``
gives the same sentence to the panel, which will not start. Torch-free: the rules and the
parameter count come from :mod:`vitexplorer.core.models.architecture`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from vitexplorer.core.models.architecture import ARCH_DEFAULTS, architecture_problem

ERROR_STYLE = "color: #b00020;"
FIELD_ERROR_STYLE = "color: #b00020; font-weight: bold;"  # the field's label, when it is wrong
# label, range, suffix, tooltip
WHOLE = {
    "image_size": ("Image size", (4, 1024), " px",
                   "Images are resized to this square size: 32 for CIFAR-10, 28 for digits"),
    "patch_size": ("Patch size", (1, 256), " px",
                   "Each token is a square patch this wide; the image size must be a multiple"),
    "width": ("Width", (8, 4096), "", "The length of each token's vector"),
    "depth": ("Depth", (1, 64), " blocks", "How many encoder blocks"),
    "heads": ("Heads", (1, 64), "", "Attention heads per block; they must divide the width"),
}  # fmt: skip
REAL = {
    "mlp_ratio": ("MLP ratio", (0.5, 8.0), 0.5, 1,
                  "The MLP's hidden width over the token width (2 for small data, 4 in ViT-B)"),
    "dropout": ("Dropout", (0.0, 0.9), 0.05, 2,
                "After the attention's projection and in the MLP, while training"),
    "drop_path": ("Stochastic depth", (0.0, 0.9), 0.05, 2,
                  "The chance that the last block's residual branches are skipped for an image "
                  "while training, rising from 0 at the first block"),
}  # fmt: skip


class ArchitectureForm(QWidget):
    """The fields of :data:`ARCH_DEFAULTS`; ``changed`` whenever one moves."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, QSpinBox | QDoubleSpinBox] = {}
        self.errors: dict[str, QLabel] = {}
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for name, (label, (low, high), suffix, tip) in WHOLE.items():
            box = QSpinBox()
            box.setRange(low, high)
            box.setSuffix(suffix)
            self._add(name, label, box, tip)
        for name, (label, (bottom, top), step, decimals, tip) in REAL.items():
            real = QDoubleSpinBox()
            real.setRange(bottom, top)
            real.setSingleStep(step)
            real.setDecimals(decimals)
            self._add(name, label, real, tip)
        self.set_values(ARCH_DEFAULTS)
        for field in self.fields.values():
            field.valueChanged.connect(self._changed)
        self._changed()

    def _add(self, name: str, label: str, box: QSpinBox | QDoubleSpinBox, tip: str) -> None:
        box.setKeyboardTracking(False)
        box.setToolTip(tip)
        self.fields[name] = box
        self.form.addRow(label, box)
        error = QLabel("")
        error.setWordWrap(True)
        error.setStyleSheet(ERROR_STYLE)
        self.errors[name] = error
        self.form.addRow("", error)
        self.form.setRowVisible(error, False)

    # --- values ---------------------------------------------------------------------------
    def values(self) -> dict[str, int | float]:
        """The fields of :class:`~vitexplorer.core.models.vit.SmallViTConfig` but
        ``num_classes``."""
        return {
            name: box.value() if isinstance(box, QSpinBox) else round(box.value(), 6)
            for name, box in self.fields.items()
        }

    def set_values(self, values: dict) -> None:
        for name, value in values.items():
            box = self.fields.get(name)
            if box is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):  # Qt would turn a NaN into the maximum
                continue
            if isinstance(box, QSpinBox):
                box.setValue(int(number))
            else:
                box.setValue(number)

    def shape(self, num_classes: int) -> SimpleNamespace:
        """The values as an object with ``num_classes``, for the parameter and memory counts."""
        return SimpleNamespace(**self.values(), num_classes=num_classes)

    def problem(self) -> tuple[str, str] | None:
        """The field that cannot work and why, or None."""
        return architecture_problem(self.values())

    # --- reactions ------------------------------------------------------------------------
    def _changed(self, _value: float = 0) -> None:
        found = self.problem()
        for name, box in self.fields.items():
            wrong = found is not None and found[0] == name
            error = self.errors[name]
            error.setText(_sentence(found[1]) if found is not None and wrong else "")
            self.form.setRowVisible(error, wrong)
            self.form.labelForField(box).setStyleSheet(FIELD_ERROR_STYLE if wrong else "")
        self.changed.emit()

    # --- memory ---------------------------------------------------------------------------
    def remember(self, store: QSettings, prefix: str) -> None:
        for name, value in self.values().items():
            store.setValue(f"{prefix}/{name}", value)

    def restore(self, store: QSettings, prefix: str) -> None:
        values = {}
        for name in self.fields:
            value = store.value(f"{prefix}/{name}")
            if value is not None:
                values[name] = value
        self.set_values(values)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."
