"""A patch heat map blended over the image the model saw, as plain numpy (no Qt).

Used by ``vitexplorer analyze`` to write its PNGs; the views draw the same picture with pyqtgraph.
"""

from __future__ import annotations

import numpy as np


def normalise(heat: np.ndarray, levels: tuple[float, float] | None = None) -> np.ndarray:
    """``heat`` scaled to [0, 1] by its own min and max; a constant map becomes all zeros.

    Values that are not finite (NaN, inf) count as the minimum. With ``levels`` (low, high) the
    scale is that one instead (two maps on one scale, a difference symmetric around zero), values
    outside it clipped; a scale of no width (low == high) puts every value at its middle, 0.5,
    so a difference of zero takes a diverging table's neutral colour.
    """
    values = np.asarray(heat, dtype=np.float64)
    finite = np.isfinite(values)
    if levels is not None:
        low, high = float(levels[0]), float(levels[1])
        if high <= low:
            return np.full(values.shape, 0.5)
    elif not finite.any():
        return np.zeros(values.shape, dtype=np.float64)
    else:
        low, high = float(values[finite].min()), float(values[finite].max())
        if high <= low:
            return np.zeros(values.shape, dtype=np.float64)
    scaled = (np.where(finite, values, low) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0)


def upsample_blocks(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a (rows, cols) map to (height, width), one block per cell.

    Pixel row ``y`` shows grid row ``y * rows // height``, so sizes need not divide evenly.
    """
    rows, cols = grid.shape
    row_index, col_index = block_indices(rows, cols, height, width)
    return grid[row_index[:, None], col_index[None, :]]


def block_indices(rows: int, cols: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid row of each pixel row and the grid column of each pixel column."""
    return np.arange(height) * rows // height, np.arange(width) * cols // width


def render_overlay(
    display: np.ndarray,
    heat: np.ndarray,
    lut: np.ndarray,
    alpha: float = 0.55,
    levels: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blend ``heat`` (rows, cols), coloured by ``lut``, over ``display`` (H, W, 3) uint8.

    The map is normalised to [0, 1] by its own range (or by ``levels``, see :func:`normalise`)
    and value ``v`` takes the colour
    ``lut[round(v * (len(lut) - 1))]``. Each pixel is ``(1 - a) * image + a * colour`` with
    ``a = alpha``, times ``lut[..., 3] / 255`` when the table has an alpha column. Returns a new
    (H, W, 3) uint8 array.
    """
    display = np.asarray(display)
    heat = np.asarray(heat)
    lut = np.asarray(lut)
    if display.ndim != 3 or display.shape[2] != 3 or display.dtype != np.uint8:
        raise ValueError(f"display must be (H, W, 3) uint8, not {display.shape} {display.dtype}")
    if heat.ndim != 2 or 0 in heat.shape:
        raise ValueError(f"heat must be a non-empty (rows, cols) map, not shape {heat.shape}")
    if lut.ndim != 2 or lut.shape[1] not in (3, 4) or len(lut) < 2:
        raise ValueError(f"lut must be (N, 3) or (N, 4) with N >= 2, not shape {lut.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    height, width = display.shape[:2]
    rows, cols = heat.shape
    # colour and weight per patch, then one multiply and one add per pixel (the same float32
    # operations, in the same order, as blending every pixel's own copy: the same pixels)
    index = np.rint(normalise(heat, levels) * (len(lut) - 1)).astype(np.intp)
    colours = lut[index].astype(np.float32)
    weight = np.full((rows, cols, 1), alpha, dtype=np.float32)
    if lut.shape[1] == 4:
        weight = weight * colours[..., 3:] / 255.0
    keep = 1.0 - weight
    paint = colours[..., :3] * weight
    row_index, col_index = block_indices(rows, cols, height, width)  # as upsample_blocks
    blended = display.astype(np.float32)
    blended *= keep[row_index][:, col_index] if lut.shape[1] == 4 else keep.flat[0]
    blended += paint[row_index][:, col_index]
    np.rint(blended, out=blended)
    np.clip(blended, 0, 255, out=blended)
    return blended.astype(np.uint8)
