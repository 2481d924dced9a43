"""Image loading and preprocessing.

Every input is made here in ``tmp_path``. What can be read must come back as upright 8-bit RGB
with the colours a viewer would show; what cannot must raise :class:`ImageLoadError` whose
message starts with the file name and says what is wrong.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision.models import get_model_weights

from vitexplorer.core.io.images import MAX_PIXELS, ImageLoadError, load_image, to_rgb8
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import crop_box, preprocess
from vitexplorer.core.models.spec import ModelSpec

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---------------------------------------------------------------------------------------------
# helpers


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _noise(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """Random RGB pixels: they do not compress, so half a file is half the picture."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG built with zlib alone: huge sizes cost milliseconds, not GB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte, then packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _stored(path: Path) -> Image.Image:
    """The file as Pillow reads it, undecoded, to check that a test wrote what it means to."""
    with Image.open(path) as image:
        getattr(image, "n_frames", 1)  # a GIF counts its frames from the open file, then caches
        return image


def _pixels(image: Image.Image) -> np.ndarray:
    """(H, W, 3) int array, after checking that the image is 8-bit RGB."""
    assert image.mode == "RGB"
    return np.asarray(image, dtype=np.int64)


def _refusal(source: str | Path | bytes, **kwargs) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# inputs that are refused


def _junk(tmp: Path) -> Path:
    return _write(tmp / "holiday.jpg", random.Random(0).randbytes(4096))


def _truncated_png(tmp: Path) -> Path:
    data = _encode(_noise(), "PNG")
    return _write(tmp / "cut.png", data[: len(data) // 2])


def _truncated_jpeg(tmp: Path) -> Path:
    data = _encode(_noise(), "JPEG", quality=95)
    return _write(tmp / "cut.jpg", data[: len(data) // 2])


def _empty(tmp: Path) -> Path:
    return _write(tmp / "empty.png", b"")


def _text(tmp: Path) -> Path:
    path = tmp / "notes.png"
    path.write_text("this is a shopping list, not a picture\n")
    return path


def _folder(tmp: Path) -> Path:
    path = tmp / "photos.png"
    path.mkdir()
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "nowhere.jpg"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_junk, ["not an image"]),
        (_truncated_png, ["truncated or corrupt"]),
        (_truncated_jpeg, ["truncated or corrupt"]),
        (_empty, ["empty"]),
        (_text, ["not an image"]),
        (_folder, ["folder", "not an image"]),
        (_missing, ["not found"]),
    ],
    ids=["junk", "truncated-png", "truncated-jpeg", "empty", "text", "folder", "missing"],
)
def test_unreadable_input_is_refused_with_its_name_and_reason(
    tmp_path: Path, make: Callable[[Path], Path], words: list[str]
) -> None:
    path = make(tmp_path)
    for source in (path, str(path)):
        message = _refusal(source)
        assert message.startswith(f"{path.name}: "), message
        for word in words:
            assert word in message, message


def test_refusal_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_image(_empty(tmp_path))


def test_empty_bytes_are_refused() -> None:
    message = _refusal(b"")
    assert message.startswith("clipboard image: ")
    assert "empty" in message


def test_junk_bytes_are_refused() -> None:
    message = _refusal(b"GIF89a but nothing else")
    assert message.startswith("clipboard image: ")
    assert "truncated or corrupt" in message or "not an image" in message


# ---------------------------------------------------------------------------------------------
# decompression bombs


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[Image.Image]:
    """Records every pixel decode, to prove that a refused bomb was never decoded."""
    calls: list[Image.Image] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def test_header_over_max_pixels_is_refused(tmp_path: Path, decode_calls: list) -> None:
    path = _write(tmp_path / "bomb.png", _bilevel_png(12000, 12000))
    assert path.stat().st_size < 100_000  # 144 megapixels in a tiny file
    message = _refusal(path, max_pixels=10_000_000)
    assert message.startswith("bomb.png: ")
    assert "12000x12000" in message
    assert "144 megapixels" in message
    assert "10 megapixel limit" in message
    assert decode_calls == []


def test_default_limit_refuses_over_100_megapixels_without_decoding(
    tmp_path: Path, decode_calls: list
) -> None:
    assert MAX_PIXELS == 100_000_000
    path = _write(tmp_path / "huge.png", _bilevel_png(11000, 11000))  # 121 megapixels
    message = _refusal(path)
    assert message.startswith("huge.png: ")
    assert "11000x11000" in message
    assert "121 megapixels" in message
    assert "100 megapixel limit" in message
    assert decode_calls == []


def test_max_pixels_is_inclusive(tmp_path: Path) -> None:
    path = _write(tmp_path / "small.png", _encode(Image.new("RGB", (100, 50), RED), "PNG"))
    assert load_image(path, max_pixels=5000).size == (100, 50)
    assert "megapixel" in _refusal(path, max_pixels=4999)


def test_pillows_own_bomb_error_becomes_image_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises above twice this
    path = _write(tmp_path / "big.png", _encode(Image.new("RGB", (100, 100), RED), "PNG"))
    message = _refusal(path, max_pixels=10**9)
    assert message.startswith("big.png: ")
    assert "too many pixels" in message


def test_pillows_bomb_warning_does_not_override_max_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between Pillow's warning level (89 MP by default) and its error level, only ``max_pixels``
    # decides: a 95 MP picture is within the documented 100 MP limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _write(tmp_path / "ok.png", _encode(Image.new("RGB", (40, 40), RED), "PNG"))  # 1600
    image = load_image(path, max_pixels=10**9)
    assert image.size == (40, 40)
    assert _pixels(image)[0, 0].tolist() == list(RED)


# ---------------------------------------------------------------------------------------------
# high bit depths


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    source = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert source.mode == "I;16"
    path = _write(tmp_path / "deep.png", _encode(source, "PNG"))
    assert _stored(path).mode == "I;16"
    pixels = _pixels(load_image(path))
    assert pixels.shape == (1, 3, 3)
    assert pixels[0, :, 0].tolist() == [0, 128, 255]
    assert (pixels == pixels[..., :1]).all()  # grey stays grey


def test_dark_16_bit_greyscale_stays_dark(tmp_path: Path) -> None:
    # 255 out of 65535 is almost black, however small the largest value is
    source = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint16))
    path = _write(tmp_path / "dark.png", _encode(source, "PNG"))
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 0, 1]


def test_32_bit_float_tiff_is_scaled_to_0_255(tmp_path: Path) -> None:
    source = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32))
    assert source.mode == "F"
    try:
        data = _encode(source, "TIFF")
    except OSError:
        pytest.skip("this Pillow cannot write float TIFF")
    path = _write(tmp_path / "float.tif", data)
    assert _stored(path).mode == "F"
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.25, 0.5, 0.75], [64, 128, 191]),  # intensities in 0..1 are kept, not stretched
        ([0.5, 0.5, 0.5], [128, 128, 128]),  # a flat grey is grey, not black
        ([-1.0, 0.0, 3.0], [0, 64, 255]),  # any other range is stretched to 0..255
        ([float("nan"), 0.0, 1.0], [0, 0, 255]),  # no NaN garbage
        ([float("-inf"), 0.5, float("inf")], [0, 128, 255]),
    ],
    ids=["unit-range", "flat", "other-range", "nan", "inf"],
)
def test_float_images(values: list[float], expected: list[int]) -> None:
    image = to_rgb8(Image.fromarray(np.array([values], dtype=np.float32)))
    assert _pixels(image)[0, :, 0].tolist() == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 257, 65535], [0, 1, 255]),  # a 16-bit range
        ([0, 100, 255], [0, 100, 255]),  # an 8-bit range: plain I carries no bit depth
        ([-100, 0, 100], [0, 128, 255]),  # signed: stretched
        ([-7, -7, -7], [0, 0, 0]),  # flat and signed: no division by zero
    ],
    ids=["16-bit", "8-bit", "signed", "flat-signed"],
)
def test_32_bit_integer_images(values: list[int], expected: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.int32))
    assert image.mode == "I"
    assert _pixels(to_rgb8(image))[0, :, 0].tolist() == expected


# ---------------------------------------------------------------------------------------------
# colour models and transparency


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    path = _write(tmp_path / "print.jpg", _encode(cyan, "JPEG", quality=95))
    assert _stored(path).mode == "CMYK"
    pixels = _pixels(load_image(path))
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels - np.array([0, 255, 255])).max() <= 8


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    source = Image.new("RGBA", (3, 1))
    source.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    source.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent; its blue must not show
    source.putpixel((2, 0), (0, 255, 0, 255))  # opaque green
    path = _write(tmp_path / "alpha.png", _encode(source, "PNG"))
    pixels = _pixels(load_image(path))[0]
    assert np.abs(pixels[0] - np.array([255, 128, 128])).max() <= 1
    assert pixels[1].tolist() == list(WHITE)
    assert pixels[2].tolist() == list(GREEN)


def test_grey_with_alpha_is_composited_over_white(tmp_path: Path) -> None:
    source = Image.new("LA", (3, 1))
    source.putpixel((0, 0), (100, 255))
    source.putpixel((1, 0), (0, 0))
    source.putpixel((2, 0), (0, 128))
    path = _write(tmp_path / "la.png", _encode(source, "PNG"))
    assert _stored(path).mode == "LA"
    pixels = _pixels(load_image(path))[0]
    assert pixels[0].tolist() == [100, 100, 100]
    assert pixels[1].tolist() == list(WHITE)
    assert np.abs(pixels[2] - 127).max() <= 1


def _palette_image() -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([*RED, *GREEN, *BLUE] + [0, 0, 0] * 253)
    image.putdata([0, 1, 2])
    return image


def test_palette_colours_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "palette.png", _encode(_palette_image(), "PNG"))
    assert _stored(path).mode == "P"
    assert _pixels(load_image(path))[0].tolist() == [list(RED), list(GREEN), list(BLUE)]


def test_palette_transparent_index_becomes_white(tmp_path: Path) -> None:
    path = _write(tmp_path / "keyed.png", _encode(_palette_image(), "PNG", transparency=1))
    assert _stored(path).mode == "P"
    assert _pixels(load_image(path))[0].tolist() == [list(RED), list(WHITE), list(BLUE)]


def test_palette_with_alpha_is_composited_over_white() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([*RED, 255, *BLUE, 0] + [0, 0, 0, 255] * 254, "RGBA")
    image.putdata([0, 1])
    assert _pixels(to_rgb8(image))[0].tolist() == [list(RED), list(WHITE)]


@pytest.mark.parametrize(
    ("mode", "opaque", "clear", "expected"),
    [
        ("RGBa", (0, 0, 255, 255), (0, 0, 0, 0), BLUE),
        ("La", (100, 255), (0, 0), (100, 100, 100)),
        ("PA", (2, 255), (2, 0), BLUE),
    ],
    ids=["RGBa", "La", "PA"],
)
def test_in_memory_alpha_modes_are_composited_over_white(
    mode: str, opaque: tuple, clear: tuple, expected: tuple
) -> None:
    image = Image.new(mode, (2, 1))
    if mode == "PA":
        image.putpalette([*RED, *GREEN, *BLUE] + [0, 0, 0] * 253)
    image.putpixel((0, 0), opaque)
    image.putpixel((1, 0), clear)
    assert _pixels(to_rgb8(image))[0].tolist() == [list(expected), list(WHITE)]


@pytest.mark.parametrize(
    ("mode", "colours", "key", "expected"),
    [
        ("L", [10, 200], 10, [WHITE, (200, 200, 200)]),
        ("RGB", [BLUE, (9, 9, 9)], BLUE, [WHITE, (9, 9, 9)]),
    ],
    ids=["grey", "rgb"],
)
def test_png_colour_key_transparency_becomes_white(
    tmp_path: Path, mode: str, colours: list, key, expected: list
) -> None:
    source = Image.new(mode, (2, 1))
    source.putdata(colours)
    path = _write(tmp_path / "key.png", _encode(source, "PNG", transparency=key))
    assert _stored(path).info["transparency"] == key
    assert _pixels(load_image(path))[0].tolist() == [list(c) for c in expected]


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [("L", [0, 77, 255], [0, 77, 255]), ("1", [0, 255], [0, 255])],
    ids=["L", "1-bit"],
)
def test_greyscale_becomes_rgb_with_equal_channels(
    tmp_path: Path, mode: str, values: list[int], expected: list[int]
) -> None:
    source = Image.new(mode, (len(values), 1))
    source.putdata(values)
    path = _write(tmp_path / f"grey-{mode}.png", _encode(source, "PNG"))
    assert _stored(path).mode == mode
    pixels = _pixels(load_image(path))[0]
    assert pixels.tolist() == [[v, v, v] for v in expected]


# ---------------------------------------------------------------------------------------------
# orientation, frames, bytes


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40 wide and 20 high, red left and blue right. Orientation 6 means "rotate 90 degrees
    # clockwise to display": the left edge turns into the top edge, so upright it is 20 wide and
    # 40 high with red on top and blue at the bottom.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)
    pixels = _pixels(image)
    assert np.abs(pixels[:16] - np.array(RED)).max() <= 16
    assert np.abs(pixels[24:] - np.array(BLUE)).max() <= 16


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _stored(path).n_frames == 3
    pixels = _pixels(load_image(path))
    assert pixels.shape == (8, 8, 3)
    assert (pixels == np.array(RED)).all()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_encoded_bytes_are_decoded(kind: type) -> None:
    source = _noise(7, 5)
    image = load_image(kind(_encode(source, "PNG")))
    assert image.size == (7, 5)
    assert np.array_equal(_pixels(image), np.asarray(source))


def test_path_result_is_independent_of_the_file(tmp_path: Path) -> None:
    source = _noise(9, 4)
    path = _write(tmp_path / "gone.png", _encode(source, "PNG"))
    image = load_image(path)
    path.unlink()
    assert np.array_equal(_pixels(image), np.asarray(source))


# ---------------------------------------------------------------------------------------------
# preprocessing


@pytest.fixture(scope="module")
def vit_b_16_spec() -> ModelSpec:
    return load_model("vit_b_16", weights="none", device="cpu").spec


@pytest.mark.slow
@pytest.mark.parametrize("size", [(333, 201), (157, 299)], ids=["landscape", "portrait"])
def test_preprocess_equals_torchvision_transforms(
    vit_b_16_spec: ModelSpec, size: tuple[int, int]
) -> None:
    image = _noise(*size, seed=3)
    reference = get_model_weights("vit_b_16").DEFAULT.transforms()(image)
    tensor = preprocess(image, vit_b_16_spec)
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == torch.float32
    assert torch.equal(tensor, reference)


@pytest.mark.parametrize(
    ("width", "height"),
    [(640, 480), (480, 640), (500, 500)],
    ids=["landscape", "portrait", "square"],
)
def test_crop_box_is_the_centred_square_the_model_sees(
    vit_b_16_spec: ModelSpec, width: int, height: int
) -> None:
    assert (vit_b_16_spec.resize_size, vit_b_16_spec.image_size) == (256, 224)
    left, top, right, bottom = crop_box(width, height, vit_b_16_spec)
    side = min(width, height) * 224 / 256
    # The resize rounds the long side down to whole pixels, so allow one resized pixel of slack.
    pixel = max(width, height) / int(256 * max(width, height) / min(width, height))
    assert right - left == pytest.approx(side, abs=pixel)
    assert bottom - top == pytest.approx(side, abs=pixel)
    assert (left + right) / 2 == pytest.approx(width / 2, abs=pixel)
    assert (top + bottom) / 2 == pytest.approx(height / 2, abs=pixel)
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height
    # along the short side the resize is exact, so the box is too
    if width <= height:
        assert (left, right) == pytest.approx(((width - side) / 2, (width + side) / 2))
    else:
        assert (top, bottom) == pytest.approx(((height - side) / 2, (height + side) / 2))


@pytest.mark.slow
def test_long_thin_image_is_cut_to_its_centre_before_resizing(monkeypatch) -> None:
    """A 60000x2 strip would be resized to billions of pixels; only its centre is needed."""
    import vitexplorer.core.models.preprocessing as data

    spec = load_model("vit_b_16", weights="none", device="cpu").spec
    resized_inputs: list[tuple[int, int]] = []
    real_resize = data.TF.resize

    def recording_resize(image, *args, **kwargs):
        resized_inputs.append(image.size)
        return real_resize(image, *args, **kwargs)

    monkeypatch.setattr(data.TF, "resize", recording_resize)
    strip = Image.new("RGB", (60000, 2), (10, 200, 30))
    tensor = data.preprocess(strip, spec)
    assert resized_inputs == [(8, 2)]  # the central 4:1 part, not the whole strip
    assert tensor.shape == (3, 224, 224)
    green = (torch.tensor([10, 200, 30]) / 255.0 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert torch.allclose(tensor[:, 100, 100], green, atol=1e-5)
    assert data.display_crop(strip, spec).shape == (224, 224, 3)
    left, top, right, bottom = data.crop_box(60000, 2, spec)
    assert abs((left + right) / 2 - 30000) < 1 and bottom - top == pytest.approx(1.75)


def test_every_format_opens_with_only_its_own_plugins_imported(tmp_path):
    """load_image imports the plugins of the formats it reads, not all of Pillow's (issue 14):
    each still opens in a fresh interpreter, and a plugin of no such format stays unloaded."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"):
        Image.fromarray(pixels).save(tmp_path / f"x.{fmt.lower()}", format=fmt)
    code = (
        "import sys, pathlib\n"
        "from vitexplorer.core.io.images import load_image\n"
        f"for path in sorted(pathlib.Path({str(tmp_path)!r}).iterdir()):\n"
        "    image = load_image(path)\n"
        "    print(path.suffix, image.size, image.mode)\n"
        "print('ico' if 'PIL.IcoImagePlugin' in sys.modules else 'no ico')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 8 and all(line.endswith("(7, 9) RGB") for line in lines[:7])
    assert lines[-1] == "no ico"
