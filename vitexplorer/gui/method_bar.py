"""The method bar: which explanation method draws the overlay, and that method's options, one
widget per option generated from the catalogue's descriptions (a mapping from option kind to
widget, as magicgui maps annotations to widgets); the class picker of class-specific methods."""

from __future__ import annotations

import math
from typing import cast

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QLabel,
    QSpinBox,
    QToolBar,
)

from vitexplorer.core.explain.method import OPTION, MapChoice, MethodOptions, Option, catalogue


def _combo(option: Option) -> QComboBox:
    box = QComboBox()
    for value in option.choices:
        box.addItem(f"{value}{option.affix}", value)
    box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return box


def _percent(option: Option) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(0, 95)
    spin.setSingleStep(5)
    spin.setSuffix(option.affix)
    return spin


def _layer(option: Option) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(1, 1)
    spin.setPrefix(option.affix)
    return spin


INT_LIMIT = 2**31 - 1  # a QSpinBox holds a C int


def _affixed(spin: QSpinBox | QDoubleSpinBox, option: Option) -> None:
    """The option's words around the number: "seed " before it, " steps" after it."""
    if option.affix.endswith(" "):
        spin.setPrefix(option.affix)
    else:
        spin.setSuffix(option.affix)


def _count(option: Option) -> QSpinBox:
    """A whole number from the option's ``low`` to its ``high`` (a C int's at most)."""
    spin = QSpinBox()
    low = -INT_LIMIT if option.low is None else max(int(option.low), -INT_LIMIT)
    high = INT_LIMIT if option.high is None else min(int(option.high), INT_LIMIT)
    spin.setRange(low, high)
    spin.setValue(int(option.default))
    spin.setAccelerated(True)
    _affixed(spin, option)
    return spin


def real_step(default: float) -> float:
    """A spin box's step for a real option: a tenth of its default's order of magnitude (0.01
    for 0.15, 10 for 100), 0.1 for a default of 0."""
    if not default:
        return 0.1
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def _real(option: Option) -> QDoubleSpinBox:
    """A number from the option's ``low`` to its ``high``, with the decimals its step needs."""
    spin = QDoubleSpinBox()
    step = real_step(float(option.default))
    spin.setDecimals(max(2, 1 - math.floor(math.log10(step))))
    low = -1e9 if option.low is None else float(option.low)
    high = 1e9 if option.high is None else float(option.high)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(float(option.default))
    spin.setAccelerated(True)
    _affixed(spin, option)
    return spin


def _classes(option: Option) -> ClassPicker:
    return ClassPicker()


class ClassPicker(QComboBox):
    """The class a class-specific method explains: every class of the model, the top
    predictions first ("goldfish (predicted, 92.0%)"); typing filters the list by any part of
    a name ("gold" finds "goldfish" and "golden retriever"). Its data is the class index, or
    None for the predicted class."""

    PREDICTED = "the predicted class"

    def __init__(self) -> None:
        super().__init__()
        self.setEditable(True)
        self.setInsertPolicy(
            QComboBox.InsertPolicy.NoInsert
        )  # typed words choose, they add nothing
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(16)  # 1,000 ImageNet names must not widen the bar
        self.setMaxVisibleItems(20)
        completer = QCompleter(self.model(), self)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        completer.setMaxVisibleItems(12)
        self.setCompleter(completer)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # typing needs focus; arrows: the image's
        edit = self.lineEdit()
        assert edit is not None  # an editable box has one
        self.edit = edit
        edit.setPlaceholderText("type to find a class")
        edit.editingFinished.connect(self._typed)
        self.class_names: tuple[str, ...] = ()
        self.predictions: list = []

    def set_classes(self, names: tuple[str, ...] | list[str]) -> None:
        """Every class of the model (none: a model without a classifier); the choice goes
        back to the predicted class (an index of another model means another class), and its
        predictions go (the old model's)."""
        self.class_names = tuple(names)
        self.predictions = []
        blocked = self.blockSignals(True)
        self.clear()
        self.blockSignals(blocked)
        self._fill()

    def set_predictions(self, predictions: list) -> None:  # list[Prediction]
        self.predictions = list(predictions)
        self._fill()

    def entry(self, index: int) -> str:
        """A class's words in the list; a name that several classes share says its index."""
        name = self.class_names[index] if index < len(self.class_names) else f"class {index}"
        if self.class_names.count(name) > 1:
            name = f"{name} (class {index})"
        return name

    def _fill(self) -> None:
        """The list anew; the choice survives when its class is still there."""
        current = self.currentData() if self.count() else None
        blocked = self.blockSignals(True)
        self.clear()
        self.addItem(self.PREDICTED, None)
        listed: set[int] = set()
        for rank, p in enumerate(self.predictions):
            which = "predicted, " if rank == 0 else ""
            self.addItem(f"{self.entry(p.index)} ({which}{100 * p.probability:.1f}%)", p.index)
            listed.add(p.index)
        for index in range(len(self.class_names)):
            if index not in listed:
                self.addItem(self.entry(index), index)
        found = self.findData(current) if current is not None else 0
        self.setCurrentIndex(max(found, 0))
        self.blockSignals(blocked)

    def _typed(self) -> None:
        """Words that name no entry: the box shows its choice again (nothing is added)."""
        found = self.findText(self.edit.text(), Qt.MatchFlag.MatchFixedString)
        if found >= 0:
            self.setCurrentIndex(found)
        else:
            self.edit.setText(self.itemText(self.currentIndex()))


# the method bar's widget for each kind of option (as magicgui maps types to widgets): the widget,
# how it reads the option (as the code holds it) and how it is set
OPTION_WIDGETS = {
    "choice": (_combo, lambda w: w.currentData(), lambda w, v: w.setCurrentIndex(w.findData(v))),
    "ratio": (_percent, lambda w: w.value() / 100, lambda w, v: w.setValue(round(100 * v))),
    "layer": (_layer, lambda w: w.value() - 1, lambda w, v: w.setValue(v + 1)),
    "class": (_classes, lambda w: w.currentData(), lambda w, v: w.setCurrentIndex(w.findData(v))),
    "count": (_count, lambda w: w.value(), lambda w, v: w.setValue(int(v))),
    "real": (_real, lambda w: w.value(), lambda w, v: w.setValue(float(v))),
}


class MethodBar(QToolBar):
    """Which explanation the overlay shows and its options, generated from the method
    catalogue: raw attention of the chosen layer and head, rollout with its options, or class
    relevance for a class from the top predictions."""

    choice_changed = Signal(object)  # MapChoice
    method_chosen = Signal(str)  # a method picked from the list, even the one shown (ask again)
    compare_toggled = Signal(bool)
    all_methods_toggled = Signal(bool)  # every method at once, instead of the image view
    same_scale_toggled = Signal(bool)  # beside Compare: both views on one colour scale

    def __init__(self, compare: bool = True, title: str = "Method") -> None:
        super().__init__(title)
        self.setObjectName("method_toolbar" if compare else "compare_method_toolbar")
        methods = catalogue()
        self.method_box = QComboBox()
        for method in methods:
            self.method_box.addItem(method.label, method.name)
        self.method_box.setToolTip(". ".join(m.tip for m in methods))
        self.method_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # one widget per option, in the order the methods list them
        names = dict.fromkeys(o.name for m in methods for o in m.bar_options)
        self.option_widgets = {}
        for name in names:
            option = OPTION[name]
            widget = OPTION_WIDGETS[option.kind][0](option)
            widget.setToolTip(option.tip)
            self.option_widgets[name] = widget
        self.fusion_box = self.option_widgets.get("head_fusion")
        self.discard_spin = self.option_widgets.get("discard_ratio")
        self.start_spin = self.option_widgets.get("start_layer")
        self.target_box = self.option_widgets.get("target_class")
        self.set_predictions([])
        self.addWidget(QLabel(" Show "))
        self.addWidget(self.method_box)
        # the method's options in a bar of their own (the window puts it on a row under this
        # one, shown while the method has options): three options beside the method bar, the
        # overlay bar and Compare did not fit a 1024 px window
        self.options_bar = QToolBar(f"{title} options")
        self.options_bar.setObjectName(f"{self.objectName()}_options")
        self._actions = {
            name: self.options_bar.addWidget(w) for name, w in self.option_widgets.items()
        }
        self.compare_box: QCheckBox | None = None
        self.all_box: QCheckBox | None = None
        if compare:
            self.compare_box = QCheckBox("Compare")
            self.compare_box.setToolTip(
                "Show a second view side by side: another method or class of this model, or "
                "another model (such as the model before fine-tuning) on the same image"
            )
            self.compare_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.all_box = QCheckBox("All methods")
            self.all_box.setToolTip(
                "The image under every method at once, each map on its own colour scale; the "
                "methods that need the model are computed one after the other"
            )
            self.all_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.addSeparator()
            self.addWidget(self.all_box)
            self.addWidget(self.compare_box)
            self.compare_box.toggled.connect(self.compare_toggled)
            self.all_box.toggled.connect(self.all_methods_toggled)
            compare_box = self.compare_box
        self.same_scale_box: QCheckBox | None = None
        if compare:  # beside Compare, where it stays in sight (the compare bar is narrow)
            self.same_scale_box = QCheckBox("Same scale")
            self.same_scale_box.setToolTip(
                "Both views on one colour scale, from the lower of the two maps' minima to the "
                "higher of their maxima: colours then compare across the views (each map on its "
                "own range shows more of its structure, but the same colour means different "
                "values)"
            )
            self.same_scale_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.same_scale_box.setEnabled(False)
            self._same_scale_action = self.addWidget(self.same_scale_box)
            self.same_scale_box.toggled.connect(self.same_scale_toggled)
            compare_box.toggled.connect(self.same_scale_box.setEnabled)
        self.method_box.currentIndexChanged.connect(self._changed)
        self.method_box.activated.connect(
            lambda _index: self.method_chosen.emit(self.method_box.currentData())
        )
        for widget in self.option_widgets.values():
            if isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(self._changed)
            else:  # a spin box
                cast(QSpinBox, widget).valueChanged.connect(self._changed)
        self._show_options()

    def show_same_scale(self, shown: bool) -> None:
        """Show or hide "Same scale" (compared with another model, the compare panel has its
        own scale setting)."""
        if self.same_scale_box is not None:
            self._same_scale_action.setVisible(shown)

    def choice(self) -> MapChoice:
        """The method and the options its widgets hold (0-based, as the code holds them)."""
        values = {
            name: OPTION_WIDGETS[OPTION[name].kind][1](widget)
            for name, widget in self.option_widgets.items()
        }
        return MapChoice(self.method_box.currentData(), MethodOptions(**values))

    def set_option(self, name: str, value: object) -> None:
        """Show ``value`` (as the code holds it) in option ``name``'s widget."""
        OPTION_WIDGETS[OPTION[name].kind][2](self.option_widgets[name], value)

    def set_method(self, method: str) -> None:
        self.method_box.setCurrentIndex(self.method_box.findData(method))

    def _widgets(self, kind: str) -> list:
        return [w for n, w in self.option_widgets.items() if OPTION[n].kind == kind]

    def set_num_layers(self, layers: int) -> None:
        for spin in self._widgets("layer"):
            spin.setRange(1, max(layers, 1))
            spin.setSuffix(f" / {layers}")

    def set_predictions(self, predictions: list) -> None:  # list[Prediction]
        """The image's top predictions, listed first in the class picker; the choice survives
        when the class is listed."""
        for box in self._widgets("class"):
            box.set_predictions(predictions)

    def set_classes(self, names: tuple[str, ...] | list[str]) -> None:
        """Every class of the model, for the class picker (none: no classifier)."""
        for box in self._widgets("class"):
            box.set_classes(names)

    def _changed(self, _value: object = None) -> None:
        self._show_options()
        self.choice_changed.emit(self.choice())

    def set_classifier_available(self, available: bool) -> None:
        """A method that explains a class score is offered only for a model with a classifier;
        one chosen before goes back to the first method."""
        entries = cast(QStandardItemModel, self.method_box.model())  # a QComboBox's own
        for method in catalogue():
            if method.requires_classifier:
                item = entries.item(self.method_box.findData(method.name))
                item.setEnabled(available)
                tip = "" if available else "This model has no classifier: no class to explain"
                item.setToolTip(tip)
        if not available and not entries.item(self.method_box.currentIndex()).isEnabled():
            self.method_box.setCurrentIndex(0)

    def showEvent(self, event) -> None:  # Qt's name: the options bar comes with this bar
        super().showEvent(event)
        if not event.spontaneous():
            self._show_options()

    def hideEvent(self, event) -> None:  # Qt's name: and goes with it
        super().hideEvent(event)
        if not event.spontaneous():
            self.options_bar.setVisible(False)

    def _show_options(self) -> None:
        """Show the options the chosen method reads (their bar, while this one shows)."""
        method = next(m for m in catalogue() if m.name == self.method_box.currentData())
        shown = {o.name for o in method.bar_options}
        for name, action in self._actions.items():
            action.setVisible(name in shown)
        self.options_bar.setVisible(bool(shown) and self.isVisibleTo(self.parentWidget() or self))
