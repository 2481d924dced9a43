"""The explorer's Qt-free state: which analyses stay in memory, and where selections go."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vitexplorer.core.explorer.session import ImageSession, Selection, expand_paths
from vitexplorer.core.models.spec import ModelSpec

SPEC = ModelSpec(
    name="small_vit",
    display_name="test",
    weights="random",
    image_size=48,
    resize_size=48,
    patch_size=8,
    num_layers=3,
    num_heads=4,
    class_names=("a", "b"),
)


def _analysis(megabytes: int) -> SimpleNamespace:
    return SimpleNamespace(attention=np.zeros(megabytes * 2**20, dtype=np.uint8))


def test_eviction_drops_least_recently_used_but_never_the_current() -> None:
    session = ImageSession(memory_budget=25 * 2**20)
    keys = [session.add(f"im{i}", f"/x/{i}.png") for i in range(4)]
    session.current_key = keys[0]
    for key in keys[:3]:
        session.store(key, _analysis(10))
    # 30 MB > 25 MB: the oldest that is not current (keys[1]) goes
    assert [k for k in keys if session.entries[k].analysis] == [keys[0], keys[2]]
    session.touch(keys[0])
    session.current_key = keys[3]
    session.store(keys[3], _analysis(10))
    # keys[2] is now the least recently used
    assert [k for k in keys if session.entries[k].analysis] == [keys[0], keys[3]]
    assert session.held_bytes() == 20 * 2**20


def test_a_huge_current_analysis_is_kept_alone() -> None:
    session = ImageSession(memory_budget=5 * 2**20)
    old, new = session.add("old", "a"), session.add("new", "b")
    session.store(old, _analysis(2))
    session.current_key = new
    session.store(new, _analysis(9))
    assert session.entries[old].analysis is None and session.analysis is not None


def test_remove_and_forget() -> None:
    session = ImageSession()
    a, b = session.add("a", "a"), session.add("b", b"png bytes")
    session.current_key = a
    session.store(a, _analysis(1))
    session.store(b, _analysis(1))
    assert session.remove(a).name == "a" and session.current_key is None
    assert session.held_bytes() == 2**20
    session.forget_analyses()
    assert session.entries[b].analysis is None and session.held_bytes() == 0


def test_expand_paths_lists_image_files_of_folders(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert expand_paths([str(tmp_path), "/elsewhere/c.png"]) == [
        str(tmp_path / "a.JPG"),
        str(tmp_path / "b.png"),
        "/elsewhere/c.png",
    ]


def test_arrow_moves_stop_at_the_edges_and_start_from_the_centre() -> None:
    selection = Selection()
    assert selection.moved(0, 1, SPEC) == 1 + 3 * 6 + 3  # from CLS: the centre of 6x6
    selection.token = 1 + 0 * 6 + 5  # top right corner
    assert selection.moved(-1, 0, SPEC) == selection.token
    assert selection.moved(0, 1, SPEC) == selection.token
    assert selection.moved(1, -1, SPEC) == 1 + 1 * 6 + 4


def test_fit_keeps_what_still_makes_sense() -> None:
    selection = Selection(layer=7, head=3, token=20)
    selection.fit(SPEC)
    assert (selection.layer, selection.head, selection.token) == (2, 3, 0)
    selection.head = 5
    selection.fit(SPEC)
    assert selection.head is None


def test_expand_paths_makes_relative_paths_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert expand_paths(["photo.jpg"]) == [str(tmp_path / "photo.jpg")]
