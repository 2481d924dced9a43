"""Export what a view shows: the picture (PNG and SVG), the map (.npy) and a method card (.json)
from which the figure can be made again. Every file is written atomically."""

from __future__ import annotations

import html
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize
from PySide6.QtGui import QPainter

from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.core.render.numbering import map_axes

SCALES = (2, 3, 4)  # an exported picture is this many times the view's size on screen
DEFAULT_SCALE = 2


def png_bytes(scene: pg.GraphicsScene, scale: float = DEFAULT_SCALE) -> bytes:
    """The whole scene (title, image, overlay, colour bar) as PNG, drawn again ``scale`` times
    the size it has on screen (text and lines redrawn, not enlarged pixels), through
    pyqtgraph's exporter."""
    from pyqtgraph.exporters import ImageExporter

    exporter = ImageExporter(scene)
    width = exporter.parameters()["width"]  # the view's width on screen
    exporter.parameters()["width"] = max(1, round(width * scale))
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("the picture could not be encoded as PNG")
    return bytes(data.data())


def svg_bytes(scene: pg.GraphicsScene, title: str = "") -> tuple[bytes | None, str]:
    """The scene as SVG and who wrote it, or None and a one-line reason in plain words.

    pyqtgraph's exporter cleans its SVG up, but with Qt 6.10 or later it cannot read the paths
    Qt writes (pyqtgraph issue #3485); Qt's own SVG generator then draws the same scene (text,
    axes and curves as vectors, maps as embedded pictures)."""
    from pyqtgraph.exporters import SVGExporter

    try:
        data = SVGExporter(scene).export(toBytes=True)
        return (bytes(data) if not isinstance(data, str) else data.encode("utf-8")), "pyqtgraph"
    except Exception:  # pyqtgraph #3485; Qt's generator below
        pass
    try:
        from PySide6.QtSvg import QSvgGenerator
    except ImportError:
        return None, "no SVG: this PySide6 has no QtSvg module, and pyqtgraph cannot write one"
    rect = scene.getViewWidget().viewRect()  # what the view shows
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setSize(QSize(round(rect.width()), round(rect.height())))
    generator.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    generator.setTitle(title)
    painter = QPainter()
    if not painter.begin(generator):
        return None, "no SVG: neither pyqtgraph nor Qt could draw this view as SVG"
    scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
    painter.end()
    return bytes(data.data()), "Qt"


VIEW_FILES = ("png", "svg", "npy", "json")  # what :func:`export_view` writes for one view


def view_paths(base: Path) -> list[Path]:
    """The files :func:`export_view` writes for ``base``: ``base``.png, .svg, .npy, .json."""
    return [base.with_name(f"{base.name}.{ext}") for ext in VIEW_FILES]


def export_view(
    base: Path,
    scene: pg.GraphicsScene,
    heat: np.ndarray,
    card: dict[str, Any],
    scale: float = DEFAULT_SCALE,
) -> list[Path]:
    """Write ``base`` + ``.png`` (``scale`` times the view's size), ``.svg``, ``.npy`` (float32,
    as ``heat``) and ``.json`` (``card``, with the files and what the map's axes hold: patch
    rows and columns from 1 at index 0, unless the card says; written last, with each file's
    size in ``files.bytes``); returns the paths. Where no SVG can be made the card says why in
    one plain line, and the rest is written."""
    mode = file_mode()
    heat = np.ascontiguousarray(heat, dtype=np.float32)
    paths = dict(zip(VIEW_FILES, view_paths(base), strict=True))
    axes = card.pop("axes", None) or map_axes(*heat.shape)
    card = {
        **card,
        "files": {"picture": paths["png"].name, "map": paths["npy"].name},
        "map": {"shape": list(heat.shape), "dtype": "float32", "axes": axes},
    }
    files = FileSet()  # one set: the card last, naming each file with its size (core/files.py)
    picture = png_bytes(scene, scale)
    written = [files.add(paths["png"], lambda f: f.write(picture))]
    card["files"]["picture_size"] = list(struct.unpack(">II", picture[16:24]))  # PNG's IHDR
    card["files"]["picture_scale"] = scale
    vector, writer = svg_bytes(scene, str(card.get("title", "")))
    if vector is not None:
        written.append(files.add(paths["svg"], lambda f: f.write(vector)))
        card["files"]["vector"] = paths["svg"].name
        card["files"]["vector_writer"] = writer
    else:
        card["files"]["vector"] = None
        card["files"]["vector_note"] = writer
    files.add(paths["npy"], lambda f: np.save(f, heat, allow_pickle=False))

    def text(listing: list[dict[str, Any]]) -> bytes:
        sizes = {entry["name"]: entry["bytes"] for entry in listing}
        sized = {**card, "files": {**card["files"], "bytes": sizes}}
        return (json.dumps(sized, indent=2) + "\n").encode("utf-8")

    files.card(paths["json"], [*written, paths["npy"]], text)
    files.write(mode)
    return [*written, paths["npy"], paths["json"]]


@contextmanager
def titled(label: pg.LabelItem, title: str, subtitle: str) -> Iterator[None]:
    """``label`` (a view's title) reads ``title`` over ``subtitle`` while a figure is made,
    then what it read before."""
    before = label.text
    label.setText(f"{html.escape(title)}<br><small>{html.escape(subtitle)}</small>")
    _lay_out(label)  # room for the second line now, not when the event loop next runs
    try:
        yield
    finally:
        label.setText(before)
        _lay_out(label)


def _lay_out(item: Any) -> None:
    """Apply the layouts around ``item`` at once, innermost first."""
    parent = item.parentLayoutItem()
    while parent is not None:
        layout = getattr(parent, "layout", None)
        layout = layout() if callable(layout) else layout
        if layout is not None:
            layout.activate()
        parent = parent.parentLayoutItem()


def saved_scale(settings: Any) -> int:
    """The resolution chosen in File > Export resolution: times the view's size on screen."""
    try:
        scale = int(settings.value("export/scale", DEFAULT_SCALE))
    except (TypeError, ValueError):
        return DEFAULT_SCALE
    return scale if scale in SCALES else DEFAULT_SCALE


def scale_menu(menu: Any, settings: Any) -> Any:
    """File > Export resolution: one checkable entry per scale, the choice remembered."""
    from PySide6.QtGui import QActionGroup

    submenu = menu.addMenu("Export &resolution")
    group = QActionGroup(submenu)
    current = saved_scale(settings)
    for scale in SCALES:
        action = submenu.addAction(f"{scale}x the size on screen")
        action.setCheckable(True)
        action.setChecked(scale == current)
        action.setData(scale)
        group.addAction(action)
        action.triggered.connect(lambda _=False, s=scale: settings.setValue("export/scale", s))
    return submenu


def window_inputs(window: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """What the window has open and a save must not overwrite: (files, folders). The images
    opened from files, the explorer's and the compared model's checkpoint or weights (a Hugging
    Face model's folder), the fine-tune dataset (a folder of class folders, or a pixel CSV)."""
    files: list[tuple[str, Any]] = []
    folders: list[tuple[str, Any]] = []
    session = getattr(window, "session", None)
    for entry in getattr(session, "entries", {}).values():
        if isinstance(entry.source, str):
            files.append(("an image open in the window", entry.source))
    compared = getattr(getattr(getattr(window, "explanations", None), "models", None), "info", None)
    for label, info in (("the loaded model", window.model), ("the compared model", compared)):
        if info is None:
            continue
        request = info.request
        for name in (request.name, request.weights, info.weights_file):
            if not name or name in ("default", "none"):
                continue
            if str(name).startswith("hf:"):
                folders.append((f"{label}'s folder", str(name)[3:]))
            else:
                files.append((f"{label}'s file", name))
    finetune = getattr(window, "finetune", None)
    panel = getattr(finetune, "panel", None)
    source = panel.form.source() if panel is not None else ""
    if source and source != "cifar10":  # the chosen folder or pixel CSV
        target = folders if Path(source).expanduser().is_dir() else files
        target.append(("the training dataset", str(Path(source).expanduser())))
    return files, folders


def refuse_overwrite(window: Any, outputs: list[Path], what: str) -> bool:
    """True, with one line in a message and the status bar, when writing ``outputs`` (the files
    a save is about to write) would overwrite something the window has open; nothing is
    written then. ``what`` names the save ("Export view")."""
    from vitexplorer.core.io.output_guard import output_conflict

    files, folders = window_inputs(window)
    reason = output_conflict(outputs, files, folders)
    if reason is None:
        return False
    window.statusBar().showMessage(f"{what}: nothing saved: {reason}", 15000)
    window.show_message(f"{what}: nothing saved", reason)
    return True
