"""The ``vitexplorer`` command line, run in-process: ``analyze`` outputs, errors and exit codes."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import io
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import get_model_weights

from tests.conftest import TV_DOWNLOAD
from vitexplorer import __version__
from vitexplorer.cli import main
from vitexplorer.cli.common import ProgressBar, colour_table, unique_stems
from vitexplorer.core.explain.tokens import attention_map
from vitexplorer.core.io.files import write_atomic
from vitexplorer.core.models.download import WeightsDownload
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import display_crop, preprocess
from vitexplorer.core.models.spec import MODEL_NAMES
from vitexplorer.core.render.figure import enlarge
from vitexplorer.core.render.overlay import render_overlay


@pytest.fixture
def vit_b_32_file(vit_b_32_state) -> Path:
    """Random ViT-B/32 weights named as torchvision names its downloads (tests/conftest.py)."""
    return vit_b_32_state[0]


def _image(path: Path, size: tuple[int, int], seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _analyze(*args: str | Path) -> int:
    return main(["analyze", *map(str, args), "--device", "cpu"])


def test_model_names_match_the_core():
    assert MODEL_NAMES == MODEL_NAMES


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "from vitexplorer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    codes = main(['--help']), main(['--version']), main(['analyze', '-h']), "
        "main(['finetune', '-h']), main(['compare', '-h']), main(['timelapse', '-h'])\n"
        "print(codes, 'torch' in sys.modules, 'PySide6' in sys.modules, out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("(0, 0, 0, 0, 0, 0) False False")
    assert "vitexplorer finetune --model NAME --data cifar10|DIR" in result.stdout
    assert "analyze" in result.stdout and "--weights" in result.stdout


def test_python_dash_m_runs_the_same_main():
    result = subprocess.run(
        [sys.executable, "-m", "vitexplorer", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"vitexplorer {__version__}"


def test_analyze_writes_attention_predictions_and_overlay(checkpoint, tmp_path, capsys):
    image_path = _image(tmp_path / "in" / "photo.png", (50, 40), seed=1)
    out = tmp_path / "out" / "nested"
    assert _analyze(image_path, "--model", checkpoint, "--out", out) == 0

    assert sorted(p.name for p in out.iterdir()) == [
        "photo.attention.npy",
        "photo.cls.png",
        "photo.json",
    ]
    attention = np.load(out / "photo.attention.npy")
    assert attention.dtype == np.float32 and attention.shape == (2, 2, 17, 17)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)

    facts = json.loads((out / "photo.json").read_text())
    assert facts["grid"] == [4, 4] and facts["num_prefix_tokens"] == 1
    assert facts["model"] == "small_vit" and facts["weights"] == "file tiny.safetensors"
    assert facts["num_layers"] == 2 and facts["num_heads"] == 2 and facts["num_tokens"] == 17
    assert facts["image"] == str(image_path)
    assert facts["forward_seconds"] > 0
    predictions = facts["predictions"]
    assert len(predictions) == 5
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    # the same numbers from the model's own forward pass, computed without the analysis code
    model = load_model(str(checkpoint), device="cpu")
    with Image.open(image_path) as opened:
        rgb = opened.convert("RGB")
    with torch.no_grad():
        logits = model.module(preprocess(rgb, model.spec).unsqueeze(0))[0]
    expected = torch.softmax(logits.double(), -1)
    top = torch.topk(expected, 5)
    assert [p["index"] for p in predictions] == top.indices.tolist()
    assert [p["name"] for p in predictions] == [f"class {i}" for i in top.indices.tolist()]
    np.testing.assert_allclose(probabilities, top.values.numpy(), rtol=1e-5, atol=1e-6)

    with Image.open(out / "photo.cls.png") as png:
        assert png.mode == "RGB"
        figure = np.asarray(png)
    display = display_crop(rgb, model.spec)
    assert display.shape == (40, 40, 3)  # the 40x40 centre crop of a 50x40 image
    picture = facts["picture"]
    assert picture["file"] == "photo.cls.png" and picture["size"] == [png.width, png.height]
    assert picture["title"] == "attention · layer 2 of 2, mean of heads · the CLS token"
    area = picture["map_area"]
    assert picture["scale"] == 12 and area["width"] == area["height"] == 480  # 40 px x 12
    overlay = figure[
        area["top"] : area["top"] + area["height"], area["left"] : area["left"] + area["width"]
    ]
    # the map area is the written attention's last-layer CLS map (mean over heads) over the
    # crop, enlarged
    cls_map = attention_map(attention, 1, None, 0, (4, 4), 1)
    np.testing.assert_allclose(cls_map, attention[1, :, 0, 1:].mean(0).reshape(4, 4), atol=1e-7)
    expected = render_overlay(enlarge(display, 12), cls_map, colour_table())
    assert np.array_equal(overlay, expected)
    assert facts["attention_axes"][0] == "axis 0: layers 1..2"

    captured = capsys.readouterr()
    top1 = predictions[0]
    assert _lines(captured.out) == [f"photo: {top1['name']} {top1['probability']:.1%}"]
    assert captured.err == ""


def test_same_stems_do_not_overwrite_each_other(checkpoint, tmp_path, capsys):
    first = _image(tmp_path / "a" / "x.png", (32, 32), seed=2)
    second = _image(tmp_path / "b" / "x.png", (32, 32), seed=3)
    out = tmp_path / "out"
    assert _analyze(first, second, "--model", checkpoint, "--out", out) == 0
    assert json.loads((out / "x.json").read_text())["image"] == str(first)
    assert json.loads((out / "x-2.json").read_text())["image"] == str(second)
    for stem in ("x", "x-2"):
        assert (out / f"{stem}.attention.npy").is_file() and (out / f"{stem}.cls.png").is_file()
    assert not np.array_equal(np.load(out / "x.attention.npy"), np.load(out / "x-2.attention.npy"))
    assert [line.split(":")[0] for line in _lines(capsys.readouterr().out)] == ["x", "x-2"]


def test_unique_stems_keep_real_names_and_ignore_case():
    paths = ["a/x.png", "b/x.png", "x-2.png", "c/X.jpg", "y.tar.gz"]
    assert unique_stems(paths) == ["x", "x-3", "x-2", "X-4", "y.tar"]


def test_a_bad_input_fails_alone(checkpoint, tmp_path, capsys):
    good = _image(tmp_path / "good.png", (40, 40), seed=4)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    out = tmp_path / "out"
    assert _analyze(bad, good, "--model", checkpoint, "--out", out) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "good.attention.npy",
        "good.cls.png",
        "good.json",
    ]
    captured = capsys.readouterr()
    errors = _lines(captured.err)
    assert len(errors) == 1
    assert errors[0].startswith("vitexplorer: broken.png: ")
    assert "Traceback" not in captured.err
    assert [line.split(":")[0] for line in _lines(captured.out)] == ["good"]


def test_unknown_model_exits_2_with_the_choices(tmp_path, capsys):
    image = _image(tmp_path / "i.png", (32, 32), seed=5)
    assert _analyze(image, "--model", "vit_z_99", "--out", tmp_path / "out") == 2
    errors = _lines(capsys.readouterr().err)
    assert len(errors) == 1
    assert errors[0].startswith("vitexplorer: unknown model 'vit_z_99'")
    assert "vit_b_16" in errors[0] and "small_vit" in errors[0]


def test_missing_checkpoint_and_bad_weights_exit_2(tmp_path, capsys):
    image = _image(tmp_path / "i.png", (32, 32), seed=6)
    missing = tmp_path / "nope.safetensors"
    assert _analyze(image, "--model", missing, "--out", tmp_path / "o") == 2
    assert _lines(capsys.readouterr().err) == [f"vitexplorer: weights file not found: {missing}"]
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    assert _analyze(image, "--model", "vit_b_32", "--weights", junk, "--out", tmp_path / "o") == 2
    errors = _lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith("vitexplorer: junk.pth is not a PyTorch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_exits_2(checkpoint, tmp_path, capsys):
    image = _image(tmp_path / "i.png", (32, 32), seed=7)
    args = ["analyze", str(image), "--model", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*args, "--device", "cuda"]) == 2
    captured = capsys.readouterr()
    assert _lines(captured.err) == [
        "vitexplorer: CUDA was asked for but no CUDA GPU is available; use --device cpu"
    ]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["analyze", "x.png", "--out", str(tmp_path)]) == 2  # no --model
    assert "--model" in capsys.readouterr().err
    assert main(["analyze", "x.png", "--model", "small_vit", "--out", "o", "--device", "gpu"]) == 2
    assert "'gpu' is not auto, cpu, cuda" in capsys.readouterr().err
    assert main(["analyse", "x.png"]) == 2  # a mistyped command does not open the app
    assert "'analyse' is neither a command" in capsys.readouterr().err
    assert main(["finetun"]) == 2
    commands = "analyze, finetune, stats, sanity, faithfulness, train, compare, timelapse, methods"
    assert f"neither a command ({commands})" in capsys.readouterr().err
    finetune = ["finetune", "--model", "small_vit", "--data", "d", "--out", "m.safetensors"]
    assert main([*finetune, "--per-class", "0"]) == 2
    assert "'0' is not a whole number of at least 1" in capsys.readouterr().err
    assert main([*finetune, "--optimizer", "adam"]) == 2
    assert "invalid choice: 'adam'" in capsys.readouterr().err
    assert main(finetune[:-2]) == 2  # no --out
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_default_weights_are_downloaded_with_progress(vit_b_32_file, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "hub" / "checkpoints" / vit_b_32_file.name
    size_mb = vit_b_32_file.stat().st_size / 1e6
    download = WeightsDownload("vit_b_32", vit_b_32_file.as_uri(), cache, size_mb, "test weights")
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    image = _image(tmp_path / "cat.jpg", (300, 200), seed=8)
    out = tmp_path / "out"
    assert _analyze(image, "--model", "vit_b_32", "--out", out) == 0

    captured = capsys.readouterr()
    err = captured.err.split("\n")  # the bar redraws itself with \r, within one line
    assert len(err) == 3 and err[2] == ""
    assert err[0] == f"Downloading the test weights, {size_mb:.0f} MB, to {cache}"
    assert err[1].startswith("\r[") and err[1].endswith(f"/ {size_mb:.1f} MB 100%")
    assert err[1].count("\r") >= 2
    assert cache.read_bytes() == vit_b_32_file.read_bytes()
    assert not [p for p in cache.parent.iterdir() if p != cache]  # no partial file left
    facts = json.loads((out / "cat.json").read_text())
    assert facts["weights"] == "test weights" and facts["grid"] == [7, 7]
    imagenet = get_model_weights("vit_b_32").DEFAULT.meta["categories"]
    assert [p["name"] for p in facts["predictions"]] == [
        imagenet[p["index"]] for p in facts["predictions"]
    ]
    assert np.load(out / "cat.attention.npy").shape == (12, 12, 50, 50)
    assert _lines(captured.out)[0].startswith("cat: ")

    # the second run finds the weights in the cache: no download line, no progress
    assert _analyze(image, "--model", "vit_b_32", "--out", out) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "url", ["file:///nonexistent/vit_b_32-d86f8d99.pth", "http://127.0.0.1:9/x.pth"]
)
def test_unreachable_weights_exit_2_and_name_the_local_file_option(
    url, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "hub" / "checkpoints" / "vit_b_32-d86f8d99.pth"
    download = WeightsDownload("vit_b_32", url, cache, 336.6, "ViT-B/32 test weights")
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    image = _image(tmp_path / "i.png", (32, 32), seed=9)
    assert _analyze(image, "--model", "vit_b_32", "--out", tmp_path / "out") == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = _lines(captured.err)  # no byte came: no download line, only the refusal
    assert len(errors) == 1, errors
    assert errors[0].startswith("vitexplorer: could not download the ViT-B/32 test weights")
    assert "--weights PATH" in errors[0] and "--weights none" in errors[0]
    assert list(cache.parent.iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupt_exits_130_without_traceback(checkpoint, tmp_path, monkeypatch, capsys):
    def interrupted(model, image, *options):
        raise KeyboardInterrupt

    monkeypatch.setattr("vitexplorer.core.explain.analysis.analyze_images", interrupted)
    image = _image(tmp_path / "i.png", (32, 32), seed=10)
    assert _analyze(image, "--model", checkpoint, "--out", tmp_path / "out") == 130
    assert _lines(capsys.readouterr().err) == ["vitexplorer: interrupted"]
    assert list((tmp_path / "out").iterdir()) == []


def test_write_atomic_leaves_no_half_file(tmp_path):
    target = tmp_path / "x.npy"

    def half_then_interrupt(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, half_then_interrupt)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, half_then_interrupt)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"old"
    write_atomic(target, lambda handle: handle.write(b"new"), 0o640)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640


def test_progress_bar_draws_one_line_in_place():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    for done in (0, 1_000_000, 1_000_001, 4_000_000):
        bar(done, 4_000_000)
    bar.close()
    lines = stream.getvalue().split("\r")[1:]
    assert lines[0] == "[----------]     0.0 / 4.0 MB   0%"
    assert lines[-1] == "[##########]     4.0 / 4.0 MB 100%\n"
    assert len(lines) <= 3  # redraws only when the percentage changes, at most every 0.1 s


def test_without_a_command_the_app_opens_with_the_images(monkeypatch):
    opened: list[list[str]] = []
    fake = types.ModuleType("vitexplorer.gui.app")
    fake.run_gui = lambda images: opened.append(images) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vitexplorer.gui.app", fake)
    assert main([]) == 7
    assert main(["a.png", "dir/b.jpg"]) == 7
    assert opened == [[], ["a.png", "dir/b.jpg"]]


def test_an_output_folder_that_is_a_file_exits_2(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    assert _analyze(tmp_path / "i.png", "--model", "small_vit", "--out", blocker) == 2
    errors = _lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith("vitexplorer: cannot create the output folder")


def test_out_of_memory_on_one_image_is_one_line_and_the_rest_go_on(
    checkpoint, tmp_path: Path, capsys, monkeypatch
) -> None:
    import vitexplorer.core.explain.analysis as analysis

    real = analysis.analyze_images
    calls = []

    def sometimes_oom(model, images, *options):
        # the batch of both does not fit, nor the first alone; the second alone does
        calls.append(len(images))
        if len(images) > 1 or len(calls) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 3.80 GiB\nmore details")
        return real(model, images, *options)

    monkeypatch.setattr(analysis, "analyze_images", sometimes_oom)
    images = []
    for name in ("a.png", "b.png"):
        images.append(tmp_path / name)
        Image.new("RGB", (40, 40), (90, 20, 200)).save(images[-1])
    out = tmp_path / "out"
    code = main(["analyze", *map(str, images), "--model", str(checkpoint), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and calls == [2, 1, 1]
    assert err == [
        "vitexplorer: a.png: the GPU ran out of memory: use the CPU or a smaller model "
        "(CUDA out of memory. Tried to allocate 3.80 GiB)"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["b.attention.npy", "b.cls.png", "b.json"]


def test_images_share_batches_and_every_line_keeps_the_order_of_the_images(
    checkpoint, tmp_path: Path, monkeypatch
) -> None:
    import contextlib

    import vitexplorer.core.explain.analysis as analysis

    real = analysis.analyze_images
    batches = []

    def counted(model, images, *options):
        batches.append(len(images))
        return real(model, images, *options)

    monkeypatch.setattr(analysis, "analyze_images", counted)
    names = ["a.png", "b.txt", "c.png", "d.png", "e.png", "f.png"]
    for i, name in enumerate(names):
        if name.endswith(".png"):
            _image(tmp_path / name, (40, 40), seed=i)
        else:
            (tmp_path / name).write_text("not an image")
    both = io.StringIO()  # stdout and stderr as a person sees them, one after the other
    arguments = [tmp_path / n for n in names] + ["--model", checkpoint, "--batch-size", "3"]
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        code = _analyze(*arguments, "--out", tmp_path / "out")
    assert code == 1
    lines = _lines(both.getvalue())
    assert [line.split(":")[0].removeprefix("vitexplorer") for line in lines] == [
        "a", "", "c", "d", "e", "f"
    ]  # fmt: skip
    assert "b.txt" in lines[1]
    # a alone (the unreadable b ends its batch), then c, d, e together, then f
    assert batches == [1, 3, 1]
    for stem in "acdef":
        facts = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert facts["forward_batch"] == (3 if stem in "cde" else 1)


def test_batch_size_follows_the_memory_of_the_maps():
    from vitexplorer.core.explain.analysis import batch_size_for

    assert batch_size_for(_spec("vit_b_32")) == 8  # 1.4 MB of maps an image
    assert batch_size_for(_spec("vit_b_16")) == 8  # 22 MB
    assert batch_size_for(_spec("vit_l_16")) == 4  # 60 MB
    assert batch_size_for(_spec("vit_h_14", 518)) == 1  # 3.8 GB: one at a time
    # an image kept at its own aspect ratio: its own grid counts
    assert batch_size_for(_spec("vit_b_16"), (7, 28)) == 8
    assert batch_size_for(_spec("vit_l_16"), (40, 40)) == 1


def _spec(name: str, size: int = 224):
    """The spec torchvision's ``name`` has, without building it."""
    from dataclasses import replace

    from tests.conftest import tiny_spec

    layers, heads, patch = {
        "vit_b_32": (12, 12, 32), "vit_b_16": (12, 12, 16), "vit_l_16": (24, 16, 16),
        "vit_h_14": (32, 16, 14),
    }[name]  # fmt: skip
    return replace(
        tiny_spec(), name=name, image_size=size, resize_size=size, patch_size=patch,
        num_layers=layers, num_heads=heads,
    )  # fmt: skip


def test_a_file_that_cannot_be_written_is_one_line_in_its_place_and_the_rest_are_written(
    checkpoint, tmp_path: Path, monkeypatch
) -> None:
    """The files of a batch are written by several threads; a failure comes back to its own
    image's place among the lines."""
    import contextlib

    import vitexplorer.cli.analyze as analyze_cli

    real = analyze_cli.write_outputs

    def full_for_b(out_dir, stem, *rest):
        if stem == "b":
            raise OSError(28, "No space left on device")
        return real(out_dir, stem, *rest)

    monkeypatch.setattr(analyze_cli, "write_outputs", full_for_b)
    for i, name in enumerate("abc"):
        _image(tmp_path / f"{name}.png", (40, 40), seed=i)
    both = io.StringIO()
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        code = _analyze(*(tmp_path / f"{n}.png" for n in "abc"), "--model", checkpoint,
                        "--out", tmp_path / "out")  # fmt: skip
    assert code == 1
    lines = _lines(both.getvalue())
    assert len(lines) == 3 and lines[0].startswith("a: ") and lines[2].startswith("c: ")
    assert lines[1] == (
        f"vitexplorer: b.png: cannot write to {tmp_path / 'out'}: No space left on device"
    )
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"{s}.{x}" for s in "ac" for x in ("attention.npy", "cls.png", "json")]


def test_out_of_memory_advice_fits_the_device_that_ran_out() -> None:
    """The advice names the device that ran out: the CPU is never told to use the CPU."""
    from vitexplorer.core.explain.analysis import failure_message

    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: not enough memory: "
        "you tried to allocate 9663676416 bytes."
    )
    assert failure_message(cpu).startswith("the CPU ran out of memory: close other programs")
    assert "use the CPU" not in failure_message(cpu)
    assert failure_message(MemoryError()).startswith("the CPU ran out of memory")
    mps = RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)")
    assert failure_message(mps).startswith("Apple's MPS ran out of memory: use the CPU")
    cuda = torch.OutOfMemoryError("CUDA error: an illegal memory access")
    assert failure_message(cuda).startswith("the GPU ran out of memory: use the CPU")
    assert failure_message(ValueError("no such\n  layer")) == "no such layer"
