"""How an image is fed: the one request object, its CLI word, and its home without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vitexplorer.core.models.feed import CROP, WHOLE, Feed


def test_the_cli_word_becomes_a_feed_and_back() -> None:
    assert Feed.from_aspect("keep") is WHOLE and WHOLE.whole
    assert Feed.from_aspect("crop") is CROP and not CROP.whole
    assert [Feed.from_aspect(word).aspect for word in ("crop", "keep")] == ["crop", "keep"]
    assert Feed() == CROP


@pytest.mark.parametrize("word", ["whole", "KEEP", "", True, None])
def test_a_wrong_word_is_refused_in_one_line(word: object) -> None:
    with pytest.raises(ValueError, match="aspect must be 'crop' or 'keep'") as caught:
        Feed.from_aspect(word)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value) and repr(word) in str(caught.value)


def test_the_feed_imports_without_torch_or_qt() -> None:
    code = (
        "import sys; import vitexplorer.core.models.feed; "
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
