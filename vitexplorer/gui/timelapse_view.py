"""The time-lapse of a training run in the Train tab: a few probe images' attention, one frame
before the first step and one after every epoch (``core.timelapse``).

A strip of the probes (click one), a slider over the epochs captured so far with a play button,
the chosen probe's map at that epoch over the image (a method of the catalogue that reads the
stored attention, for the CLS token: the rollout, or one layer's attention, a head or the mean
of heads; ``core.training.timelapse_frames``) with what the model predicted then, and every
head's mean attention distance or entropy against depth at that epoch (the ViT paper's Fig. 7),
over the probes or the chosen one. Every number was computed by the engine; drawing a frame only
slices arrays (the mean of heads averages them).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QScrollArea,
    QSlider,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.training.timelapse_frames import (
    epoch_levels,
    epoch_maps,
    frame_map,
    map_words,
    reads,
    recorded_maps,
    timelapse_methods,
    timelapse_spec,
    uniform_of,
)
from vitexplorer.core.training.verdict import RIGHT as RIGHT_VERDICT
from vitexplorer.core.training.verdict import TIE, UNKNOWN
from vitexplorer.gui.analytics_tab import EmptyState
from vitexplorer.gui.views.head_stats_view import DistancePlot
from vitexplorer.gui.views.image_view import ImageView
from vitexplorer.gui.views.panels import ThumbnailStrip

if TYPE_CHECKING:
    from vitexplorer.core.training.timelapse import TimeLapse

STATISTICS = {  # name, the y axis's label, a value, the choice's text
    "distance": ("Mean attention distance", "distance (pixels)", "{:.1f} px", "Distance"),
    "entropy": ("Attention entropy", "entropy (nats)", "{:.2f} nats", "Entropy"),
}
MEAN_OF_PROBES, CHOSEN_PROBE = "mean", "probe"
ACROSS_EPOCHS, PER_FRAME = "epochs", "frame"
SCALES = [
    (ACROSS_EPOCHS, "scale: all epochs", "Every epoch's map on one colour scale, from "
     "its lowest to its highest value over the epochs: a colour means the same value in every "
     "frame, so frames compare"),
    (PER_FRAME, "scale: each epoch", "Each epoch's map on its own range: more of its "
     "structure shows, but colours do not compare between frames, and a near-uniform map looks "
     "as structured as a trained one"),
]  # fmt: skip
MEAN_OF_HEADS = -1
PLAY_MS = 600  # one epoch on screen while playing
THUMBNAIL = 40  # px
STRIP_COLUMNS = 2
RIGHT, WRONG = "#1e823c", "#c81e1e"  # the gallery's colours for right and wrong
TEXT = "#282828"
EMPTY_TEXT = (
    "The time-lapse of a training run shows here: what the model does with a few probe images "
    "before the first step and after every epoch. Set Time-lapse probes (left) above 0 and press "
    "Start, or open a checkpoint saved with a time-lapse (File > Open model)."
)


class HeadStatsPlot(DistancePlot):
    """The analytics tab's distance-against-depth plot, for either statistic, on a white ground
    and a y range fixed for the whole time-lapse (so that epochs compare)."""

    def __init__(self) -> None:
        super().__init__(background="w")
        self.statistic = "distance"
        self.plotItem.setLabel("bottom", "layer", color=self.text_color)

    def show_values(self, values: np.ndarray, statistic: str, title: str, top: float) -> None:
        """Per-head (layers, heads) values of ``statistic`` on a y axis from 0 to ``top``."""
        self.statistic = statistic
        self.set_statistics(values, title=title)
        self.plotItem.setLabel("left", STATISTICS[statistic][1], color=self.text_color)
        self.setYRange(0, max(top, 1e-6) * 1.05, padding=0)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """The points drawn: layer (from 1) and value."""
        x, y = self.points.getData()
        return np.asarray(x), np.asarray(y)

    def _tip(self, x: float, y: float, data: tuple[int, int]) -> str:
        layer, head = data
        name, _, unit, _ = STATISTICS[self.statistic]
        value = unit.format(y)
        return f"layer {layer + 1}, head {head + 1}\n{name.lower()} {value}\nclick: map its CLS row"


class TimeLapseView(QWidget):
    """See the module docstring. :meth:`show_timelapse` shows one (and keeps the place while a
    run's grows), :meth:`show_message` says why there is none."""

    epoch_shown = Signal(int)  # the epoch on screen; -1 when no time-lapse is shown

    def __init__(self) -> None:
        super().__init__()
        self.timelapse: TimeLapse | None = None
        self.class_names: tuple[str, ...] = ()
        self.origin = ""
        self.planned: int | None = None  # the epochs a run under way will have
        self.index = 0  # the frame shown
        self.probe = 0
        self._tops: dict[str, float] = {}  # each statistic's highest value in the time-lapse
        self._levels: dict[tuple, tuple[float, float]] = {}  # a map's scale over the epochs
        self._spec: Any = None  # the model the time-lapse was recorded with (its ModelSpec)
        self.timer = QTimer(self)
        self.timer.setInterval(PLAY_MS)
        self.timer.timeout.connect(self._advance)
        self._build()
        self.show_message(EMPTY_TEXT)

    # --- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        self._make_widgets()
        self._lay_out()
        self.strip.currentItemChanged.connect(self._probe_clicked)
        self.slider.valueChanged.connect(self._slid)
        self.play_button.clicked.connect(self.toggle_play)
        self.map_box.currentIndexChanged.connect(self._map_changed)
        for box in (self.head_box, self.stat_box, self.scope_box, self.scale_box):
            box.currentIndexChanged.connect(self._redraw)
        self.layer_spin.valueChanged.connect(self._redraw)
        self.stats_plot.head_clicked.connect(self.show_head)
        self.image_view.arrow_pressed.connect(self._arrow)
        self._map_changed()

    def _make_widgets(self) -> None:
        self.header = QLabel("")
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.strip = ThumbnailStrip()  # a column of the probes, two abreast, beside the views
        self.strip.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.strip.setWrapping(True)
        self.strip.setResizeMode(QListView.ResizeMode.Adjust)
        self.strip.setSpacing(1)
        self.strip.setMinimumHeight(0)  # the strip's fixed height undone: QWIDGETSIZE_MAX
        self.strip.setMaximumHeight(16777215)
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        scroll = self.strip.verticalScrollBar().sizeHint().width()
        cell = THUMBNAIL + 8
        self.strip.setFixedWidth(STRIP_COLUMNS * (cell + 2) + scroll + 2 * self.strip.frameWidth())
        self.strip.setToolTip("The probe images: click one to follow it")
        self.strip.setStyleSheet(  # the chosen probe framed, plainly
            "QListView::item { border: 2px solid transparent; }"
            "QListView::item:selected { border: 2px solid #0a64c8; background: #bcd8f5; }"
        )
        self.play_button = QToolButton()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setToolTip("The epoch shown: 0 is before the first step")
        self.epoch_label = QLabel("")
        self.epoch_label.setMinimumWidth(110)
        self.map_box = QComboBox()
        recorded = recorded_maps()
        for method in timelapse_methods():  # the catalogue's that read the stored attention
            self.map_box.addItem(f"{method.label} (CLS)", method.name)
            kept = f"; kept as the {recorded[method.name]}" if method.name in recorded else ""
            tip = f"{method.tip}, of the CLS token{kept}"
            self.map_box.setItemData(self.map_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.map_box.setToolTip("What the image shows")
        self.layer_spin = QSpinBox()
        self.layer_spin.setPrefix("layer ")
        self.layer_spin.setRange(1, 1)
        self.layer_spin.setToolTip("The layer whose CLS attention is shown")
        self.head_box = QComboBox()
        self.head_box.setToolTip("One head's CLS attention, or the mean of the layer's heads")
        self.scale_box = QComboBox()
        for value, label, tip in SCALES:
            self.scale_box.addItem(label, value)
            self.scale_box.setItemData(self.scale_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.scale_box.setToolTip("The colour scale: one for all epochs, or each epoch its own")
        self.stat_box = QComboBox()
        for value, (name, _, _, label) in STATISTICS.items():
            self.stat_box.addItem(label, value)
            self.stat_box.setItemData(self.stat_box.count() - 1, name, Qt.ItemDataRole.ToolTipRole)
        self.stat_box.setToolTip("Each head's mean attention distance or entropy, by layer")
        self.scope_box = QComboBox()
        self.scope_box.addItem("all probes", MEAN_OF_PROBES)
        self.scope_box.addItem("this probe", CHOSEN_PROBE)
        self.scope_box.setToolTip("Averaged over the probe images, or of the chosen one")
        self.image_view = ImageView()
        self.image_view.setBackground("w")
        self.image_view.setMinimumSize(160, 160)
        self.stats_plot = HeadStatsPlot()
        self.stats_plot.setMinimumSize(180, 160)
        self.stop()  # the play button as it starts

    def _lay_out(self) -> None:
        epochs = QHBoxLayout()
        epochs.addWidget(self.play_button)
        epochs.addWidget(self.slider, 1)
        epochs.addWidget(self.epoch_label)
        epochs.addWidget(self.scale_box)
        map_row = QHBoxLayout()
        map_row.addWidget(self.map_box)
        map_row.addWidget(self.layer_spin)
        map_row.addWidget(self.head_box)
        map_row.addStretch(1)
        stat_row = QHBoxLayout()
        stat_row.addWidget(self.stat_box)
        stat_row.addWidget(self.scope_box)
        stat_row.addStretch(1)
        left, right = QVBoxLayout(), QVBoxLayout()
        left.addLayout(map_row)
        left.addWidget(self.image_view, 1)
        right.addLayout(stat_row)
        right.addWidget(self.stats_plot, 1)
        views = QHBoxLayout()
        views.addWidget(self.strip)
        views.addLayout(left, 1)
        views.addLayout(right, 1)
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addLayout(epochs)
        column.addLayout(views, 1)
        # scrolled rather than squeezed below its minimum: the page's minimum would otherwise be
        # the whole tab widget's, and the explorer's window could not be narrowed to 1024 px.
        # (The header wraps, so it stays outside: a scroll area gives a widget whose height
        # depends on its width its preferred height, never less.)
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        page = QWidget()
        page_layout = QVBoxLayout(page)
        page_layout.setContentsMargins(0, 0, 0, 0)
        page_layout.setSpacing(2)
        page_layout.addWidget(self.header)
        page_layout.addWidget(scroll, 1)
        self.area = EmptyState(page, EMPTY_TEXT)
        self.area.label.setStyleSheet(f"color: {TEXT}; padding: 16px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.area)

    # --- what is shown --------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """No time-lapse: ``text`` says why."""
        self.stop()
        self.timelapse = None
        self.origin = ""
        self.area.show_message(text)
        self.epoch_shown.emit(-1)

    def message(self) -> str | None:
        """The message shown instead of a time-lapse, or None while one is shown."""
        return None if self.area.showing_view else self.area.label.text()

    def show_timelapse(
        self,
        timelapse,
        class_names,
        origin: str,
        planned: int | None = None,
    ) -> None:
        """Show ``timelapse`` (a core.timelapse.TimeLapse with at least one frame), its classes
        named by ``class_names``, said to come from ``origin``; ``planned``: the epochs of a run
        still under way. The same run's time-lapse grown by a frame keeps the probe and the
        epoch, or follows the newest frame when it was shown."""
        if not timelapse.frames:
            return
        old = self.timelapse
        grown = old is not None and timelapse.images is old.images
        following = old is None or not grown or self.index >= len(old.frames) - 1
        self.timelapse = timelapse
        self.class_names = tuple(class_names)
        self._spec = timelapse_spec(timelapse, self.class_names or None)
        self.origin = origin
        self.planned = planned
        last = len(timelapse.frames) - 1
        if not grown:
            self._new_probes()
            self.index = self._start_index()
        elif following:
            self.index = last
        self._tops = {}
        self._levels = {}
        self.slider.blockSignals(True)
        self.slider.setRange(0, last)
        self.slider.setValue(self.index)
        self.slider.blockSignals(False)
        self._say_origin()
        self.area.show_view()
        self._redraw()

    def relabel(self, origin: str) -> None:
        """The same time-lapse, now said to come from ``origin`` (a run saved to a file)."""
        if self.timelapse is not None:
            self.origin = origin
            self.planned = None
            self._say_origin()
            self._redraw()

    def _shown(self) -> TimeLapse:
        """The time-lapse on show (the methods that call this run only once one is)."""
        if self.timelapse is None:
            raise RuntimeError("no time-lapse is shown")
        return self.timelapse

    def _start_index(self) -> int:
        """A checkpoint opens at the epoch whose weights it holds (else the last)."""
        epochs = self._shown().epochs
        best = self._shown().best_epoch
        return epochs.index(best) if best in epochs else len(epochs) - 1

    def _say_origin(self) -> None:
        timelapse = self._shown()
        epochs = timelapse.frames[-1].epoch
        probes = len(timelapse.sources)
        if self.planned is not None:
            text = f"{self.origin} ({self.planned} epoch{_s(self.planned)}): {epochs} so far"
        else:
            text = f"{self.origin}: {epochs} epoch{_s(epochs)}"
        text += f", {probes} probe{_s(probes)}"
        best = timelapse.best_epoch
        if best is not None and best != epochs:
            text += f"; the model kept holds epoch {best}'s weights"
        self.header.setText(text)

    def _new_probes(self) -> None:
        """A new time-lapse: its probes in the strip, its layers and heads in the choices."""
        timelapse = self._shown()
        self.strip.blockSignals(True)
        self.strip.clear()
        for i, image in enumerate(timelapse.images):
            key = str(i)
            self.strip.add_entry(key, "")
            item = self.strip.item_for(key)
            assert item is not None  # added just above
            item.setSizeHint(QSize(THUMBNAIL + 8, THUMBNAIL + 8))
            item.setToolTip(f"probe {i + 1}: {timelapse.sources[i]}{self._true_text(i)}")
            self.strip.set_thumbnail(key, _enlarged(image, THUMBNAIL))
        self.probe = 0
        self.strip.setCurrentRow(0)
        self.strip.blockSignals(False)
        layers, heads = timelapse.frames[0].distance.shape[1:]
        head = self.head_box.currentData()
        for widget in (self.layer_spin, self.head_box):
            widget.blockSignals(True)
        self.layer_spin.setRange(1, layers)
        self.layer_spin.setValue(layers)
        self.head_box.clear()
        self.head_box.addItem("mean", MEAN_OF_HEADS)
        for h in range(heads):
            self.head_box.addItem(f"head {h + 1}", h)
        self.head_box.setCurrentIndex(max(0, self.head_box.findData(head)))
        for widget in (self.layer_spin, self.head_box):
            widget.blockSignals(False)

    # --- choices --------------------------------------------------------------------------
    @property
    def frame(self):  # core.timelapse.Frame
        return None if self.timelapse is None else self.timelapse.frames[self.index]

    def map_kind(self) -> str:
        """The method shown: one of the catalogue's that a time-lapse shows."""
        return self.map_box.currentData()

    def map_options(self) -> MethodOptions:
        """The shown map's options, 0-based: the layer and the head chosen (None: the mean)."""
        head = self.head_box.currentData()
        return MethodOptions(
            layer=self.layer_spin.value() - 1, head=None if head in (None, MEAN_OF_HEADS) else head
        )

    def set_map(self, method: str, layer: int | None = None, head: int | None = None) -> None:
        """Choose the map: a method of the catalogue that a time-lapse shows, with the layer
        (from 0) and the head (from 0, or MEAN_OF_HEADS) of one that reads them."""
        self.map_box.setCurrentIndex(self.map_box.findData(method))
        if layer is not None:
            self.layer_spin.setValue(layer + 1)
        if head is not None:
            self.head_box.setCurrentIndex(max(0, self.head_box.findData(head)))

    def show_head(self, layer: int, head: int) -> None:
        """A point of the statistics plot clicked: that head's CLS map, of the first method
        that reads a layer and a head (attention)."""
        chosen = [m.name for m in timelapse_methods() if {"layer", "head"} <= set(m.options)]
        if chosen:
            self.set_map(chosen[0], layer, head)

    def set_epoch_index(self, index: int) -> None:
        self.slider.setValue(index)

    def set_probe(self, probe: int) -> None:
        self.strip.setCurrentRow(probe)

    def _probe_clicked(self, current, _previous=None) -> None:
        if current is not None and self.timelapse is not None:
            self.probe = int(current.data(Qt.ItemDataRole.UserRole))
            self._redraw()

    def _slid(self, index: int) -> None:
        if self.timelapse is not None:
            self.index = index
            self._redraw()

    def _map_changed(self, _index: int = 0) -> None:
        self.layer_spin.setEnabled(reads(self.map_kind(), "layer"))
        self.head_box.setEnabled(reads(self.map_kind(), "head"))
        self._redraw()

    def _arrow(self, d_row: int, d_col: int) -> None:
        """Left and right step through the epochs, up and down through the probes."""
        if self.timelapse is None:
            return
        if d_col:
            self.slider.setValue(self.index + d_col)
        else:
            self.strip.setCurrentRow(min(max(self.probe + d_row, 0), self.strip.count() - 1))

    # --- playing --------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if self.timer.isActive():
            self.stop()
            return
        if self.timelapse is None:
            return
        if self.index >= self.slider.maximum():
            self.slider.setValue(0)  # played to the end before: from the start again
        self.timer.start()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
        self.play_button.setToolTip("Pause")

    def stop(self) -> None:
        self.timer.stop()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play the epochs one after another (stops at the last)")

    def playing(self) -> bool:
        return self.timer.isActive()

    def _advance(self) -> None:
        if self.timelapse is None or self.index >= self.slider.maximum():
            self.stop()
            return
        self.slider.setValue(self.index + 1)
        if self.index >= self.slider.maximum():
            self.stop()

    # --- drawing --------------------------------------------------------------------------
    def shown_map(self) -> np.ndarray:
        """The chosen probe's chosen map at the shown epoch, (rows, columns)."""
        method, options = self.map_kind(), self.map_options()
        return frame_map(self.timelapse, self.index, self.probe, method, options, self._spec)

    def shown_levels(self) -> tuple[float, float] | None:
        """The colour scale of the shown map: with one scale for all epochs, the chosen probe's
        chosen map's lowest and highest value over every frame captured; None, each frame on
        its own range."""
        if self.scale_box.currentData() == PER_FRAME:
            return None
        method, options = self.map_kind(), self.map_options()
        key = (self.probe, method, tuple(options.as_dict(method).items()))
        if key not in self._levels:
            maps = epoch_maps(self.timelapse, self.probe, method, options, self._spec)
            self._levels[key] = epoch_levels(maps)
        low, high = self._levels[key]
        return (low, high) if high > low else None  # a constant map: the view's own small range

    def uniform(self) -> tuple[float, str] | None:
        """The uniform level of the shown map, 1/N (N the CLS row's tokens), for a method whose
        maps are distributions (attention, rollout); None for another."""
        return uniform_of(self.map_kind(), self.timelapse)

    def _map_title(self) -> str:
        """The shown map's title, the catalogue's (a recorded map: how it was made)."""
        return map_words(self.map_kind(), self.map_options(), self._spec)

    def _true_text(self, probe: int) -> str:
        label = int(self._shown().labels[probe])
        return f" (true class: {self._name(label)})" if label >= 0 else ""

    def _name(self, index: int) -> str:
        names = self.class_names
        return names[index] if 0 <= index < len(names) else f"class {index}"

    def verdict(self) -> str:
        """The chosen probe's prediction at the shown epoch: right, wrong, tie (never right)
        or unknown (:func:`vitexplorer.core.training.verdict.verdict`)."""
        label = int(self._shown().labels[self.probe])
        return self.frame.verdict(self.probe, label, self._shown().num_classes)

    def prediction_text(self) -> str:
        """What the model predicted for the chosen probe at the shown epoch, in words; a tie
        of the top classes is said as one, never as a class."""
        frame, p = self.frame, self.probe
        predicted, label = int(frame.predicted[p]), int(self._shown().labels[p])
        percent = f"{100 * frame.probability[p]:.0f}%"
        if frame.tied(p, self._shown().num_classes):
            text = f"undecided: the top classes tie at {percent}"
        else:
            text = f"predicts {self._name(predicted)} ({percent})"
        if label < 0:
            return text + "; true class unknown"
        verdict = self.verdict()
        return f"{text}, true class {self._name(label)}: {'a tie' if verdict == TIE else verdict}"

    def _redraw(self, _value: object = None) -> None:
        timelapse = self.timelapse
        if timelapse is None:
            return
        frame, p = self.frame, self.probe
        self.image_view.set_image(timelapse.images[p], timelapse.grid)
        self.image_view.set_heat(self.shown_map(), self.shown_levels(), self.uniform())
        verdict = self.verdict()
        colour = TEXT if verdict in (TIE, UNKNOWN) else RIGHT if verdict == RIGHT_VERDICT else WRONG
        self.image_view.title.setText(
            f"<span style='color: {TEXT}'>Probe {p + 1}, epoch {frame.epoch}:</span> "
            f"<span style='color: {colour}'>{html.escape(self.prediction_text())}</span>",
            size="9pt",
        )
        self.image_view.setToolTip(f"{timelapse.sources[p]}\n{self._map_title()}")
        self._draw_statistics()
        last = timelapse.frames[-1].epoch if self.planned is None else self.planned
        kept = " (kept)" if frame.epoch == timelapse.best_epoch else ""
        when = "before training" if frame.epoch == 0 else f"{frame.epoch} of {last}{kept}"
        self.epoch_label.setText(f"epoch {when}")
        self.epoch_shown.emit(frame.epoch)

    def statistics_scope(self) -> str:
        return self.scope_box.currentData()

    def shown_statistics(self) -> np.ndarray:
        """The per-head (layers, heads) values drawn: the chosen statistic at the shown epoch,
        averaged over the probes or of the chosen one."""
        values = getattr(self.frame, self.stat_box.currentData())
        return values.mean(0) if self.statistics_scope() == MEAN_OF_PROBES else values[self.probe]

    def _draw_statistics(self) -> None:
        statistic = self.stat_box.currentData()
        if statistic not in self._tops:
            self._tops[statistic] = float(self._shown().stacked(statistic).max())
        probes = len(self._shown().sources)
        scope = (
            f"mean of {probes} probe{_s(probes)}"
            if self.statistics_scope() == MEAN_OF_PROBES
            else f"probe {self.probe + 1}"
        )
        name = STATISTICS[statistic][0]
        title = f"{name} per head<br>epoch {self.frame.epoch}, {scope}"
        self.stats_plot.show_values(
            self.shown_statistics(), statistic, title, self._tops[statistic]
        )
        head = self.map_options().head
        one_head = reads(self.map_kind(), "head") and head is not None
        self.stats_plot.set_selected(self.layer_spin.value() - 1 if one_head else None, head)


def _enlarged(image: np.ndarray, side: int) -> np.ndarray:
    """A small image repeated pixel by pixel to at least ``side`` (an icon never enlarges)."""
    factor = max(1, -(-side // max(image.shape[:2])))
    return np.ascontiguousarray(image.repeat(factor, 0).repeat(factor, 1))


def _s(count: int) -> str:
    return "" if count == 1 else "s"
