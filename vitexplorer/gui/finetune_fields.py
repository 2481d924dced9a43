"""The Train tab's widgets made from the settings' metadata
(:class:`~vitexplorer.core.training.config.Setting`): range, step, decimals, suffix, tooltip and
how people count (the validation share in percent), and the value each holds in the field's own
units, as the configuration and QSettings keep it."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from vitexplorer.core.training.config import Setting


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
            return QValidator.State.Intermediate, text, pos
        try:
            value = float(stripped)
        except ValueError:
            return QValidator.State.Invalid, text, pos
        if not math.isfinite(value):  # nan, inf, 1e400
            return QValidator.State.Invalid, text, pos
        if not self.minimum() <= value <= self.maximum():  # more typing may mend it (1e-5)
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Acceptable, text, pos

    def stepBy(self, steps: int) -> None:
        value = self.value() or self.minimum() or 1e-4
        self.setValue(value * 2.0**steps)


def spin_box(low: int, high: int, value: int, suffix: str = "") -> QSpinBox:
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


def widget_for(s: Setting, value: object) -> QWidget:
    """The form's widget for the setting ``s``, holding ``value`` (in the field's units): a
    combo box of its choices, a check box, a spin box of whole numbers (also for a share shown in
    percent), a scientific one or one of a few decimals; its range within what the configuration
    accepts."""
    if s.choices:
        box = QComboBox()
        for choice in s.choices:
            box.addItem(choice.label, choice.value)
            if choice.tip:
                box.setItemData(box.count() - 1, choice.tip, Qt.ItemDataRole.ToolTipRole)
        widget: QWidget = box
    elif isinstance(value, bool):
        widget = QCheckBox(s.text)
    else:
        low, high = _range(s)
        if s.scientific:
            widget = SciSpinBox(float(value), low, high)  # type: ignore[arg-type]
        elif isinstance(value, int) or s.decimals == 0:
            widget = spin_box(int(low), int(high), round(float(value) * s.scale), s.unit)  # type: ignore[arg-type]
        else:
            widget = _double(low, high, float(value), s.step, s.decimals)  # type: ignore[arg-type]
    if s.tip:
        widget.setToolTip(s.tip)
    set_field(widget, s, value)
    return widget


def _range(s: Setting) -> tuple[float, float]:
    """The widget's range, as people count: the form's own where it is narrower."""
    low = s.form_low if s.form_low is not None else s.low
    high = s.form_high if s.form_high is not None else s.high
    return float(low or 0) * s.scale, float(high or 0) * s.scale


def field_value(widget: QWidget, s: Setting) -> object:
    """What ``widget`` holds, in the field's units (a share shown in percent: 0.1)."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    value = widget.value()  # type: ignore[attr-defined]
    return value / s.scale if s.scale != 1 else value


def set_field(widget: QWidget, s: Setting, value: object) -> None:
    """Show ``value`` (in the field's units, maybe as QSettings read it back: text) in
    ``widget``; a number that cannot be shown (not a number, NaN) is ignored, a value that is
    not among a combo box's choices shows its first."""
    try:
        if isinstance(widget, QComboBox):  # not a choice: the first
            widget.setCurrentIndex(max(0, widget.findData(value)))
        elif isinstance(widget, QCheckBox):
            widget.setChecked(_truth(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(round(float(value) * s.scale))  # type: ignore[arg-type]
        elif math.isfinite(float(value)):  # type: ignore[arg-type]  # Qt: NaN -> the maximum
            widget.setValue(float(value) * s.scale)  # type: ignore[arg-type, attr-defined]
    except (TypeError, ValueError, OverflowError):
        pass


def _truth(value: object) -> bool:
    """A check box's value as QSettings gives it back: 1, "1", "true", True."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return bool(int(value))  # type: ignore[call-overload]
