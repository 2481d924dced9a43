"""Hostile Hugging Face model folders (issue 22), each one file away from a good tiny folder made
with transformers' own ``save_pretrained``: every config field with wrong types and huge values,
every image processor field, shard-index tricks, lying safetensors headers, pickles, links out of
the folder and named pipes. Through ``vitexplorer analyze`` each is one line naming the file, exit
2, nothing written and no code run; the window refuses a few and keeps its model."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from tests.fuzz.cli_run import run_cli  # noqa: E402
from tests.fuzz.conftest import record  # noqa: E402
from tests.gui.conftest import running_window  # noqa: E402
from vitexplorer.gui.workers import ModelRequest  # noqa: E402

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

DOOR = "hf folders: vitexplorer analyze"
WINDOW_DOOR = "hf folders: the window"
MARKER = "code-ran.marker"  # what a pickle's code would create
DROP = object()  # a field to remove
Mutate = Callable[[Path], None]
Case = tuple[str, str, Mutate]  # (case, the file the refusal must name, how to make it)


# --- good folders ------------------------------------------------------------------------------


def _vit(folder: Path, shard: str | None = None) -> None:
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    processor = {"size": {"height": 32, "width": 32}, "resample": 2, "image_mean": [0.5] * 3,
                 "image_std": [0.5] * 3, "rescale_factor": 1 / 255, "do_resize": True,
                 "do_normalize": True, "do_rescale": True}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))


def _clip(folder: Path) -> None:
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, vocab_size=100, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-good")
    folders = {"vit": root / "vit", "sharded": root / "sharded", "clip": root / "clip"}
    _vit(folders["vit"])
    _vit(folders["sharded"], "20KB")
    _clip(folders["clip"])
    folders["bin"] = root / "bin"
    shutil.copytree(folders["vit"], folders["bin"])
    from safetensors.torch import load_file

    state = load_file(folders["bin"] / "model.safetensors")
    (folders["bin"] / "model.safetensors").unlink()
    torch.save(state, folders["bin"] / "pytorch_model.bin")
    image = root / "image.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    folders["image"] = image
    return folders


# --- ways to spoil one file --------------------------------------------------------------------


def _field(file: str, key: str, value: object, drop: tuple[str, ...] = ()) -> Mutate:
    def make(folder: Path) -> None:
        data = json.loads((folder / file).read_text())
        target = data["vision_config"] if key.startswith("vision_config.") else data
        target[key.removeprefix("vision_config.")] = value
        for name in drop:
            data.pop(name, None)
        (folder / file).write_text(json.dumps(data))

    return make


def _fields(file: str, **values: object) -> Mutate:
    def make(folder: Path) -> None:
        data = json.loads((folder / file).read_text())
        data.update(values)
        (folder / file).write_text(json.dumps(data))

    return make


def _bytes(file: str, data: bytes) -> Mutate:
    def make(folder: Path) -> None:
        (folder / file).unlink(missing_ok=True)
        (folder / file).write_bytes(data)

    return make


def _replace(file: str, how: Callable[[Path], None]) -> Mutate:
    def make(folder: Path) -> None:
        path = folder / file
        path.unlink(missing_ok=True)
        how(path)

    return make


def _link_out(path: Path) -> None:
    outside = path.parent.parent / f"outside-{path.name}"
    outside.write_bytes(b'{"model_type": "vit"}')
    path.symlink_to(outside)


def _link_loop(path: Path) -> None:
    path.symlink_to(path.name)


def _broken(path: Path) -> None:
    path.symlink_to("missing-target")


def _file_cases(file: str) -> list[Case]:
    """What any JSON file of the folder can be instead."""
    return [
        (f"{file} not JSON", file, _bytes(file, b"{not json")),
        (f"{file} a list", file, _bytes(file, b"[1, 2]")),
        (f"{file} empty", file, _bytes(file, b"")),
        (f"{file} NaN", file, _bytes(file, b'{"a": NaN}')),
        (f"{file} nested 100,000 deep", file, _bytes(file, b"[" * 100_000 + b"]" * 100_000)),
        (f"{file} not UTF-8", file, _bytes(file, b'{"a": "\xff\xfe"}')),
        (f"{file} of 17 MB", file, _bytes(file, b"{" + b" " * 17_000_000 + b"}")),
        (f"{file} a link out of the folder", file, _replace(file, _link_out)),
        (f"{file} a loop of links", file, _replace(file, _link_loop)),
        (f"{file} a folder", file, _replace(file, lambda p: p.mkdir())),
    ]


WRONG_WHOLE = ["32", [32, 32, 32], {"v": 32}, None, True, -1, 10**9, 2.5]
WHOLE_FIELDS = [
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "num_channels", "encoder_stride", "pooler_output_size", "image_size", "patch_size",
    "num_labels",
]  # fmt: skip
FRACTION_FIELDS = [
    "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range"
]  # fmt: skip
TEXTS = {
    "hidden_act": ["evil", 3, ["gelu"], None],
    "pooler_act": ["evil", 3],
    "dtype": ["evil", 3, ["float32"], {"a": 1}],
    "model_type": [["vit"], 3, None, "evil", {"a": 1}],
    "architectures": ["ViTForImageClassification", [3], {"a": 1}, ["Nope"]],
    "problem_type": ["evil", 3],
    "qkv_bias": ["yes", 2, None],
    "id2label": [["cat", "dog"], "cat", {"x": "cat"}, {"0": 3}, {"0": "c" * 5000}],
    "label2id": [["cat"], {"cat": "0"}, "x"],
    "pruned_heads": [{"0": [0]}],
}


def config_cases() -> list[Case]:
    c = "config.json"
    cases = [
        (f"config {key} {value!r:.30}", c, _field(c, key, value))
        for key in WHOLE_FIELDS
        for value in WRONG_WHOLE
    ]
    cases += [
        (f"config {key} {value!r:.30}", c, _field(c, key, value))
        for key in FRACTION_FIELDS
        for value in ["0.1", -1.0, [0.1], None]
    ]
    cases += [
        (f"config {key} {value!r:.30}", c, _field(c, key, value))
        for key, values in TEXTS.items()
        for value in values
    ]
    labels = ("id2label", "label2id")
    cases += [
        ("config num_labels 10^7", c, _field(c, "num_labels", 10**7, labels)),
        ("config num_labels 10^9", c, _field(c, "num_labels", 10**9, labels)),
        ("config 100,001 labels", c, _field(c, "id2label", {str(i): "x" for i in range(100_001)})),
        ("config image_size not square", c, _field(c, "image_size", [32, 16])),
        ("config width 33 for 2 heads", c, _field(c, "hidden_size", 33)),
        ("config MLP 3,000 times the width", c, _field(c, "intermediate_size", 96_000)),
        ("config 4096 px in 1 px patches", c, _fields(c, image_size=4096, patch_size=1)),
        ("config patches larger than the image", c, _fields(c, image_size=32, patch_size=64)),
        ("config no labels for a classifier", c, _field(c, "num_labels", 0, labels)),
        ("config 3 channels asked as 1", c, _field(c, "num_channels", 1)),
    ]
    return cases + _file_cases(c)


def clip_cases() -> list[Case]:
    c = "config.json"
    return [
        ("clip vision_config a list", c, _field(c, "vision_config", [1])),
        ("clip text_config a text", c, _field(c, "text_config", "x")),
        ("clip vision hidden_size '32'", c, _field(c, "vision_config.hidden_size", "32")),
        ("clip vision image_size 10^9", c, _field(c, "vision_config.image_size", 10**9)),
        ("clip vision num_labels 10^9", c, _field(c, "vision_config.num_labels", 10**9)),
        ("clip vision model_type a list", c, _field(c, "vision_config.model_type", ["x"])),
        ("clip projection_dim 10^9", c, _field(c, "projection_dim", 10**9)),
        ("clip vision hidden_act evil", c, _field(c, "vision_config.hidden_act", "evil")),
    ]


PROCESSOR = {
    "size": [
        100_000, 10**9, "224", -1, 0, {"shortest_edge": 100_000}, {"shortest_edge": 10**9},
        {"shortest_edge": "224"}, {"height": 32, "width": "x"}, {"evil": 3}, {}, [32, 32],
    ],
    "crop_size": [100_000, {"height": 10**9, "width": 10**9}, "x", {"height": -1, "width": -1}],
    "do_resize": ["yes", 2, [True]],
    "do_normalize": ["yes", 2, [True]],
    "do_rescale": ["yes", 2, [True]],
    "do_center_crop": ["yes", 2, [True]],
    "image_mean": ["x", [1, 2], [None, None, None], [[0.5]] * 3],
    "image_std": ["x", [1, 2], [None, None, None], [[0.5]] * 3, [0, 0, 0]],
    "rescale_factor": [0, -1, "x", 10**9],
    "resample": [99, -1, [2], 2.5],
    "crop_pct": [1e-9, 0, "x"],
    "image_processor_type": [3, ["ViTImageProcessor"]],
}  # fmt: skip


def processor_cases() -> list[Case]:
    p = "preprocessor_config.json"
    cases = [
        (f"processor {key} {value!r:.30}", p, _field(p, key, value))
        for key, values in PROCESSOR.items()
        for value in values
    ]
    return cases + _file_cases(p)


# --- weights -----------------------------------------------------------------------------------


def _restamp(file: str, change: Callable[[dict], None], extra: int = 0, length: int = 0) -> Mutate:
    """The safetensors file with its header changed (``extra`` bytes of data added, or a
    ``length`` written in place of the header's)."""

    def make(folder: Path) -> None:
        path = folder / file
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        change(header)
        raw = json.dumps(header).encode()
        out = (length or len(raw)).to_bytes(8, "little") + raw + data[8 + size :]
        path.write_bytes(out + b"\0" * extra)

    return make


def _first(header: dict) -> dict:
    return header[sorted(k for k in header if k != "__metadata__")[0]]


def _last_end(header: dict) -> int:
    return max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")


def _beyond(header: dict) -> None:
    _first(header)["data_offsets"][1] = _last_end(header) + 1000


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda header: _first(header).__setitem__(key, value)


def _overlap(header: dict) -> None:
    names = sorted(k for k in header if k != "__metadata__")
    a, b = header[names[0]], header[names[1]]
    if a["shape"] == b["shape"] and a["dtype"] == b["dtype"]:
        b["data_offsets"] = list(a["data_offsets"])
    else:
        b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + 4]
        b["shape"], b["dtype"] = [1], "F32"


def _huge_sparse(folder: Path) -> None:
    """A tensor of 3 GB in a sparse file: the header is honest, the size is not sane."""
    path = folder / "model.safetensors"
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    end = _last_end(header)
    count = 750_000_000
    header["extra.weight"] = {
        "dtype": "F32",
        "shape": [count],
        "data_offsets": [end, end + 4 * count],
    }
    raw = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw + data[8 + size :])
        handle.truncate(8 + len(raw) + end + 4 * count)


_NOT_JSON = (5).to_bytes(8, "little") + b"{nope" + b"\0" * 64


def safetensors_cases() -> list[Case]:
    m = "model.safetensors"
    meta_format = lambda h: h.__setitem__("__metadata__", {"format": "evil"})  # noqa: E731
    meta_number = lambda h: h.__setitem__("__metadata__", {"format": 3})  # noqa: E731
    return [
        ("safetensors truncated", m, lambda f: _cut(f / m)),
        ("safetensors empty", m, _bytes(m, b"")),
        ("safetensors header length 2^60", m, _restamp(m, lambda h: None, length=2**60)),
        ("safetensors header length past the end", m, _restamp(m, lambda h: None, length=10**6)),
        ("safetensors header not JSON", m, _bytes(m, _NOT_JSON)),
        ("safetensors header a list", m, _bytes(m, (2).to_bytes(8, "little") + b"[]")),
        ("safetensors entry malformed", m, _restamp(m, lambda h: h.__setitem__("x", 3))),
        ("safetensors offsets beyond the file", m, _restamp(m, _beyond)),
        ("safetensors dtype evil", m, _restamp(m, _set("dtype", "EVIL"))),
        ("safetensors dtype F16 for F32 data", m, _restamp(m, _set("dtype", "F16"))),
        ("safetensors dtype I64 for F32 data", m, _restamp(m, _set("dtype", "I64"))),
        ("safetensors shape that lies", m, _restamp(m, _set("shape", [10**6]))),
        ("safetensors shape a text", m, _restamp(m, _set("shape", "x"))),
        ("safetensors overlapping tensors", m, _restamp(m, _overlap)),
        ("safetensors format evil", m, _restamp(m, meta_format)),
        ("safetensors metadata not texts", m, _restamp(m, meta_number)),
        ("safetensors a folder", m, _replace(m, lambda p: p.mkdir())),
        ("safetensors a link out of the folder", m, _replace(m, _link_out)),
        ("safetensors a broken link", m, _replace(m, _broken)),
        ("safetensors a loop of links", m, _replace(m, _link_loop)),
        ("safetensors a 3 GB sparse tensor", m, _huge_sparse),
    ]  # fmt: skip


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _index(change: Callable[[dict], None]) -> Mutate:
    return _field_fn("model.safetensors.index.json", change)


def _field_fn(file: str, change: Callable[[dict], None]) -> Mutate:
    def make(folder: Path) -> None:
        data = json.loads((folder / file).read_text())
        change(data)
        (folder / file).write_text(json.dumps(data))

    return make


def _map_first(value: object) -> Callable[[dict], None]:
    def change(index: dict) -> None:
        key = sorted(index["weight_map"])[0]
        index["weight_map"][key] = value

    return change


def _shard(how: Callable[[Path], None]) -> Mutate:
    def make(folder: Path) -> None:
        how(folder / "model-00001-of-00005.safetensors")

    return make


def _linked_folder(folder: Path) -> None:
    """The index names sub/SHARD, and sub is a link to a folder outside the model's."""
    first = "model-00001-of-00005.safetensors"
    outside = folder.parent / "outside-folder"
    outside.mkdir()
    (folder / first).rename(outside / first)
    (folder / "sub").symlink_to(outside)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"] = {
        k: ("sub/" + v if v == first else v) for k, v in index["weight_map"].items()
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def shard_cases() -> list[Case]:
    i = "model.safetensors.index.json"
    first = "model-00001-of-00005.safetensors"
    return [
        ("index names ../", i, _index(_map_first("../outside.safetensors"))),
        ("index names /etc/passwd", i, _index(_map_first("/etc/passwd"))),
        ("index names a missing shard", i, _index(_map_first("model-9-of-9.safetensors"))),
        ("index names a .bin", i, _index(_map_first("pytorch_model.bin"))),
        ("index names ''", i, _index(_map_first(""))),
        ("index names a NUL", i, _index(_map_first("a\x00b.safetensors"))),
        ("index maps to a number", i, _index(_map_first(3))),
        ("index weight_map a list", i, _index(lambda d: d.__setitem__("weight_map", [1]))),
        ("index weight_map empty", i, _index(lambda d: d.__setitem__("weight_map", {}))),
        ("shard a link out of the folder", first, _shard(lambda p: (p.unlink(), _link_out(p)))),
        ("shard a folder", first, _shard(lambda p: (p.unlink(), p.mkdir()))),
        ("shard in a linked folder outside", "sub/" + first, _linked_folder),
        ("shard truncated", first, _shard(_cut)),
        ("shard dtype evil", first, _restamp(first, _set("dtype", "EVIL"))),
        ("shard offsets beyond the file", first, _restamp(first, _beyond)),
    ] + _file_cases(i)[:7]


class _System:
    """Pickled as ``os.system(command)``: what a malicious weights file runs when trusted."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _pickle(make_bytes: Callable[[Path], bytes], file: str = "pytorch_model.bin") -> Mutate:
    def make(folder: Path) -> None:
        (folder / file).write_bytes(make_bytes(folder))

    return make


def _zip_with_code(folder: Path) -> bytes:
    path = folder / "tmp.pt"
    torch.save({"weight": torch.zeros(3), "hook": _System(f"touch {folder / MARKER}")}, path)
    data = path.read_bytes()
    path.unlink()
    return data


def pickle_cases() -> list[Case]:
    b = "pytorch_model.bin"
    code = lambda f: pickle.dumps({"w": _System(f"touch {f / MARKER}")}, protocol=2)  # noqa: E731
    return [
        ("pickle that runs code", b, _pickle(code)),
        ("zip pickle that runs code", b, _pickle(_zip_with_code)),
        ("pickle of other objects", b, _pickle(lambda f: pickle.dumps({"w": Path("x")}))),
        ("pickle truncated", b, _pickle(lambda f: _zip_with_code(f)[:300])),
        ("pickle random bytes", b, _pickle(lambda f: bytes(range(256)) * 4)),
        ("pickle a list of tensors", b, _pickle(lambda f: _saved([torch.zeros(2)]))),
    ]


def _saved(obj: object) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def _try(
    cases: list[Case], source: Path, image: Path, root: Path, capsys, weights: str = "default"
) -> list[str]:
    problems = []
    for n, (case, names, make) in enumerate(cases):
        folder = _copy(source, root / f"case{n}" / "model")
        make(folder)
        out = root / f"case{n}" / "out"
        args = ["analyze", str(image), "--model", f"hf:{folder}", "--out", str(out)]
        status, _, lines, crashed = run_cli(
            [*args, "--weights", weights, "--device", "cpu"], capsys, drop_notes=True
        )
        code = (folder / MARKER).exists()
        record(DOOR, f"{case} (--weights {weights})", crash=crashed, code=code)
        text = lines[0] if lines else ""
        if crashed or code or status != 2 or len(lines) != 1 or len(text) > 500:
            problems.append(f"{case}: status {status}, {lines}")
        elif names not in text or "weights_only" in text or "Traceback" in text:
            problems.append(f"{case}: does not name {names}: {text}")
        if out.exists() and any(out.iterdir()):
            problems.append(f"{case}: wrote {sorted(p.name for p in out.iterdir())}")
    return problems


def test_good_folders_still_analyse(good: dict[str, Path], tmp_path: Path, capsys) -> None:
    for kind in ("vit", "sharded", "clip", "bin"):
        out = tmp_path / kind
        args = ["analyze", str(good["image"]), "--model", f"hf:{good[kind]}", "--out", str(out)]
        status, _, lines, crashed = run_cli([*args, "--device", "cpu"], capsys, drop_notes=True)
        assert (status, crashed) == (0, False), (kind, lines)
        assert list(out.iterdir())


def test_hostile_configs(good: dict[str, Path], tmp_path: Path, capsys) -> None:
    problems = _try(config_cases(), good["vit"], good["image"], tmp_path, capsys)
    problems += _try(clip_cases(), good["clip"], good["image"], tmp_path / "clip", capsys)
    assert not problems, "\n".join(problems)


def test_hostile_configs_with_random_weights(
    good: dict[str, Path],
    tmp_path: Path,
    capsys,
) -> None:
    """The same configs for a model of random weights: no weights file to stop at first."""
    problems = _try(config_cases(), good["vit"], good["image"], tmp_path, capsys, "none")
    problems += _try(clip_cases(), good["clip"], good["image"], tmp_path / "clip", capsys, "none")
    assert not problems, "\n".join(problems)


def test_hostile_processor_configs(good: dict[str, Path], tmp_path: Path, capsys) -> None:
    problems = _try(processor_cases(), good["vit"], good["image"], tmp_path, capsys)
    assert not problems, "\n".join(problems)


def test_hostile_weights(good: dict[str, Path], tmp_path: Path, capsys) -> None:
    problems = _try(safetensors_cases(), good["vit"], good["image"], tmp_path / "st", capsys)
    problems += _try(shard_cases(), good["sharded"], good["image"], tmp_path / "sh", capsys)
    problems += _try(pickle_cases(), good["bin"], good["image"], tmp_path / "pk", capsys)
    assert not problems, "\n".join(problems)


# --- named pipes: in a subprocess, which a hang cannot take the suite with ----------------------

_DRIVER = """
import contextlib, io, json, sys
from vitexplorer.cli import main
image, *folders = sys.argv[1:]
for folder in folders:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["analyze", image, "--model", "hf:" + folder, "--out", folder + "-out",
                       "--device", "cpu"])
    print(json.dumps([status, err.getvalue()]), flush=True)
"""
FIFO_CASES = [
    ("config.json a named pipe", "config.json"),
    ("preprocessor_config.json a named pipe", "preprocessor_config.json"),
    ("model.safetensors a named pipe", "model.safetensors"),
    ("pytorch_model.bin a named pipe", "pytorch_model.bin"),
    ("index a named pipe", "model.safetensors.index.json"),
    ("shard a named pipe", "model-00001-of-00005.safetensors"),
]


@pytest.mark.timeout(300)
def test_named_pipes_are_refused_without_opening_them(
    good: dict[str, Path], tmp_path: Path
) -> None:
    folders = []
    for n, (_, name) in enumerate(FIFO_CASES):
        source = good["sharded"] if name.startswith("model-") or "index" in name else good["vit"]
        folder = _copy(source, tmp_path / f"pipe{n}")
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)
        folders.append(folder)
    command = [sys.executable, "-c", _DRIVER, str(good["image"]), *map(str, folders)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240).stdout
    except subprocess.TimeoutExpired as exc:  # a hang: the cases not answered hung
        done = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
    answers = [json.loads(line) for line in done.splitlines() if line.startswith("[")]
    problems = []
    for n, ((case, name), folder) in enumerate(zip(FIFO_CASES, folders, strict=True)):
        still = stat.S_ISFIFO(os.lstat(folder / name).st_mode)
        if n >= len(answers):
            record(DOOR, case, hang=True, lost=not still)
            problems.append(f"{case}: no answer (a hang)")
            continue
        status, err = answers[n]
        lines = [line for line in err.splitlines() if line.strip()]
        record(DOOR, case, crash="Traceback" in err, lost=not still)
        if status != 2 or len(lines) != 1 or name not in lines[0] or "named pipe" not in lines[0]:
            problems.append(f"{case}: status {status}, {lines}")
        if not still:
            problems.append(f"{case}: the named pipe is gone")
    assert not problems, "\n".join(problems)


# --- the window --------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


WINDOW_CASES: list[Case] = [
    ("config num_labels 10^9", "config.json", _field("config.json", "num_labels", 10**9)),
    ("config model_type a list", "config.json", _field("config.json", "model_type", ["vit"])),
    ("processor shortest_edge 100000", "preprocessor_config.json",
     _field("preprocessor_config.json", "size", {"shortest_edge": 100_000})),
    ("safetensors dtype evil", "model.safetensors",
     _restamp("model.safetensors", _set("dtype", "EVIL"))),
    ("safetensors a link out of the folder", "model.safetensors",
     _replace("model.safetensors", _link_out)),
]  # fmt: skip


def test_the_window_refuses_hostile_folders_and_keeps_its_model(
    qtbot,
    window,
    good: dict[str, Path],
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    before = window.model.spec
    cases = WINDOW_CASES + [(c, n, m) for c, n, m in pickle_cases()[:2]]
    problems = []
    for n, (case, name, make) in enumerate(cases):
        source = good["bin"] if name == "pytorch_model.bin" else good["vit"]
        folder = _copy(source, tmp_path / f"case{n}" / "model")
        make(folder)
        with qtbot.waitSignal(window.model_failed, timeout=60000) as failed:
            window.request_model(ModelRequest(f"hf:{folder}", "default", "cpu"))
        message = failed.args[0]
        code = (folder / MARKER).exists()
        record(WINDOW_DOOR, case, crash="Traceback" in message, code=code)
        if "\n" in message or name not in message or "weights_only" in message or code:
            problems.append(f"{case}: {message!r}")
        if window.message_box is not None:
            window.message_box.close()
    assert not problems, "\n".join(problems)
    assert window.model.spec == before  # the model in use stayed the one that worked
    assert window.model.request.name == str(tiny_checkpoint)
