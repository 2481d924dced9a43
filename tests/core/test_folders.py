"""The one folder scanner (core.folders): which files are images, links, loops, unreadable
folders, the order; and every caller (datasets, the sanity checks' labelled folders, the command
line's folder inputs, the GUI's folder average and class count) finding the same images."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from vitexplorer.cli.common import expand_images
from vitexplorer.core.evaluate.faithfulness import labelled_images
from vitexplorer.core.explorer.session import expand_paths
from vitexplorer.core.io import folders
from vitexplorer.core.io.folders import image_files, image_paths, is_image_name, subfolders
from vitexplorer.core.io.staging import TEMP_PREFIX
from vitexplorer.core.training.datasets import DatasetError, open_dataset
from vitexplorer.gui.explanations import folder_images
from vitexplorer.gui.finetune_settings import _subfolders


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _names(paths, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


def _unreadable(monkeypatch: pytest.MonkeyPatch, *blocked: Path) -> None:
    """``os.scandir`` refuses ``blocked`` as a folder without read permission does (the suite
    may run as root, whom chmod does not stop)."""
    real = os.scandir
    refused = {os.fspath(p) for p in blocked}

    def scandir(path=".", *args):
        if os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args)

    monkeypatch.setattr(folders.os, "scandir", scandir)


def _tricky_folder(folder: Path, outside: Path) -> None:
    """Images and things that are not: hidden, a write's leftover, other suffixes, links."""
    for name in ("a.png", "B.JPG", "c.JpEg", "d.tiff", ".hidden.png", "notes.txt", "png",
                 "archive.png.txt", f"{TEMP_PREFIX}4242-k3y_x.tmp.png"):  # fmt: skip
        _touch(folder / name)
    (folder / "to-file.png").symlink_to(_touch(outside / "real.png"))
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "to-folder").symlink_to(outside, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    _touch(folder / "named.png" / "inner.png")  # a folder named like an image
    _touch(folder / "sub" / "deeper" / "e.webp")
    (folder / "sub" / "up").symlink_to(folder.parent, target_is_directory=True)
    _touch(folder / ".cache" / "thumb.png")  # a hidden folder
    _touch(folder / f"{TEMP_PREFIX}4242-k3y_x.tmp" / "half.png")  # a write's scratch folder
    os.mkfifo(folder / "pipe.png")


TRICKY_TOP = ["B.JPG", "a.png", "c.JpEg", "d.tiff", "to-file.png"]
TRICKY_ALL = ["B.JPG", "a.png", "c.JpEg", "d.tiff", "named.png/inner.png", "sub/deeper/e.webp",
              "to-file.png"]  # fmt: skip


def test_which_names_are_images() -> None:
    for name in ("a.png", "A.PNG", "b.JpEg", "c.tif", "d.TIFF", "e.webp", "f.ppm", "g.gif",
                 "h.bmp", "x.y.jpg", "space .png"):  # fmt: skip
        assert is_image_name(name), name
    for name in (".a.png", f"{TEMP_PREFIX}12-ab_c.tmp.png", "a.txt", "png", ".png", "a.",
                 "a.png.txt", "a.pngx", "a", "g", "a.svg", "a.eps"):  # fmt: skip
        assert not is_image_name(name), name


def test_the_rules_of_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _tricky_folder(root, tmp_path / "outside")
    assert _names(image_files(root), root) == TRICKY_TOP
    assert _names(image_files(root, recursive=True), root) == TRICKY_ALL
    assert image_paths(root, recursive=True) == [str(p) for p in image_files(root, True)]
    assert image_files(root / "loop", recursive=True) == [
        root / "loop" / name for name in TRICKY_ALL
    ]  # a link named by the caller is opened; below it, links to folders are not followed


def test_a_link_loop_does_not_trap_the_walk(tmp_path: Path) -> None:
    root = tmp_path / "loops"
    _touch(root / "a" / "1.png")
    (root / "a" / "back").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root / "self")  # a link to itself
    (root / "a" / "b").symlink_to(root / "c", target_is_directory=True)
    (root / "c").symlink_to(root / "a" / "b", target_is_directory=True)  # a cycle of two links
    result: list[Path] = []
    walk = threading.Thread(target=lambda: result.extend(image_files(root, True)), daemon=True)
    walk.start()
    walk.join(timeout=30)
    assert not walk.is_alive() and result == [root / "a" / "1.png"]


def test_a_folder_that_cannot_be_listed_is_skipped_below_and_refused_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "photos"
    for name in ("a.png", "locked/b.png", "open/c.png"):
        _touch(root / name)
    _unreadable(monkeypatch, root / "locked")
    assert _names(image_paths(root, recursive=True), root) == ["a.png", "open/c.png"]
    with pytest.raises(PermissionError):
        image_paths(root / "locked")
    assert folder_images(str(root / "locked")) == []  # the GUI: "No images in ..."
    assert expand_paths([str(root / "locked")]) == [str(root / "locked")]  # the reader says why


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever their permissions")
def test_a_folder_without_read_permission_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for name in ("a.png", "locked/b.png"):
        _touch(root / name)
    (root / "locked").chmod(0)
    try:
        assert _names(image_paths(root, recursive=True), root) == ["a.png"]
    finally:
        (root / "locked").chmod(0o755)


def test_the_order_is_by_name_in_each_folder_as_sorted_paths(tmp_path: Path) -> None:
    root = tmp_path / "ordered"
    names = ["cat/x.png", "cat 2/x.png", "cat-1.png", "Z.png", "cat/Y.png", "b/a/z.png", "b/a.png"]
    for name in names:
        _touch(root / name)
    expected = sorted(root / name for name in names)
    assert image_files(root, recursive=True) == expected
    assert _names(expected, root) == ["Z.png", "b/a/z.png", "b/a.png", "cat/Y.png", "cat/x.png",
                                      "cat 2/x.png", "cat-1.png"]  # fmt: skip


def test_class_folders_are_the_visible_folders_and_links_to_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("dog", "cat", ".git", "Bird"):
        (root / name).mkdir(parents=True)
    _touch(root / "readme.png")
    (root / "fish").symlink_to(_touch(tmp_path / "elsewhere" / "f.png").parent)
    (root / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    expected = [root / n for n in ("Bird", "cat", "dog", "fish")]
    assert subfolders(root) == expected
    assert sorted(_subfolders(str(root))) == ["Bird", "cat", "dog", "fish"]  # the GUI's count


def _dataset(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Two class folders full of tricky names; the images each holds, with their labels."""
    root = tmp_path / "data"
    _tricky_folder(root / "cat", root / ".store")  # the links lead inside: a dataset allows it
    for name in ("x.png", "x 2/y.png", "x-1.png", "x/z.png", ".DS_Store", "Thumbs.db"):
        _touch(root / "dog" / name)
    _touch(root / ".trash" / "old.png")  # a hidden folder is no class
    images = {str(root / "cat" / n): 0 for n in TRICKY_ALL}
    images |= {str(root / "dog" / n): 1 for n in ("x.png", "x 2/y.png", "x-1.png", "x/z.png")}
    return root, images


def test_every_caller_finds_the_same_images(tmp_path: Path) -> None:
    root, images = _dataset(tmp_path)
    splits = open_dataset(root)
    assert splits.class_names == ("cat", "dog")
    assert dict(zip(splits.train.paths, splits.train.labels.tolist(), strict=True)) == images
    checked = labelled_images([root], ("cat", "dog"))
    assert {str(p): label for p, label in checked} == images
    given = [str(p) for p in expand_images([str(root)])]
    averaged = folder_images(str(root))
    assert given == averaged == [str(p) for p, _ in checked] == sorted(images, key=Path)
    assert sorted(_subfolders(str(root))) == list(splits.class_names)


def test_a_dataset_keeps_its_files_sorted_as_text_per_class(tmp_path: Path) -> None:
    """The order decides which images a seed picks: text order of the full path, as always
    (``x 2/y.png`` before ``x-1.png`` before ``x.png`` before ``x/z.png``)."""
    root, images = _dataset(tmp_path)
    paths = open_dataset(root).train.paths
    dogs = [p for p in paths if images[p] == 1]
    assert paths == sorted(p for p in paths if images[p] == 0) + sorted(dogs)
    assert _names(dogs, root / "dog") == ["x 2/y.png", "x-1.png", "x.png", "x/z.png"]


def test_linked_class_folders_count_where_classes_are_listed(tmp_path: Path) -> None:
    """A class folder may be a link inside the dataset (one level: it cannot loop); a walk
    from the top does not follow it, as it follows no link to a folder."""
    root = tmp_path / "data"
    _touch(root / "cat" / "a.png")
    _touch(root / ".store" / "dog" / "b.png")
    (root / "dog").symlink_to(root / ".store" / "dog", target_is_directory=True)
    expected = {str(root / "cat" / "a.png"): 0, str(root / "dog" / "b.png"): 1}
    splits = open_dataset(root)
    assert dict(zip(splits.train.paths, splits.train.labels.tolist(), strict=True)) == expected
    assert {str(p): n for p, n in labelled_images([root], ("cat", "dog"))} == expected
    assert folder_images(str(root)) == [str(root / "cat" / "a.png")]


@pytest.mark.parametrize(
    ("where", "target", "message"),
    [
        ("dog", "/", r"dog is a link to /, outside .*data: a dataset may only link inside"),
        ("dog", "{outside}", r"dog is a link to .*elsewhere, outside .*data: .* copy the images"),
        ("train", "{outside}", r"train is a link to .*elsewhere, outside"),
        ("dog", "dog", r"dog is a link loop \(it leads back to itself\): remove or mend"),
        ("cat/b.png", "{outside}/x.png", r"b.png is a link to .*elsewhere/x.png, outside"),
        ("cat/b.png", "b.png", r"b.png is a link loop"),
    ],
)
def test_a_dataset_refuses_links_that_leave_it_or_loop(
    tmp_path: Path, where: str, target: str, message: str
) -> None:
    """A class folder linked to ``/`` would walk the whole disk, an image linked outside would
    put another file's pixels and path in the checkpoint: both refused in one line naming the
    link and where it leads; a loop too. Links inside the dataset stay allowed (above)."""
    root = tmp_path / "data"
    outside = tmp_path / "elsewhere"
    _touch(outside / "x.png")
    _touch(outside / "y.png")
    _touch(root / "cat" / "a.png")
    if where == "train":
        _touch(root / "test" / "cat" / "a.png")
        _touch(root / "test" / "dog" / "a.png")
        (outside / "cat").mkdir()
        (outside / "dog").mkdir()
    elif where != "dog":
        _touch(root / "dog" / "a.png")
    (root / where).symlink_to(target.format(outside=outside))
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_a_dangling_image_link_is_skipped_as_every_caller_skips_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("cat/a.png", "dog/b.png"):
        _touch(root / name)
    (root / "cat" / "gone.png").symlink_to(root / "nowhere.png")
    (root / "gone").symlink_to(root / "nowhere", target_is_directory=True)
    splits = open_dataset(root)
    assert splits.class_names == ("cat", "dog")
    assert splits.train.paths == [str(root / "cat" / "a.png"), str(root / "dog" / "b.png")]


def test_class_folders_holding_no_images_are_named_as_before(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _touch(root / "cat" / "a.png")
    for name in (".hidden.png", f"{TEMP_PREFIX}9-ab.tmp.png", "notes.txt", ".cache/b.png"):
        _touch(root / "dog" / name)
    (root / "dog" / "loop").symlink_to(root, target_is_directory=True)
    with pytest.raises(DatasetError, match=r"no images in the class folder\(s\) dog \(image"):
        open_dataset(root)
    assert labelled_images([root], ("cat", "dog")) == [(root / "cat" / "a.png", 0)]


def test_checks_name_a_class_folder_that_cannot_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    for name in ("cat/a.png", "dog/b.png"):
        _touch(root / name)
    _unreadable(monkeypatch, root / "dog")
    with pytest.raises(ValueError, match=r"cannot list the folder .*dog: Permission denied"):
        labelled_images([root], ("cat", "dog"))
    with pytest.raises(DatasetError, match=r"cannot list the class folder .*dog: Permission de"):
        open_dataset(root)
    _unreadable(monkeypatch, root)
    with pytest.raises(ValueError, match=r"cannot list the folder .*data: Permission denied"):
        labelled_images([root], ("cat", "dog"))


def test_checks_refuse_labelled_folders_whose_links_leave_them(tmp_path: Path) -> None:
    """sanity and faithfulness read labelled folders as training reads a dataset: a class folder
    or an image linked outside (or a loop) is refused in a line; links inside are followed."""
    root, outside = tmp_path / "labelled", tmp_path / "elsewhere"
    _touch(root / "cat" / "a.png")
    _touch(root / ".store" / "b.png")
    _touch(outside / "c.png")
    (root / "dog").symlink_to(root / ".store", target_is_directory=True)  # inside: allowed
    (root / "cat" / "same.png").symlink_to(root / ".store" / "b.png")
    found = {str(p): n for p, n in labelled_images([root], ("cat", "dog"))}
    assert found == {
        str(root / "cat" / "a.png"): 0,
        str(root / "cat" / "same.png"): 0,
        str(root / "dog" / "b.png"): 1,
    }
    (root / "cat" / "far.png").symlink_to(outside / "c.png")
    with pytest.raises(ValueError, match=r"far\.png is a link to .*elsewhere.*, outside"):
        labelled_images([root], ("cat", "dog"))
    (root / "cat" / "far.png").unlink()
    (root / "dog").unlink()
    (root / "dog").symlink_to("/", target_is_directory=True)  # would walk the whole disk
    with pytest.raises(ValueError, match=r"dog is a link to /, outside .*labelled"):
        labelled_images([root], ("cat", "dog"))
    (root / "dog").unlink()
    (root / "dog").symlink_to(root / "dog", target_is_directory=True)
    with pytest.raises(ValueError, match=r"dog is a link loop"):
        labelled_images([root], ("cat", "dog"))
