"""A drop of thousands of images: every one becomes an entry, without the strip scanning itself
per image, the window back in its event loop after the first chunk, and thumbnails decoded only
near the view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitexplorer.gui.main_window import ADD_CHUNK, MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

COUNT = 2000


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """``COUNT`` tiny PNGs, each its own colour."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png", compress_level=0)
    return folder


def test_drop_of_2000_images(qtbot, window: MainWindow, many: Path):
    strip = window.thumbnails
    item_calls = [0]
    own_item = strip.item

    def counted_item(row: int):
        item_calls[0] += 1
        return own_item(row)

    strip.item = counted_item  # every row the strip reads, counted
    requested: list[str] = []
    own_request = window.previews.request
    window.previews.request = lambda key, source: (requested.append(key), own_request(key, source))

    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.add_images([str(many)])
        # back to the event loop after one chunk; the rest follows from there
        assert strip.count() == ADD_CHUNK < COUNT
    qtbot.waitUntil(lambda: strip.count() == COUNT, timeout=30000)

    names = [window.session.entries[key].name for key in strip.keys()]
    assert names == [f"img{i:05d}.png" for i in range(COUNT)]
    assert len(window.session.entries) == COUNT
    first = strip.keys()[0]
    assert window.session.current_key == first
    assert strip.currentItem() is strip.item_for(first)
    assert window.analysis is window.session.entries[first].analysis is not None

    # lookups by key: found in a dict, never by scanning (the old strip read ~2,000,000 rows)
    assert isinstance(strip._items, dict) and len(strip._items) == COUNT
    last = strip.keys()[-1]
    assert strip.item_for(last).data(256) == last  # Qt.UserRole
    assert item_calls[0] < 20 * COUNT, f"{item_calls[0]} rows read for {COUNT} images"

    # thumbnails: those near the view were asked for, none far away
    near = list(strip.near_view())
    assert near[0] == 0 and len(near) < 100
    # an image already analysed has its thumbnail from the analysis (the first, and any the
    # model worker reached first): each near one is asked for or analysed, and nothing else is
    near_keys = {strip.keys()[row] for row in near}

    def covered() -> bool:
        analysed = {k for k in near_keys if window.session.entries[k].analysis is not None}
        return near_keys <= set(requested) | analysed

    qtbot.waitUntil(covered, timeout=10000)
    assert set(requested) <= near_keys
    assert last not in requested
    strip.scrollToItem(strip.item_for(last))
    qtbot.waitUntil(lambda: last in requested, timeout=10000)
    assert len(requested) < 4 * len(near)
