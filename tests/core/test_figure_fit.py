"""Text fitting in figures: the bisection gives the same text as the old linear cut and fits."""

from __future__ import annotations

import random

import pytest

from vitexplorer.core.render.figure import fit, font, text_width, wrap


def linear_fit(draw, text: str, face, width: int) -> str:
    """The old algorithm, kept as the oracle: drop one character at a time and measure again."""
    if text_width(draw, text, face) <= width:
        return text
    while text and text_width(draw, text + "…", face) > width:
        text = text[:-1]
    return text + "…"


@pytest.fixture(scope="module")
def draw():
    from PIL import Image, ImageDraw

    return ImageDraw.Draw(Image.new("RGB", (8, 8)))


ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,()/:éüßλ中文W"


@pytest.mark.slow
@pytest.mark.parametrize("size", [13, 18])
def test_bisection_gives_the_old_text_and_fits(draw, size: int) -> None:
    face = font(size)
    rng = random.Random(size)
    texts = ["", "a", "W", "vit_base_patch16_224 layer 3 head 2", "iiiiiiiiiiii", "WWWWWWWWWW"]
    texts += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 60))) for _ in range(60)]
    cut = 0
    for text in texts:
        full = text_width(draw, text, face)
        for width in sorted({0, 1, 5, full // 3, full // 2, full - 1, full, full + 3, 200}):
            if width < 0:
                continue
            got = fit(draw, text, face, width)
            assert got == linear_fit(draw, text, face, width), (text, width)
            if got != text:
                cut += 1
                assert got.endswith("…") and text.startswith(got[:-1])
                if len(got) > 1:  # more than the ellipsis alone: it fits the width
                    assert text_width(draw, got, face) <= width
    assert cut > 100  # the comparison covered many cuts, not only texts that fit whole


def test_a_long_title_is_cut_to_the_width_quickly(draw) -> None:
    face = font(18)
    text = "x" * 10_000
    calls = 0

    class Counting:
        def textbbox(self, *args, **kwargs):
            nonlocal calls
            calls += 1
            return draw.textbbox(*args, **kwargs)

    got = fit(Counting(), text, face, 400)
    assert got == linear_fit(draw, "x" * 200, face, 400)  # the same prefix as the oracle's
    assert text_width(draw, got, face) <= 400 < text_width(draw, got[:-1] + "x…", face)
    assert calls <= 20  # log2(10,000) + 2 measurements, not one per character dropped


def test_wrap_of_a_long_word_is_bounded(draw) -> None:
    face = font(13)
    lines = wrap(draw, "name " + "y" * 10_000 + " end", face, 300)
    assert lines[0] == "name"
    assert lines[1].endswith("…") and text_width(draw, lines[1], face) <= 300
    assert lines[2] == "end"
