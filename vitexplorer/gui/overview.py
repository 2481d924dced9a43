"""The Overview dock: every layer x every head for the selected token, or the explorer's method
over every open image side by side, each on one stated colour scale, exportable as one figure.
The maps come from core (``head_maps``, ``method_map``); this module only arranges them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.explain.maps import caption, map_job, resolved
from vitexplorer.core.explain.method import get
from vitexplorer.core.explain.methods.attention import ATTENTION
from vitexplorer.core.explain.tokens import head_maps
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.render.numbering import shown
from vitexplorer.core.render.scales import is_distribution, uniform_mark
from vitexplorer.gui.explorer_host import Explorer
from vitexplorer.gui.views.map_grid import MapGridView, Tile

LAYERS_HEADS, IMAGES = "layers_heads", "images"


def uniform_options(method: str, tokens: set[int]) -> dict:
    """The uniform mark for maps of ``method`` over images whose rows are over ``tokens``
    tokens: one mark where all have the same number, else a note saying that the level differs
    (one line would be wrong for some); nothing for relevance."""
    if not is_distribution(method) or not tokens:
        return {}
    if len(tokens) == 1:
        return {"uniform": uniform_mark(method, next(iter(tokens)))}
    low, high = min(tokens), max(tokens)
    return {"uniform_note": f"uniform level not marked: it differs by image, 1/{high} to 1/{low}"}


class Overview(QWidget):
    """A mode box, an export button and the grid, drawn from the explorer's ``context``
    (:class:`~vitexplorer.gui.explorer_host.Explorer`) and its ``explanations`` (the method
    bar and the maps)."""

    def __init__(self, context: Explorer, explanations) -> None:
        super().__init__()
        self.context = context
        self.explanations = explanations
        self.mode_box = QComboBox()
        self.mode_box.addItem("Every layer × head", LAYERS_HEADS)
        self.mode_box.addItem("Every open image", IMAGES)
        self.mode_box.setToolTip(
            "Every layer and head of the raw attention for the selected token, or the "
            "explorer's method over every image in the Images strip; one colour scale for all"
        )
        self.export_button = QPushButton("Export figure…")
        self.export_button.setEnabled(False)
        self.view = MapGridView()
        row = QHBoxLayout()
        row.setContentsMargins(4, 2, 4, 2)
        row.addWidget(self.mode_box, 1)
        row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        self.heading = ""  # what the grid shows, without the scale
        self.subtitle = ""  # the model and the image(s)
        self._shown: tuple | None = None
        self._asked: set[tuple] = set()  # (model, image, class): relevance asked by the grid
        self.on_screen = False  # the dock is shown and its tab in front
        self._pending = QTimer(self)  # relevance maps of other images on their way
        self._pending.setInterval(400)
        self._pending.timeout.connect(lambda: self.refresh(force=True))
        self.mode_box.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        self.export_button.clicked.connect(self.export)

    @property
    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(self.mode_box.findData(mode))

    def set_on_screen(self, shown: bool) -> None:
        """The dock's ``visibilityChanged``: drawn when its tab comes to the front."""
        self.on_screen = shown
        if shown:
            self.refresh()
        else:
            self._pending.stop()

    def refresh(self, force: bool = False) -> None:
        """Draw again if what the grid shows changed (only while it is on screen)."""
        ctx = self.context
        analysis = ctx.analysis
        if analysis is None or not self.on_screen:
            return
        sel = ctx.state
        choice = self.explanations.method_bar.choice()
        keys = tuple((k, e.analysis is not None) for k, e in ctx.images.entries.items())
        state = (self.mode, ctx.current_key, sel.layer, sel.head, sel.token)
        if self.mode == IMAGES:
            state += (choice, keys)
        if state == self._shown and not force:
            return
        self._shown = state
        self._pending.stop()
        if self.mode == LAYERS_HEADS:
            self._draw_layers_heads(analysis, sel)
        else:
            self._draw_images(sel, choice)
        self.export_button.setEnabled(self.view.levels is not None)

    def _draw_layers_heads(self, analysis, sel: Selection) -> None:
        spec = analysis.spec
        token = sel.token
        tiles = [
            [Tile(heat) for heat in head_maps(analysis.attention, layer, token, spec.grid,
                                               spec.num_prefix_tokens)]
            for layer in range(spec.num_layers)
        ]  # fmt: skip
        where = f"{spec.token_label(token)} (token {shown(token)})"
        self.heading = f"Raw attention of {where} · every layer × head"
        self.subtitle = f"{spec.display_name} · {self.context.current.name}"
        self.view.set_tiles(
            tiles,
            f"{self.heading} · {self.context.current.name}",
            [f"layer {shown(layer)}" for layer in range(spec.num_layers)],
            [f"head {shown(head)}" for head in range(spec.num_heads)],
            uniform=uniform_mark(ATTENTION.name, spec.num_tokens),  # every row over N tokens
        )

    def _draw_images(self, sel: Selection, choice) -> None:
        ctx = self.context
        current = ctx.analysis
        tiles: list[Tile] = []
        tokens: set[int] = set()  # the drawn maps' rows are over this many tokens
        pending = False
        described = get(choice.method)
        for key, entry in ctx.images.entries.items():
            analysis = entry.analysis
            if analysis is None:
                tiles.append(Tile(None, f"{entry.name}: being analysed"))
                pending = True
                continue
            spec = analysis.spec
            token, note = sel.token, ""
            if token >= spec.num_tokens:  # another grid (whole images): its first token
                token, note = 0, f", {spec.token_label(0)}"
            options = choice.at(Selection(sel.layer, sel.head, token))
            if described.class_specific:  # each image's own class unless one is chosen
                target = resolved(choice.method, options, analysis).target_class
                note = f" · {spec.class_names[target]}"
            explanations = self.explanations
            heat = explanations.maps.map(key, analysis, choice.method, options)
            if heat is None:  # a map the worker has not computed yet: asked for, once
                asked = (key, map_job(choice.method, options, analysis))
                once = (ctx.model.generation, *asked)  # a failed map is not asked again
                if once in self._asked and asked not in explanations.maps_asked:
                    words = f"{entry.name}: no {choice.method} map"
                    tiles.append(Tile(None, words, analysis.display))
                    continue
                self._asked.add(once)
                explanations._ask_map(*asked)
                pending = True
                tiles.append(Tile(None, f"{entry.name}: computing…", analysis.display))
                continue
            tiles.append(Tile(heat, f"{entry.name}{note}", analysis.display))
            tokens.add(spec.num_tokens)
        columns = max(1, round(len(tiles) ** 0.5 + 0.49))
        rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
        what = caption(choice.method, choice.at(sel), current)
        if described.class_specific and choice.target is None:
            what = f"{choice.method} for each image's predicted class (named on it), CLS token"
        if not described.class_specific:
            what += f" · {current.spec.token_label(sel.token)} (token {shown(sel.token)})"
        self.heading = f"{what[:1].upper()}{what[1:]} · every open image"
        names = [e.name for e in ctx.images.entries.values()]
        self.subtitle = f"{current.spec.display_name} · {', '.join(names)}"
        self.view.set_tiles(rows, self.heading, **uniform_options(choice.method, tokens))
        if pending:
            self._pending.start()

    # --- export ---------------------------------------------------------------------------
    def export(self) -> None:
        """Export figure…: the grid as one PNG (and SVG), its maps as one .npy, and a card."""
        ctx = self.context
        stem = Path(ctx.current.name).stem or "image"
        name = f"{stem}.layers-x-heads" if self.mode == LAYERS_HEADS else "images"
        folder = ctx.settings.value("export/folder", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(
            ctx.parent,
            "Export the overview as one figure",
            str(Path(str(folder)) / f"{name}.png"),
            "PNG image (*.png)",
        )
        if not path:
            return
        base = Path(path)
        if base.suffix.lower() == ".png":
            base = base.with_suffix("")
        from vitexplorer.gui.export import refuse_overwrite, view_paths

        if refuse_overwrite(ctx.parent, view_paths(base), "Export figure"):
            return
        try:
            written = self.export_to(base)
        except OSError as exc:
            ctx.host.show_message("Could not export the figure", f"{base}: {exc.strerror or exc}")
            return
        ctx.settings.setValue("export/folder", str(base.parent))
        ctx.host.say(f"Exported {len(written)} files: {', '.join(p.name for p in written)}", 10000)

    def export_to(self, base: Path) -> list[Path]:
        """Write the grid as ``base``.png/.svg/.npy/.json at the chosen export resolution."""
        from vitexplorer.core.explain.provenance import json_ready
        from vitexplorer.gui.export import export_view, saved_scale, titled

        values = self.view.values()
        levels = self.view.levels
        card: dict[str, Any] = {
            "title": self.heading,
            "subtitle": self.subtitle,
            "colour_scale": list(levels) if levels else None,
            "uniform_level": self.view.uniform[0] if self.view.uniform else None,
            "axes": self._axes(values.shape),
        }
        card = json_ready(card)[0]
        scale_text = self.view.scale_text
        with titled(self.view.title, self.heading, f"{self.subtitle} · {scale_text}"):
            return export_view(base, self.view.scene(), values, card, saved_scale(
                self.context.settings))  # fmt: skip

    def _axes(self, shape: tuple[int, ...]) -> list[str]:
        if self.mode == LAYERS_HEADS:
            first = [f"axis 0: layers 1..{shape[0]}", f"axis 1: heads 1..{shape[1]}"]
        else:
            names = ", ".join(e.name for e in self.context.images.entries.values())
            first = [
                f"axis 0: rows of images, axis 1: columns; images row by row in this order: "
                f"{names} (NaN where none)",
                "",
            ]
            first = [first[0]]
        return [*first, f"axis 2: patch rows 1..{shape[2]}", f"axis 3: patch columns 1..{shape[3]}"]
