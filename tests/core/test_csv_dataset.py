"""Pixel CSV datasets (MNIST-style ``label,pixel0,...``): where each pixel lands, labels and class
names, test CSV ids, every bad file refused in one line naming the file and the row, and a
fine-tune run from a CSV through the command line."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vitexplorer.cli import main
from vitexplorer.core.training import pixel_csv
from vitexplorer.core.training.datasets import DatasetError, open_dataset, plan_subsets
from vitexplorer.core.training.pixel_csv import (
    PixelCSVError,
    read_labelled_csv,
    read_pixel_csv,
    read_unlabelled_csv,
)


def _header(side: int, label: bool = True, ident: str | None = None) -> str:
    columns = [f"pixel{i}" for i in range(side * side)]
    if ident:
        columns.insert(0, ident)
    if label:
        columns.insert(0, "label")
    return ",".join(columns)


def write_csv(
    path: Path,
    pixels: np.ndarray,
    labels: np.ndarray | None = None,
    ids: list[int] | None = None,
    ident: str | None = None,
) -> Path:
    """``pixels`` (N, side*side) as a CSV, with a label column and/or an id column first."""
    side = int(round(pixels.shape[1] ** 0.5))
    lines = [_header(side, labels is not None, ident)]
    for i, row in enumerate(pixels.tolist()):
        fields = [str(v) for v in row]
        if ident:
            fields.insert(0, str(ids[i] if ids else i + 1))
        if labels is not None:
            fields.insert(0, str(int(labels[i])))
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def _random(n: int, side: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side * side)), np.arange(n) % classes


def test_every_pixel_lands_where_the_csv_puts_it(tmp_path: Path):
    pixels, labels = _random(12, 28)
    path = write_csv(tmp_path / "train.csv", pixels, labels)
    images, indices, names = read_labelled_csv(path)
    assert images.shape == (12, 28, 28, 3) and images.dtype == np.uint8
    for i in range(12):
        for r in (0, 5, 27):
            for c in (0, 13, 27):
                assert (images[i, r, c] == pixels[i, r * 28 + c]).all()  # all three channels
    assert (images[..., 0] == pixels.reshape(12, 28, 28)).all()
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    assert names == tuple(str(d) for d in range(10))
    assert indices.dtype == np.int64 and indices.tolist() == labels.tolist()


def test_open_dataset_takes_a_labelled_csv(tmp_path: Path):
    pixels, labels = _random(20, 4, classes=4)
    path = write_csv(tmp_path / "digits.csv", pixels, labels)
    splits = open_dataset(path)
    assert splits.name == "digits" and splits.root == str(path)
    assert splits.class_names == ("0", "1", "2", "3") and splits.num_classes == 4
    assert splits.test is None  # test images are set aside, as for a folder without test/
    assert splits.train.labels.tolist() == labels.tolist()
    assert splits.train.arrays is not None and splits.train.arrays.shape == (20, 4, 4, 3)
    assert (splits.train.image(7)[..., 2] == pixels[7].reshape(4, 4)).all()
    train, test = plan_subsets(splits, per_class=3, test_per_class=2, seed=0)
    assert [len(c) for c in test.candidates] == [2, 2, 2, 2]


def test_class_names_are_the_distinct_labels_sorted(tmp_path: Path):
    pixels, _ = _random(6, 2)
    labels = np.array([7, 3, 12, 3, 7, 12])
    _, indices, names = read_labelled_csv(write_csv(tmp_path / "gaps.csv", pixels, labels))
    assert names == ("3", "7", "12")  # numeric order, not text order
    assert indices.tolist() == [1, 0, 2, 0, 1, 2]


def test_tolerated_spelling(tmp_path: Path):
    """A byte order mark, CRLF line ends, blank lines, spaces, quoted header names, any case."""
    text = '\ufeff"Label", Pixel0,pixel1,pixel2,pixel3\r\n1, 0,255,3,4\r\n\r\n0,9,8,7,6\r\n\n'
    path = tmp_path / "windows.csv"
    path.write_bytes(text.encode("utf-8"))
    images, labels, names = read_labelled_csv(path)
    assert labels.tolist() == [1, 0] and names == ("0", "1")
    assert images[0, :, :, 0].tolist() == [[0, 255], [3, 4]]
    assert images[1, :, :, 1].tolist() == [[9, 8], [7, 6]]


def test_unlabelled_ids_are_row_numbers_without_an_id_column(tmp_path: Path):
    pixels, _ = _random(5, 4)
    images, ids = read_unlabelled_csv(write_csv(tmp_path / "test.csv", pixels))
    assert ids.tolist() == [1, 2, 3, 4, 5]  # Kaggle's ImageId: 1-based
    assert ids.dtype == np.int64
    assert (images[..., 1] == pixels.reshape(5, 4, 4)).all() and images.shape == (5, 4, 4, 3)


@pytest.mark.parametrize("ident", ["ImageId", "id", "ID"])
def test_unlabelled_ids_come_from_the_id_column(tmp_path: Path, ident: str):
    pixels, _ = _random(3, 4)
    path = write_csv(tmp_path / "test.csv", pixels, ids=[42, 7, 1000], ident=ident)
    images, ids = read_unlabelled_csv(path)
    assert ids.tolist() == [42, 7, 1000]
    assert (images[..., 0] == pixels.reshape(3, 4, 4)).all()  # the id is not a pixel
    assert read_pixel_csv(path, labelled=False).id_column == ident


def test_a_big_file_reads_across_blocks(tmp_path: Path, monkeypatch):
    """Rows split over read blocks land whole and in order; row numbers stay right."""
    monkeypatch.setattr(pixel_csv, "BLOCK_BYTES", 100)
    pixels, labels = _random(40, 4)
    path = write_csv(tmp_path / "blocks.csv", pixels, labels)
    images, indices, _ = read_labelled_csv(path)
    assert (images[..., 0].reshape(40, 16) == pixels).all() and indices.tolist() == labels.tolist()
    lines = path.read_text().splitlines()
    lines[35] = lines[35].replace(",", ",x", 1)  # row 36 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PixelCSVError, match=r"row 36 \(counting the header as row 1\)"):
        read_labelled_csv(path)


# --- bad files: one line each, naming the file and the row ----------------------------------

NOTE = "(counting the header as row 1)"
HEADER4 = "label,pixel0,pixel1,pixel2,pixel3"


def _text(text: str, name: str = "bad.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(text.encode("utf-8"))
        return path

    return make


def _bytes(data: bytes, name: str = "bad.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def _folder(folder: Path) -> Path:
    path = folder / "folder.csv"
    path.mkdir()
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.csv"
    os.mkfifo(path)
    return path


def _huge(folder: Path) -> Path:
    path = folder / "huge.csv"
    with open(path, "wb") as handle:
        handle.write(HEADER4.encode() + b"\n")
        handle.truncate(pixel_csv.MAX_CSV_BYTES + 1)  # sparse: no disk used
    return path


# (case, labelled, make, the exact message)
HOSTILE_CSVS: list[tuple[str, bool, Callable[[Path], Path], str]] = [
    ("empty", True, _text(""), "bad.csv: the file is empty"),
    ("blank lines only", True, _text("\n\n  \n"), "bad.csv: the file is empty"),
    (
        "header only",
        True,
        _text(HEADER4 + "\n"),
        "bad.csv: a header and no images (no rows after row 1)",
    ),
    (
        "no header",
        True,
        _text("1,0,0,0,0\n2,0,0,0,0\n"),
        "bad.csv: row 1 holds numbers; it must be the header (label,pixel0,pixel1,...)",
    ),
    (
        "ragged short",
        True,
        _text(HEADER4 + "\n1,0,0,0,0\n1,0,0,0\n"),
        f"bad.csv: row 3 {NOTE} has 4 fields, the header 5",
    ),
    (
        "ragged long",
        True,
        _text(HEADER4 + "\n1,0,0,0,0\n\n1,0,0,0,0,9\n"),
        f"bad.csv: row 4 {NOTE} has 6 fields, the header 5",
    ),
    (
        "non-numeric pixel",
        True,
        _text(HEADER4 + "\n1,0,0,0,0\n0,1,abc,3,4\n"),
        f"bad.csv: row 3 {NOTE}, column 'pixel1': 'abc' is not a whole number",
    ),
    (
        "empty pixel",
        True,
        _text(HEADER4 + "\n1,0,,0,0\n"),
        f"bad.csv: row 2 {NOTE}, column 'pixel1': empty",
    ),
    (
        "fractional pixel",
        True,
        _text(HEADER4 + "\n1,0,0.5,0,0\n"),
        f"bad.csv: row 2 {NOTE}, column 'pixel1': '0.5' is not a whole number",
    ),
    (
        "pixel over 255",
        True,
        _text(HEADER4 + "\n1,0,0,0,0\n0,0,0,0,256\n"),
        f"bad.csv: row 3 {NOTE}, column 'pixel3': the pixel value 256 is outside 0..255",
    ),
    (
        "negative pixel",
        True,
        _text(HEADER4 + "\n1,-1,0,0,0\n"),
        f"bad.csv: row 2 {NOTE}, column 'pixel0': the pixel value -1 is outside 0..255",
    ),
    (
        "pixels not a square",
        True,
        _text("label,pixel0,pixel1,pixel2\n1,0,0,0\n"),
        "bad.csv: row 1 (the header) names 3 pixel columns, not a square number, so not a "
        "square image (1x1 images have 1, 2x2 have 4)",
    ),
    (
        "no pixel columns",
        True,
        _text("label\n1\n"),
        "bad.csv: row 1 (the header) names no pixel columns",
    ),
    (
        "negative label",
        True,
        _text(HEADER4 + "\n1,0,0,0,0\n-1,0,0,0,0\n"),
        f"bad.csv: row 3 {NOTE}: the label -1 is outside 0..9999",
    ),
    (
        "huge label",
        True,
        _text(HEADER4 + "\n10000,0,0,0,0\n"),
        f"bad.csv: row 2 {NOTE}: the label 10000 is outside 0..9999",
    ),
    (
        "fractional label",
        True,
        _text(HEADER4 + "\n1.5,0,0,0,0\n"),
        f"bad.csv: row 2 {NOTE}, column 'label': '1.5' is not a whole number",
    ),
    (
        "text label",
        True,
        _text(HEADER4 + "\nseven,0,0,0,0\n"),
        f"bad.csv: row 2 {NOTE}, column 'label': 'seven' is not a whole number",
    ),
    (
        "one class",
        True,
        _text(HEADER4 + "\n3,0,0,0,0\n3,1,1,1,1\n"),
        "bad.csv: every image has the label 3; a dataset needs at least two classes",
    ),
    (
        "no label column",
        True,
        _text("pixel0,pixel1,pixel2,pixel3\n0,0,0,0\n"),
        "bad.csv: no label column in row 1 (the header); a labelled CSV's header is "
        "label,pixel0,pixel1,... (a test CSV without labels is for predictions)",
    ),
    (
        "two label columns",
        True,
        _text("label,pixel0,label,pixel1,pixel2,pixel3\n"),
        "bad.csv: row 1 (the header) has more than one label column",
    ),
    (
        "label column in a test CSV",
        False,
        _text(HEADER4 + "\n1,0,0,0,0\n"),
        "bad.csv: has a label column (column 1 of row 1, the header); a test CSV to predict has "
        "pixel columns only, optionally with an id or ImageId column",
    ),
    (
        "binary",
        True,
        _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"),
        "bad.csv: not a text file (it holds binary data), so not a CSV file",
    ),
    (
        "not utf-8",
        True,
        _bytes(b"label,pixel\xff0\n1,0\n"),
        "bad.csv: row 1 is not text (not UTF-8), so this is not a CSV file",
    ),
    (
        "binary in a row",
        True,
        _bytes(HEADER4.encode() + b"\n1,0,0,0,0\n0,0,\x01\x02,0,0\n"),
        f"bad.csv: row 3 {NOTE}, column 'pixel1': '\\x01\\x02' is not a whole number",
    ),
    ("folder", True, _folder, "folder.csv: is a folder, not a CSV file"),
    ("fifo", True, _fifo, "pipe.csv: is a named pipe (FIFO), not a CSV file"),
    (
        "huge",
        True,
        _huge,
        "huge.csv: 500 MB is more than the 500 MB limit for a CSV file",
    ),
    ("missing", True, lambda folder: folder / "missing.csv", "missing.csv: file not found"),
]


@pytest.mark.parametrize(
    ("case", "labelled", "make", "message"), HOSTILE_CSVS, ids=[c[0] for c in HOSTILE_CSVS]
)
def test_bad_csvs_are_refused_in_one_line(
    case: str, labelled: bool, make: Callable[[Path], Path], message: str, tmp_path: Path
):
    path = make(tmp_path)
    reader = read_labelled_csv if labelled else read_unlabelled_csv
    with pytest.raises(PixelCSVError) as raised:
        reader(path)
    assert str(raised.value) == message
    if labelled:  # the same line through open_dataset, as the CLI and the app see it
        with pytest.raises(DatasetError) as raised:
            open_dataset(path)
        assert str(raised.value) == message and "\n" not in message


def test_a_test_csv_is_refused_as_training_data_and_vice_versa(tmp_path: Path):
    pixels, labels = _random(4, 2)
    unlabelled = write_csv(tmp_path / "test.csv", pixels, ids=[1, 2, 3, 4], ident="ImageId")
    with pytest.raises(DatasetError, match="no label column in row 1"):
        open_dataset(unlabelled)
    labelled = write_csv(tmp_path / "train.csv", pixels, labels)
    with pytest.raises(PixelCSVError, match="has a label column"):
        read_unlabelled_csv(labelled)


def test_a_non_csv_file_says_what_open_dataset_takes(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_text("label,pixel0\n")
    with pytest.raises(DatasetError, match=r"or a pixel CSV file \(\.csv"):
        open_dataset(path)


# --- through the command line ---------------------------------------------------------------


def _two_classes_csv(path: Path, per_class: int = 8, side: int = 8) -> Path:
    """Dark images labelled 0, bright ones labelled 1: easy to learn."""
    rng = np.random.default_rng(1)
    dark = rng.integers(0, 60, (per_class, side * side))
    bright = rng.integers(190, 256, (per_class, side * side))
    pixels = np.concatenate([dark, bright])
    labels = np.array([0] * per_class + [1] * per_class)
    order = rng.permutation(len(labels))
    return write_csv(path, pixels[order], labels[order])


def test_finetune_from_a_csv_writes_a_checkpoint(base: Path, tmp_path: Path, capsys):
    data = _two_classes_csv(tmp_path / "train.csv")
    out = tmp_path / "digits.safetensors"
    args = ["--model", str(base), "--data", str(data), "--out", str(out), "--device", "cpu"]
    options = ["--per-class", "5", "--test-per-class", "3", "--epochs", "1", "--batch-size", "4"]
    assert main(["finetune", *args, *options]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines[-1]["class_names"] == ["0", "1"] and lines[-1]["checkpoint"] == str(out)
    assert np.array(lines[-1]["confusion"]).sum() == 6  # three test images per class
    assert out.is_file() and out.stat().st_size > 0


def test_finetune_refuses_a_bad_csv_in_one_line(tmp_path: Path, capsys):
    data = tmp_path / "train.csv"
    data.write_text(HEADER4 + "\n1,0,0,0,0\n0,0,0,0\n")
    out = tmp_path / "model.safetensors"
    args = ["--model", "small_vit", "--weights", "none", "--data", str(data), "--out", str(out)]
    saved = sys.stdout
    sys.stdout = io.StringIO()
    try:
        assert main(["finetune", *args]) == 2
    finally:
        sys.stdout = saved
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"vitexplorer: train.csv: row 3 {NOTE} has 4 fields, the header 5"]
    assert not out.exists()


def test_an_id_column_between_pixels_is_not_a_pixel(tmp_path: Path):
    path = tmp_path / "test.csv"
    path.write_text("pixel0,pixel1,ImageId,pixel2,pixel3\n1,2,50,3,4\n5,6,51,7,8\n")
    images, ids = read_unlabelled_csv(path)
    assert ids.tolist() == [50, 51]
    assert images[:, :, :, 0].tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
