"""Export what a view shows: the picture (PNG and SVG), the map (.npy) and a method card (.json)
from which the figure can be made again. Every file is written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice

from vitexplorer.core.files import file_mode, write_atomic
from vitexplorer.core.numbering import map_axes


def png_bytes(scene: pg.GraphicsScene, width: int | None = None) -> bytes:
    """The whole scene (title, image, overlay, colour bar) as PNG, through pyqtgraph's exporter."""
    from pyqtgraph.exporters import ImageExporter

    exporter = ImageExporter(scene)
    if width is not None:
        exporter.parameters()["width"] = width
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("the picture could not be encoded as PNG")
    return bytes(data.data())


def svg_bytes(scene: pg.GraphicsScene) -> bytes:
    from pyqtgraph.exporters import SVGExporter

    data = SVGExporter(scene).export(toBytes=True)
    return bytes(data) if not isinstance(data, str) else data.encode("utf-8")


def export_view(
    base: Path, scene: pg.GraphicsScene, heat: np.ndarray, card: dict[str, Any]
) -> list[Path]:
    """Write ``base`` + ``.png``, ``.svg``, ``.npy`` (float32, grid rows x columns) and
    ``.json`` (``card``, with the files and what the map's axes hold: patch rows and columns
    from 1 at index 0); returns the paths. An SVG that pyqtgraph cannot make is left out, not
    fatal."""
    mode = file_mode()
    heat = np.ascontiguousarray(heat, dtype=np.float32)
    paths = {ext: base.with_name(f"{base.name}.{ext}") for ext in ("png", "svg", "npy", "json")}
    card = {
        **card,
        "files": {"picture": paths["png"].name, "map": paths["npy"].name},
        "map": {"shape": list(heat.shape), "dtype": "float32", "axes": map_axes(*heat.shape)},
    }
    written = []
    picture = png_bytes(scene)
    write_atomic(paths["png"], lambda f: f.write(picture), mode)
    written.append(paths["png"])
    try:
        vector = svg_bytes(scene)
    except Exception as exc:  # noqa: BLE001  (the PNG stands; say why there is no SVG)
        # pyqtgraph 0.14's SVG exporter cannot parse the paths that Qt 6.10+ writes
        # (pyqtgraph issue #3485): every scene fails there
        vector = None
        card["files"]["vector"] = None
        card["files"]["vector_note"] = f"pyqtgraph could not write an SVG here: {exc}"
    if vector is not None:
        write_atomic(paths["svg"], lambda f: f.write(vector), mode)
        written.append(paths["svg"])
        card["files"]["vector"] = paths["svg"].name
    write_atomic(paths["npy"], lambda f: np.save(f, heat, allow_pickle=False), mode)
    text = (json.dumps(card, indent=2) + "\n").encode("utf-8")
    write_atomic(paths["json"], lambda f: f.write(text), mode)
    return [*written, paths["npy"], paths["json"]]
