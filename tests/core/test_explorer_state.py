"""The explorer's evented state (issue 23, step 3): one announcement per change, the feed as a
value, and images decoded once for every job that reads them."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitexplorer.core.explorer.decoded import DecodedImages
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.explorer.state import DRAWN, ExplorerState
from vitexplorer.core.io import images as image_io
from vitexplorer.core.models.feed import CROP, WHOLE, Feed


def test_a_change_is_announced_once_with_the_fields_it_changed():
    state = ExplorerState()
    heard: list[frozenset[str]] = []
    state.subscribe(heard.append)
    state.token = 5
    state.update(layer=2, head=1, token=5)  # the token is unchanged: not announced
    state.feed = WHOLE
    state.feed = Feed(True)  # an equal value: nothing
    assert heard == [frozenset({"token"}), frozenset({"layer", "head"}), frozenset({"feed"})]
    assert state.selection == Selection(2, 1, 5)


def test_what_redraws_is_the_selection_and_the_choices_not_the_feed():
    assert {"layer", "head", "token", "choice", "comparing"} <= DRAWN
    assert "feed" not in DRAWN and "image" not in DRAWN


def test_the_feed_says_how_a_card_names_it():
    assert (CROP.whole, CROP.aspect) == (False, "crop")
    assert (WHOLE.whole, WHOLE.aspect) == (True, "keep")


def test_an_image_is_decoded_once_for_all_its_jobs(tmp_path: Path, monkeypatch):
    path = tmp_path / "photo.png"
    rgb = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    Image.fromarray(rgb).save(path)
    calls: list[object] = []
    real = image_io.load_image

    def counting(source, *args, **kwargs):
        calls.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(image_io, "load_image", counting)
    images = DecodedImages(keep=2)
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(images.get("a", str(path)))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(got) == 6
    np.testing.assert_array_equal(np.asarray(got[0]), rgb)
    got[0].putpixel((0, 0), (1, 2, 3))  # a copy: the kept image is not changed
    assert images.get("a", str(path)).getpixel((0, 0)) == tuple(rgb[0, 0])
    images.get("b", str(path))
    images.get("c", str(path))  # "a" is the least recently used of three: dropped
    images.get("a", str(path))
    assert len(calls) == 4
    images.forget("a")
    images.get("a", str(path))
    assert len(calls) == 5


def test_a_refused_image_is_refused_each_time_with_its_line(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    images = DecodedImages()
    for _ in range(2):
        with pytest.raises(image_io.ImageLoadError, match="empty.png: the file is empty"):
            images.get("x", str(path))
