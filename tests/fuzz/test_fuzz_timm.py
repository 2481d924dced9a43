"""timm names and weights through ``vitexplorer analyze``: huge architectures with random or
pretrained weights (against a monkeypatched free memory), impossible names and names with odd
characters, weights files that are not the named model's (another architecture, truncated,
pickles with code, empty, text, integers), and pretrained weights asked for without a network.

Each input is one clear line on stderr and exit 2 before any work (or the good result, where the
input is in fact sound); no traceback, no model built off the meta device for a refusal, no
download tried for a model too large, no code run, and the input file left as it was."""

from __future__ import annotations

import builtins
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.fuzz.cli_run import run_cli
from tests.fuzz.conftest import record
from vitexplorer.core.training import estimate

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

timm = pytest.importorskip("timm")

DOOR = "timm names and weights: vitexplorer analyze"
MARKER = "pwned"  # the file a pickle's code would create in its case's folder
ANNOUNCEMENT = "Downloading the timm's "  # the CLI's line before a download is tried
FREE = 50 * 10**6  # the free memory the huge-model cases are held against (monkeypatched)

# ViTs timm builds whose weights need far more than FREE: from 22 M parameters to 1.8 billion
HUGE = (
    "vit_gigantic_patch14_clip_224",
    "vit_gigantic_patch14_clip_quickgelu_224",
    "vit_giant_patch14_dinov2",
    "vit_giant_patch14_reg4_dinov2",
    "vit_giant_patch14_clip_224",
    "vit_giant_patch16_gap_224",
    "vit_huge_patch14_224",
    "vit_huge_patch14_clip_224",
    "vit_huge_patch16_gap_448",
    "deit3_huge_patch14_224",
    "vit_so400m_patch14_siglip_224",
    "vit_large_patch14_dinov2",
    "vit_large_patch14_clip_224",
    "vit_large_patch16_224",
    "vit_large_patch32_384",
    "vit_base_patch8_224",
    "vit_base_patch16_224",
    "vit_base_patch16_siglip_224",
    "deit_base_distilled_patch16_224",
    "vit_small_patch16_224",
)
HUGE_PRETRAINED = (
    "vit_giant_patch14_dinov2.lvd142m",
    "vit_gigantic_patch14_clip_224.laion2b",
    "vit_huge_patch14_clip_224.laion2b",
    "vit_large_patch14_dinov2.lvd142m",
    "vit_large_patch16_224.augreg_in21k_ft_in1k",
    "vit_base_patch16_224",
    "vit_base_patch16_siglip_224.webli",
    "vit_small_patch16_224.augreg_in21k",
)
# characters that must not reach the terminal raw, nor be taken for part of a name
ODD = (
    "\x00", "\n", "\r", "\t", " ", "\x1b[31m", "\x1b]52;c;aGVsbG8=\x07", "\u202e", "\u200b",
    "\ufeff", "\udcff", "é", "\u0456", "🙂", "/", "\\", "..", "*", "?", "%s%n", "{0}", "'", '"',
    ";rm -rf ~", "$(id)", "`id`",
)  # fmt: skip
IMPOSSIBLE = (
    "", ".", "..", "...", "timm:test_vit", "hf-hub:timm/test_vit", "hf_hub:someone/model",
    "local-dir:/tmp", "x" * 10_000, "test_vit.nope", "test_vit.r160_in1k.extra", "test_vit@main",
    "resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224", "eva02_tiny_patch14_224",
    "vit_small_patch16_18x2_224", "../../../etc/passwd", "/etc/passwd", "~root", "TEST_VIT",
    "test-vit", "test_vit_", "vit_*", "*", "?", "vit_tiny_patch16_224 --weights none",
)  # fmt: skip
NO_PRETRAINED = ("vit_base_patch16_gap_224", "vit_base_patch16_plus_240")
ONLINE_NAMES = (
    "test_vit",
    "test_vit.r160_in1k",
    "vit_tiny_patch16_224",
    "vit_tiny_patch16_224.augreg_in21k",
    "deit_tiny_distilled_patch16_224",
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_base_patch16_clip_224.openai",
    "deit_tiny_patch16_224.fb_in1k",
)


# --- running one input -----------------------------------------------------------------------


def _problem_with_line(line: str) -> str | None:
    """What is wrong with a refusal's line: not vitexplorer's, too long, or raw control
    characters (escape sequences, NUL, bidirectional overrides) that reach the terminal."""
    if not line.startswith("vitexplorer: "):
        return "not vitexplorer's own line"
    if len(line) > 1000:  # a misfit's line lists what does load (layouts.loadable_layouts)
        return f"{len(line)} characters"
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u200b\ufeff" for c in line):
        return "raw control characters"
    return None


def _node(path: Path) -> tuple[int, bytes | None]:
    """The file's node type and, for a regular file, its bytes (a link itself: its target)."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return stat.S_IFMT(info.st_mode), os.readlink(path).encode()
    return stat.S_IFMT(info.st_mode), path.read_bytes() if stat.S_ISREG(info.st_mode) else None


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(path)
    return path


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names timm was asked to build with real memory (not on the meta device); none is
    built (a MemoryError instead), so that a guard that let one through costs no memory."""
    real = timm.create_model
    seen: list[str] = []

    def create_model(name: str, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            seen.append(name)
            raise MemoryError(f"the fuzz suite does not build {name}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    return seen


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every call to the hub client (an empty cache of its own): none is expected."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    calls: list[str] = []
    for name in ("hf_hub_download", "get_hf_file_metadata"):
        monkeypatch.setattr(huggingface_hub, name, lambda *a, _n=name, **k: calls.append(_n))
    return calls


def _refused(
    name: str,
    weights: str,
    out: Path,
    image: Path,
    capsys,
    words: tuple[str, ...] = (),
    announced: bool = False,
) -> tuple[bool, str | None]:
    """(crashed, what is wrong) for an input that must be refused: exit 2, one line (after the
    download announcement where ``announced``) holding each of ``words``, nothing written."""
    args = ["analyze", str(image), "--model", name, "--weights", weights, "--out", str(out)]
    status, _, lines, crashed = run_cli([*args, "--device", "cpu"], capsys)
    if crashed:
        return True, "crashed"
    if announced and lines and lines[0].startswith(ANNOUNCEMENT):
        lines = lines[1:]
    if status != 2 or len(lines) != 1:
        return False, f"status {status}, {lines}"
    wrong = _problem_with_line(lines[0])
    missing = [w for w in words if w not in lines[0]]
    if wrong is None and missing:
        wrong = f"{missing} not in {lines[0]!r}"
    if wrong is None and out.exists() and any(out.iterdir()):
        wrong = f"wrote {sorted(p.name for p in out.iterdir())}"
    return False, wrong


# --- huge architectures ----------------------------------------------------------------------


def test_huge_architectures_are_refused_unbuilt(
    monkeypatch, tmp_path: Path, image: Path, capsys, builds, hub_calls
) -> None:
    """Random (--weights none) or pretrained: refused on the meta device's count, before any
    parameter is allocated and before any download is tried."""
    monkeypatch.setattr(estimate, "free_ram", lambda: FREE)
    problems = []
    cases = [(n, "none") for n in HUGE] + [(n, "default") for n in HUGE_PRETRAINED]
    for n, (name, weights) in enumerate(cases):
        words = (f"timm:{name} has ", "parameters", "more than the 50 MB of memory free")
        crashed, wrong = _refused(
            f"timm:{name}", weights, tmp_path / f"out{n}", image, capsys, words
        )
        record(DOOR, f"huge {name} --weights {weights}", crash=crashed)
        if wrong is not None or builds or hub_calls:
            problems.append(f"{name} {weights}: {wrong}; built {builds}, hub {hub_calls}")
        builds.clear()
        hub_calls.clear()
    assert not problems, "\n".join(problems)


# --- names -----------------------------------------------------------------------------------


def test_impossible_and_odd_names_are_one_line(
    tmp_path: Path, image: Path, capsys, builds, hub_calls
) -> None:
    """Names that are no timm ViT, with random or the default weights, and a real name with an
    odd character inserted or appended: refused before anything is built or fetched, the
    character escaped in the message."""
    names = [*IMPOSSIBLE, *NO_PRETRAINED]
    for n, odd in enumerate(ODD):
        names += [f"test_vit{odd}", f"test{odd}_vit"] if n % 2 else [f"{odd}test_vit"]
    problems = []
    for n, name in enumerate(names):
        weights = "default" if n % 3 == 0 or name in NO_PRETRAINED else "none"
        crashed, wrong = _refused(
            f"timm:{name}", weights, tmp_path / f"out{n}", image, capsys, ("timm",)
        )
        record(DOOR, f"name {name[:40]!r} --weights {weights}", crash=crashed)
        if wrong is not None or builds or hub_calls:
            problems.append(f"{name[:60]!r} {weights}: {wrong}; built {builds}, hub {hub_calls}")
        builds.clear()
        hub_calls.clear()
    assert not problems, "\n".join(problems)


# --- weights files ---------------------------------------------------------------------------


def _state(name: str = "test_vit", **kwargs: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _safetensors(state: dict[str, torch.Tensor]) -> Callable[[Path], bytes]:
    def make(path: Path) -> bytes:
        save_file(state, path)
        return path.read_bytes()

    return make


def _torch_save(obj: object) -> Callable[[Path], bytes]:
    def make(path: Path) -> bytes:
        torch.save(obj, path)
        return path.read_bytes()

    return make


class _Code:
    """A pickled object whose loading would run ``call(*args)``."""

    def __init__(self, call: object, args: tuple[object, ...]) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


def _wrong_files(folder: Path) -> list[tuple[str, Path, str]]:
    """(case, path, expected) for weights files given with ``--model timm:test_vit``: expected
    is "refused", or "loads" for a file that is in fact test_vit's weights."""
    good = _state(img_size=32, num_classes=10)
    marker = folder / MARKER
    cases: list[tuple[str, Callable[[Path], bytes] | bytes, str, str]] = []

    def add(case: str, make: Callable[[Path], bytes] | bytes, suffix: str, expected: str) -> None:
        cases.append((case, make, suffix, expected))

    add("good safetensors", _safetensors(good), ".safetensors", "loads")
    add("good pth", _torch_save(good), ".pth", "loads")
    add("wrapped in a dict", _torch_save({"state_dict": good, "epoch": 3}), ".pth", "loads")
    add("float16", _safetensors({k: v.half() for k, v in good.items()}), ".safetensors", "loads")
    other = {
        "vit_tiny 32": _state("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2,
                              num_heads=2, embed_dim=32),
        "deit distilled": _state("deit_tiny_distilled_patch16_224", img_size=32, depth=2),
        "registers": _state("vit_small_patch14_reg4_dinov2", img_size=28, depth=1,
                            embed_dim=32, num_heads=2),
        "test_vit2": _state("test_vit2"),
        "test_vit deeper": _state("test_vit", img_size=32, depth=7),
    }  # fmt: skip
    for what, state in other.items():
        add(f"other architecture: {what}", _safetensors(state), ".safetensors", "refused")
        add(f"other architecture: {what} (pth)", _torch_save(state), ".pth", "refused")
    add("DataParallel prefix", _safetensors({f"module.{k}": v for k, v in good.items()}),
        ".safetensors", "refused")  # fmt: skip
    add("a key missing", _safetensors({k: v for k, v in good.items() if k != "norm.weight"}),
        ".safetensors", "refused")  # fmt: skip
    add("a key too many", _safetensors({**good, "extra.weight": torch.zeros(3)}),
        ".safetensors", "refused")  # fmt: skip
    add("pos_embed of 7 tokens", _safetensors({**good, "pos_embed": torch.zeros(1, 7, 64)}),
        ".safetensors", "refused")  # fmt: skip
    add("head of one dimension", _safetensors({**good, "head.weight": torch.zeros(64)}),
        ".safetensors", "refused")  # fmt: skip
    for dtype in (torch.int8, torch.int32, torch.int64, torch.bool, torch.uint8):
        add(f"{dtype} tensors", _safetensors({k: v.to(dtype) for k, v in good.items()}),
            ".safetensors", "refused")  # fmt: skip
    whole_st, whole_pth = (folder / "whole.safetensors", folder / "whole.pth")
    st_bytes, pth_bytes = _safetensors(good)(whole_st), _torch_save(good)(whole_pth)
    whole_st.unlink()
    whole_pth.unlink()
    for fraction in (0.0001, 0.001, 0.01, 0.1, 0.3, 0.5, 0.9, 0.999):
        add(f"safetensors truncated at {fraction}", st_bytes[: int(len(st_bytes) * fraction)],
            ".safetensors", "refused")  # fmt: skip
        add(f"pth truncated at {fraction}", pth_bytes[: int(len(pth_bytes) * fraction)], ".pth",
            "refused")  # fmt: skip
    for suffix in (".safetensors", ".pth", ".pt", ".bin"):
        add(f"empty {suffix}", b"", suffix, "refused")
        add(f"text {suffix}", b"these are my weights\n" * 20, suffix, "refused")
    add("header of 10^15 bytes", (10**15).to_bytes(8, "little") + b"{}", ".safetensors",
        "refused")  # fmt: skip
    add("header not JSON", (8).to_bytes(8, "little") + b"not json", ".safetensors", "refused")
    add("a zip that is no torch file", _zip, ".pth", "refused")
    add("an .npz of the weights", _npz(good), ".npz", "refused")
    for label, call, args in (
        ("os.system", os.system, (f"touch {marker}",)),
        ("builtins.exec", builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        ("builtins.eval", builtins.eval, (f"open({str(marker)!r}, 'w')",)),
        ("pathlib touch", Path.touch, (marker,)),
    ):
        add(f"pickle running {label}", _torch_save({"w": _Code(call, args)}), ".pth", "refused")
        add(f"pickle running {label} (.bin)", _torch_save(_Code(call, args)), ".bin", "refused")
    add("a whole pickled model", _torch_save(timm.create_model("test_vit", img_size=32)), ".pth",
        "refused")  # fmt: skip
    add("a list of tensors", _torch_save(list(good.values())), ".pth", "refused")
    add("a dict of numbers", _torch_save({"a": 1, "b": 2.0}), ".pth", "refused")

    made = []
    for n, (case, make, suffix, expected) in enumerate(cases):
        path = folder / f"w{n}{suffix}"
        if isinstance(make, bytes):
            path.write_bytes(make)
        else:
            make(path)
        made.append((case, path, expected))
    made += _special_files(folder, folder / "w0.safetensors")
    return made


def _zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"junk")
    return path.read_bytes()


def _npz(state: dict[str, torch.Tensor]) -> Callable[[Path], bytes]:
    def make(path: Path) -> bytes:
        with open(path, "wb") as out:
            np.savez(out, **{k: v.numpy() for k, v in state.items()})
        return path.read_bytes()

    return make


def _special_files(folder: Path, good: Path) -> list[tuple[str, Path, str]]:
    """Paths that are no regular file: a FIFO, a folder, links (to the good file: it loads)."""
    fifo = folder / "pipe.pth"
    os.mkfifo(fifo)
    (folder / "dir.safetensors").mkdir()
    loop = folder / "loop.pth"
    loop.symlink_to(loop)
    dangling = folder / "dangling.pth"
    dangling.symlink_to(folder / "nothing-here.pth")
    link = folder / "link.safetensors"
    link.symlink_to(good)
    return [
        ("a named pipe", fifo, "refused"),
        ("a folder", folder / "dir.safetensors", "refused"),
        ("a link to itself", loop, "refused"),
        ("a dangling link", dangling, "refused"),
        ("a link to the good file", link, "loads"),
        ("a device", Path("/dev/zero"), "refused"),
        ("no such file", folder / "absent.safetensors", "refused"),
    ]


@pytest.mark.timeout(120)  # a named pipe opened for reading would wait for a writer forever
def test_wrong_weights_files_for_a_timm_name(tmp_path: Path, image: Path, capsys) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    problems = []
    for n, (case, path, expected) in enumerate(_wrong_files(folder)):
        before = _node(path) if os.path.lexists(path) and path.parent == folder else None
        out = tmp_path / f"out{n}"
        if expected == "refused":
            crashed, wrong = _refused("timm:test_vit", str(path), out, image, capsys, (path.name,))
        else:
            args = ["analyze", str(image), "--model", "timm:test_vit", "--weights", str(path)]
            status, _, lines, crashed = run_cli(
                [*args, "--out", str(out), "--device", "cpu"], capsys
            )
            attention = out / "photo.attention.npy"
            wrong = None if status == 0 and attention.is_file() else f"status {status}, {lines}"
        code = (folder / MARKER).exists()
        lost = before is not None and _node(path) != before
        record(DOOR, f"weights file: {case}", crash=crashed, code=code, lost=lost)
        if wrong is not None or code or lost:
            problems.append(f"{case}: {wrong}; code run {code}, file changed {lost}")
    assert not problems, "\n".join(problems)


# --- pretrained weights without a network ----------------------------------------------------


def _connect_error() -> BaseException:
    from vitexplorer.core.models.families.hub import _connect_errors

    kind = next(k for k in _connect_errors() if k.__name__ == "ConnectError")
    return kind("[Errno -2] Name or service not known")


def test_pretrained_weights_offline_fail_at_once(
    monkeypatch, tmp_path: Path, image: Path, capsys, builds
) -> None:
    """No network, three ways: the hub client's connection error on the probe, the hub client
    in offline mode, and the connection lost during the download. Each is one attempt, then the
    download line and one refusal naming the weights and the cache; nothing is built."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    calls: list[str] = []

    def probe_fails(url, **kwargs):
        calls.append("probe")
        raise _connect_error()

    def download_fails(repo, filename, **kwargs):
        calls.append("download")
        raise LocalEntryNotFoundError("cannot find the requested files") from _connect_error()

    ways = {
        "probe": (probe_fails, download_fails, False, ["probe"]),
        "offline mode": (probe_fails, download_fails, True, []),
        "lost": (lambda *a, **k: calls.append("probe"), download_fails, False,
                 ["probe", "download"]),
    }  # fmt: skip
    problems = []
    n = 0
    for way, (probe, download, offline, expected_calls) in ways.items():
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", probe)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        for name in ONLINE_NAMES if way == "probe" else ONLINE_NAMES[:4]:
            n += 1
            calls.clear()
            words = ("no network (", "weights are not in the cache (", "hub-cache", "--weights")
            crashed, wrong = _refused(
                f"timm:{name}", "default", tmp_path / f"out{n}", image, capsys, words, True
            )
            record(DOOR, f"offline ({way}): {name}", crash=crashed)
            if wrong is not None or calls != expected_calls or builds:
                problems.append(f"{way} {name}: {wrong}; calls {calls}, built {builds}")
            builds.clear()
    assert not problems, "\n".join(problems)


# --- the same refusals in the window ---------------------------------------------------------


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    from tests.gui.conftest import running_window

    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


def test_huge_and_impossible_timm_models_in_the_window(
    qtbot, window, monkeypatch, tiny_checkpoint: Path, builds, hub_calls
) -> None:
    """Asked for in the window, a model too large (random or pretrained) or a name that cannot
    load is one line, offered no download, and the model in use stays."""
    from vitexplorer.gui.workers import ModelRequest

    monkeypatch.setattr(estimate, "free_ram", lambda: FREE)
    before = window.model.spec
    offers: list[object] = []
    window.worker.download_offered.connect(offers.append)
    cases = [(n, "none") for n in HUGE[::4]] + [(n, "default") for n in HUGE_PRETRAINED[::3]]
    cases += [(n, "default") for n in ("nosuchmodel", "test_vit..x", *NO_PRETRAINED)]
    problems = []
    for name, weights in cases:
        with qtbot.waitSignal(window.model_failed, timeout=60000) as failed:
            window.request_model(ModelRequest(f"timm:{name}", weights, "cpu"))
        message = failed.args[0]
        record(
            "timm names and weights: the window", f"{name} {weights}", crash="Traceback" in message
        )
        if "\n" in message or len(message) > 400 or "Traceback" in message or "timm" not in message:
            problems.append(f"{name} {weights}: {message!r}")
        if window.message_box is not None:
            window.message_box.close()
    assert not problems, "\n".join(problems)
    assert offers == [] and builds == [] and hub_calls == []
    assert window.model.spec == before and window.model.request.name == str(tiny_checkpoint)
