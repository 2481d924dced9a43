"""A training run's curves as a PNG drawn with Pillow (no display, no Qt): loss and accuracy
per epoch, training and validation, the best epoch marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitexplorer.core.render.figure import font, save_png

PANEL = (440, 300)  # width, height of each of the two panels
MARGIN = (56, 34, 16, 40)  # left, top, right, bottom
TRAIN_COLOUR = (31, 119, 180)
VAL_COLOUR = (255, 127, 14)
BEST_COLOUR = (44, 160, 44)


def draw_curves(history: Sequence[Any], best_epoch: int | None = None) -> Any:
    """A PIL image of ``history`` (:class:`~vitexplorer.core.training.engine.Epoch` records)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (2 * PANEL[0], PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    epochs = [e.epoch for e in history]
    panels = (
        ("loss", [e.train_loss for e in history], [e.val_loss for e in history]),
        ("accuracy", [e.train_acc for e in history], [e.val_acc for e in history]),
    )
    for i, (title, train, val) in enumerate(panels):
        _panel(draw, i * PANEL[0], title, epochs, train, val, best_epoch)
    return image


def save_curves(path: str | Path, history: Sequence[Any], best_epoch: int | None = None) -> None:
    save_png(draw_curves(history, best_epoch), path)


def _panel(draw, x0, title, epochs, train, val, best_epoch) -> None:
    left, top, right, bottom = MARGIN
    width, height = PANEL[0] - left - right, PANEL[1] - top - bottom
    ox, oy = x0 + left, top
    small, label = font(12), font(14)
    values = [v for v in (*train, *val) if v is not None and v == v]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if title == "accuracy":
        low, high = 0.0, max(1.0, high)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    first, last = (epochs[0], epochs[-1]) if epochs else (1, 1)
    span = max(1, last - first)

    def at(epoch: float, value: float) -> tuple[float, float]:
        return (
            ox + (epoch - first) / span * width,
            oy + (1 - (value - low) / (high - low)) * height,
        )

    draw.rectangle([ox, oy, ox + width, oy + height], outline=(160, 160, 160))
    draw.text((ox, 8), title, fill="black", font=label)
    for value in (low, (low + high) / 2, high):
        _, y = at(first, value)
        text = f"{value:.0%}" if title == "accuracy" else f"{value:.3g}"
        draw.text((x0 + 4, y - 7), text, fill=(90, 90, 90), font=small)
    for epoch in sorted({first, last}):
        x, _ = at(epoch, low)
        draw.text((x - 4, oy + height + 6), str(epoch), fill=(90, 90, 90), font=small)
    draw.text((ox + width / 2 - 18, oy + height + 20), "epoch", fill=(90, 90, 90), font=small)
    if best_epoch is not None and epochs:
        x, _ = at(best_epoch, low)
        draw.line([x, oy, x, oy + height], fill=BEST_COLOUR, width=1)
        room = x0 + PANEL[0] - x  # to the panel's edge: at the last epoch the word goes left
        wide = draw.textlength("best", font=small) + 6
        where = x + 3 if room >= wide else x - wide
        draw.text((where, oy + height - 16), "best", fill=BEST_COLOUR, font=small)
    for series, colour, name, row in ((train, TRAIN_COLOUR, "train", 0),
                                      (val, VAL_COLOUR, "validation", 1)):  # fmt: skip
        points = [at(e, v) for e, v in zip(epochs, series, strict=True) if v is not None]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        if points:
            draw.text((ox + width - 90, oy + 6 + 14 * row), name, fill=colour, font=small)
