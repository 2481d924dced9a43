"""No output of a command overwrites an input, another output of the run, or the dataset it
reads: refused in one line, before any work, with exit status 2 and every file as it was."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import write_colour_splits
from vitexplorer.cli import main
from vitexplorer.cli.common import Failed, check_outputs

SMALL = ["--width", "16", "--depth", "2", "--heads", "2", "--patch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_splits(tmp_path_factory.mktemp("colours"))


def _run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(list(args))
    return status, err.getvalue()


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every node under ``folder``: its type bits and, for files, its bytes."""
    nodes = {}
    for path in sorted(folder.rglob("*")):
        mode = os.lstat(path).st_mode
        data = path.read_bytes() if stat.S_ISREG(mode) else b""
        nodes[str(path.relative_to(folder))] = (stat.S_IFMT(mode), data)
    return nodes


def _refused(status: int, stderr: str, *names: str) -> None:
    assert status == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    for name in names:
        assert name in stderr, stderr


def test_train_refuses_predictions_over_its_own_checkpoint(tmp_path: Path, colours: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"the trained model from yesterday")
    before = _snapshot(tmp_path)
    status, err = _run(
        "train", "--data", str(colours), "--out", str(model), "--predictions", str(model), *SMALL
    )
    _refused(status, err, "--out", "--predictions", str(model))
    assert _snapshot(tmp_path) == before


def test_train_refuses_predictions_over_the_test_csv_even_through_a_link(
    tmp_path: Path, colours: Path
) -> None:
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("pixel0,pixel1\n0,1\n", encoding="utf-8")
    link = tmp_path / "predictions.csv"
    link.symlink_to(test_csv)
    before = _snapshot(tmp_path)
    for predictions in (test_csv, link):
        status, err = _run(
            "train", "--data", str(colours), "--out", str(tmp_path / "m.safetensors"),
            "--test-csv", str(test_csv), "--predictions", str(predictions), *SMALL,
        )  # fmt: skip
        _refused(status, err, "--test-csv", "--predictions", str(predictions))
        assert _snapshot(tmp_path) == before


def test_train_refuses_predictions_over_its_curves(tmp_path: Path, colours: Path) -> None:
    status, err = _run(
        "train", "--data", str(colours), "--out", str(tmp_path / "m.safetensors"),
        "--predictions", str(tmp_path / "m.curves.png"), *SMALL,
    )  # fmt: skip
    _refused(status, err, "curves", "--predictions")
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_an_output_inside_the_dataset(tmp_path: Path, colours: Path) -> None:
    before = _snapshot(colours)
    inside = colours / "train" / "red"
    for option in ("--out", "--predictions"):
        target = inside / ("m.safetensors" if option == "--out" else "p.csv")
        other = tmp_path / ("p.csv" if option == "--out" else "m.safetensors")
        names = {"--out": target, "--predictions": other}
        if option == "--predictions":
            names = {"--out": other, "--predictions": target}
        args = [f"{flag}={path}" for flag, path in names.items()]
        status, err = _run("train", "--data", str(colours), *args, *SMALL)
        _refused(status, err, option, "inside the dataset", str(target))
        assert _snapshot(colours) == before
    assert list(tmp_path.iterdir()) == []


def test_finetune_refuses_to_overwrite_its_weights_or_write_into_the_data(
    tmp_path: Path, colours: Path
) -> None:
    weights = tmp_path / "start.safetensors"
    weights.write_bytes(b"weights the user fine-tunes from")
    before = _snapshot(tmp_path)
    base = ["finetune", "--data", str(colours), "--model", "vit_b_32", "--device", "cpu"]
    status, err = _run(*base, "--weights", str(weights), "--out", str(weights))
    _refused(status, err, "--weights", "--out")
    assert _snapshot(tmp_path) == before
    status, err = _run(*base, "--weights", "none", "--out", str(colours / "m.safetensors"))
    _refused(status, err, "inside the dataset")
    assert not (colours / "m.safetensors").exists()


def test_hard_links_count_as_one_file_and_missing_inputs_as_none(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n", encoding="utf-8")
    os.link(data, tmp_path / "alias.csv")
    with pytest.raises(Failed, match="alias.csv is the same file as --in") as caught:
        check_outputs([("--out", tmp_path / "alias.csv")], [("--in", data)])
    assert caught.value.status == 2
    # an input that names no file ('default' weights, 'cifar10') is no file to lose
    check_outputs([("--out", tmp_path / "none")], [("--weights", tmp_path / "none")])
    with pytest.raises(Failed, match="--b .* is the same file as --a"):
        check_outputs([("--a", tmp_path / "o.csv"), ("--b", tmp_path / "." / "o.csv")])


def test_a_character_device_may_take_several_outputs(tmp_path: Path, monkeypatch) -> None:
    from vitexplorer.cli import common

    sink = tmp_path / "sink"
    monkeypatch.setattr(common, "_is_stream_device", lambda path: Path(path) == sink)
    check_outputs([("--out", sink), ("--predictions", sink)])
    with pytest.raises(Failed, match="--predictions"):
        check_outputs([("--out", tmp_path / "x"), ("--predictions", tmp_path / "x")])


def _photo(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize("command", ["analyze", "stats", "faithfulness", "sanity"])
def test_an_output_folder_inside_or_equal_to_an_input_folder_is_refused(
    tmp_path: Path, command: str
) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "cat.png")
    before = _snapshot(tmp_path)
    for out in (photos, photos / "results"):
        status, err = _run(command, str(photos), "--out", str(out), "--model", "vit_b_32")
        _refused(status, err, "--out", "inside the input folder", str(photos))
        assert _snapshot(tmp_path) == before  # no folder made, nothing written


def test_stats_refuses_to_write_its_plot_over_an_input_image(tmp_path: Path) -> None:
    plot = _photo(tmp_path / "out" / "distance_vs_depth.png")
    before = _snapshot(tmp_path)
    status, err = _run("stats", str(plot), "--out", str(plot.parent), "--model", "vit_b_32")
    _refused(status, err, "is the same file as the input", str(plot))
    assert _snapshot(tmp_path) == before


def test_compare_refuses_its_table_over_a_weights_file(tmp_path: Path) -> None:
    table = tmp_path / "head_changes.csv"
    table.write_bytes(b"not weights, but the user's file all the same")
    image = _photo(tmp_path / "in" / "cat.png")
    before = _snapshot(tmp_path)
    status, err = _run(
        "compare", str(image), "--out", str(tmp_path), "--model", "vit_b_32",
        "--model", "vit_b_32", "--weights", "none", "--weights", str(table),
    )  # fmt: skip
    _refused(status, err, "--weights", str(table))
    assert _snapshot(tmp_path) == before


def test_analyze_refuses_outputs_named_after_one_input_over_another(tmp_path: Path) -> None:
    from vitexplorer.cli.common import check_stem_outputs

    cat = _photo(tmp_path / "cat.png")
    overlay = _photo(tmp_path / "cat.attention.png")  # what 'cat.png' analysed there writes
    before = _snapshot(tmp_path)
    status, err = _run(
        "analyze", str(cat), str(overlay), "--out", str(tmp_path), "--model", "vit_b_32"
    )
    _refused(status, err, str(overlay), "cat.*")
    assert _snapshot(tmp_path) == before
    check_stem_outputs(tmp_path, [cat])  # an input alone in --out names no other's outputs
    check_stem_outputs(tmp_path / "elsewhere", [cat, overlay])  # outputs go to another folder
