"""core.figure.save_png: vitexplorer's own PNG writer (fixed "up" filter, zlib level 1) gives
files every decoder reads back to the same pixels."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitexplorer.core.render.figure import save_png


def libpng_decode(data: bytes) -> np.ndarray | None:
    """``data`` decoded by libpng (torchvision's decoder, which checks a stream strictly) as
    (H, W, channels), or None where this torchvision no longer has it (deprecated in 0.29)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import decode_png
        except ImportError:
            return None
        decoded = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return decoded.permute(1, 2, 0).numpy()


def _image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    pixels[: size[1] // 2] = 255  # a flat part too, as a figure's margins are
    return Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (33, 20), (842, 832)])
def test_pillow_and_libpng_read_back_the_same_pixels(mode: str, size: tuple[int, int]) -> None:
    image = _image(mode, size, seed=size[0])
    handle = io.BytesIO()
    save_png(image, handle)
    data = handle.getvalue()
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == "PNG" and back.mode == mode and back.size == size
        np.testing.assert_array_equal(np.asarray(back), np.asarray(image))
    with Image.open(io.BytesIO(data)) as again:
        again.verify()  # every chunk's CRC
    decoded = libpng_decode(data)
    if decoded is not None:
        np.testing.assert_array_equal(decoded, np.asarray(image).reshape(size[1], size[0], -1))
    idat = data.index(b"IDAT")
    assert data[idat + 4 : idat + 6] == b"\x78\x01"  # zlib level 1


def test_a_path_is_written_as_a_handle_is(tmp_path: Path) -> None:
    image = _image("RGB", (40, 30))
    handle = io.BytesIO()
    save_png(image, handle)
    save_png(image, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes() == handle.getvalue()


def test_other_modes_go_through_pillow_with_the_same_pixels() -> None:
    image = _image("RGB", (20, 10)).convert("P")
    handle = io.BytesIO()
    save_png(image, handle)
    with Image.open(io.BytesIO(handle.getvalue())) as back:
        assert back.mode == "P"
        np.testing.assert_array_equal(np.asarray(back.convert("RGB")), image.convert("RGB"))
