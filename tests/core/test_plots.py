"""The distance-against-depth plot drawn with Pillow (``vitexplorer stats``): its size, the dots
of the heads and the line of the layers' means where they belong, axes from layer 1, and no Qt
or torch imported to draw it."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vitexplorer.core.render import plots
from vitexplorer.core.render.plots import (
    MEAN_COLOUR,
    POINT_COLOUR,
    TICK_LENGTH,
    draw_distance_plot,
    layer_ticks,
    save_distance_plot,
)


def _distance(layers: int = 6, heads: int = 4) -> np.ndarray:
    """Heads 3 px apart, layers 5 px apart: dots well away from each other and the means."""
    layer, head = np.meshgrid(np.arange(layers), np.arange(heads), indexing="ij")
    return 10.0 + 5.0 * layer + 3.0 * head


def _pixel(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    return image.getpixel((round(x), round(y)))


def _mean_near(image: Image.Image, x: float, y: float, rows: int = 2) -> bool:
    """Whether the mean line's colour is in column ``x`` within ``rows`` of row ``y``."""
    return any(_pixel(image, x, y + d) == MEAN_COLOUR for d in range(-rows, rows + 1))


def test_the_plot_is_readable_and_not_blank() -> None:
    plot = draw_distance_plot(_distance(), "Tiny ViT: mean attention distance, 3 image(s)")
    image = plot.image
    assert image.mode == "RGB" and image.size == (900, 560)
    pixels = np.asarray(image)
    white = np.all(pixels == 255, axis=-1).mean()
    assert 0.5 < white < 0.99  # a white page with ink on it
    dots = np.all(pixels == POINT_COLOUR, axis=-1).sum()
    assert dots >= 24 * 30  # 24 heads, each a dot 9 px across (the means cover a little)
    left, top, right, bottom = plot.plot_box
    assert right - left >= 640 and bottom - top >= 300
    assert np.any(pixels[: top - 20, :, :].max(axis=-1) < 100)  # the title, in dark ink
    # the y axis from 0 to 5% over the largest distance, as the app's plot
    assert plot.y_high == pytest.approx(_distance().max() * 1.05)
    assert plot.y_of(0.0) == bottom and plot.y_of(plot.y_high) == pytest.approx(top)
    # layer 1 is labelled under its dot (layers count from 1): ink just below its tick
    x = round(plot.x_of(1))
    below = pixels[bottom + TICK_LENGTH + 2 : bottom + TICK_LENGTH + 22, x - 6 : x + 7]
    assert below.min() < 100


def test_each_head_is_a_dot_and_each_layer_mean_is_on_the_line() -> None:
    distance = _distance()
    plot = draw_distance_plot(distance, "t")
    image = plot.image
    layers, heads = distance.shape
    for layer in range(layers):
        for head in range(heads):
            x, y = plot.x_of(layer + 1), plot.y_of(distance[layer, head])
            assert _pixel(image, x, y) == POINT_COLOUR, (layer, head)
    means = distance.mean(axis=1)
    for layer in range(layers):  # the marker on each layer's mean, drawn over the dots
        assert _pixel(image, plot.x_of(layer + 1), plot.y_of(means[layer])) == MEAN_COLOUR
    for layer in range(layers - 1):  # and the line between neighbours, where no dot is
        x = (plot.x_of(layer + 1) + plot.x_of(layer + 2)) / 2
        y = (plot.y_of(means[layer]) + plot.y_of(means[layer + 1])) / 2
        assert _mean_near(image, x, y), layer
        assert not _mean_near(image, x, y + 30, rows=5)  # a line, not a band
    # nothing drawn in the empty bottom right of the data area but the grid
    left, top, right, bottom = plot.plot_box
    corner = np.asarray(image)[bottom - 40 : bottom - 2, right - 60 : right - 2]
    assert corner.min() >= 200


def test_heads_without_a_distance_are_left_out_and_the_line_breaks() -> None:
    distance = _distance()
    distance[0, 1] = np.nan  # one head
    distance[2, :] = np.inf  # a whole layer
    plot = draw_distance_plot(distance, "t")
    image = plot.image
    assert plot.y_high == pytest.approx(np.nanmax(distance[np.isfinite(distance)]) * 1.05)
    mean_0 = np.mean(distance[0, [0, 2, 3]])  # the finite heads only
    assert _pixel(image, plot.x_of(1), plot.y_of(mean_0)) == MEAN_COLOUR
    _, top, _, bottom = plot.plot_box
    for x in ((plot.x_of(2) + plot.x_of(3)) / 2, (plot.x_of(3) + plot.x_of(4)) / 2):
        column = np.asarray(image)[top:bottom, round(x)]
        assert not np.all(column == MEAN_COLOUR, axis=-1).any()  # no line across layer 3
    x = (plot.x_of(4) + plot.x_of(5)) / 2  # and the line again after it
    assert np.all(np.asarray(image)[top:bottom, round(x)] == MEAN_COLOUR, axis=-1).any()


def test_nothing_finite_draws_an_empty_plot_that_says_so() -> None:
    plot = draw_distance_plot(np.full((3, 2), np.nan), "t")
    left, top, right, bottom = plot.plot_box
    pixels = np.asarray(plot.image)[top:bottom, left:right]  # the legend above keeps its keys
    assert plot.y_high == pytest.approx(1.05)
    assert not np.all(pixels == POINT_COLOUR, axis=-1).any()
    assert not np.all(pixels == MEAN_COLOUR, axis=-1).any()
    middle = pixels[pixels.shape[0] // 2 - 10 : pixels.shape[0] // 2 + 10]
    assert middle.min() < 160  # "no finite distances", in grey
    with pytest.raises(ValueError, match="layers, heads"):
        draw_distance_plot(np.zeros(4), "t")


@pytest.mark.parametrize(
    ("layers", "labelled"),
    [
        (1, [1]),
        (6, [1, 2, 3, 4, 5, 6]),
        (16, list(range(1, 17))),
        (24, list(range(2, 25, 2))),  # every other layer: 1 would crowd 2
        (32, list(range(2, 33, 2))),
        (48, [1, *range(4, 49, 4)]),
    ],
)
def test_the_depth_axis_labels_layers_from_1(layers: int, labelled: list[int]) -> None:
    assert layer_ticks(layers)[0] == labelled


def test_a_long_title_takes_two_lines_at_most() -> None:
    short = draw_distance_plot(_distance(), "short")
    long = draw_distance_plot(_distance(), "a-very-long-checkpoint-name " * 20)
    assert long.plot_box[1] - short.plot_box[1] <= 30  # one more title line, not twenty
    assert long.image.size == short.image.size


def test_saved_png_has_the_drawn_pixels() -> None:
    handle = io.BytesIO()
    save_distance_plot(handle, _distance(), "t")
    with Image.open(io.BytesIO(handle.getvalue())) as back:
        assert back.format == "PNG"
        drawn = draw_distance_plot(_distance(), "t").image
        np.testing.assert_array_equal(np.asarray(back), np.asarray(drawn))


def test_drawing_imports_neither_qt_nor_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        f"from {plots.__name__} import draw_distance_plot\n"
        "draw_distance_plot(np.ones((2, 2)), 't')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'shiboken6', 'pyqtgraph', 'torch')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
