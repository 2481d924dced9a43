"""Issue 14: loading weights builds the model on the meta device and takes the file's tensors, so
no random initialisation is computed only to be overwritten; the model is the same, bit for bit,
buffers outside the state dict included, as the one built the ordinary way (random weights, then
the file's copied in), for every family and every way of loading."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.overrides import TorchFunctionMode

from tests.conftest import TINY, tiny_hf_config
from vitexplorer.core.models import loading as models
from vitexplorer.core.models import skeleton as skeletons
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.skeleton import compute_buffers, has_meta, skeleton


@pytest.mark.slow
def test_a_checkpoint_loads_without_initialising_and_gives_the_same_logits(
    tmp_path: Path,
    monkeypatch,
) -> None:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    calls = []
    original = torch.nn.init.trunc_normal_
    monkeypatch.setattr(
        torch.nn.init, "trunc_normal_", lambda t, *a, **k: calls.append(t) or original(t, *a, **k)
    )
    again = load_model(str(path), device="cpu")
    assert [t for t in calls if not t.is_meta] == []  # initialised nothing real
    tensors = [*again.module.parameters(), *again.module.buffers()]
    assert not any(t.is_meta for t in tensors) and all(
        p.requires_grad for p in again.module.parameters()
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.module(x), again.module(x))  # bit for bit


def test_a_float16_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    halved = {k: v.half() for k, v in load_file(path).items()}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(halved, str(path), metadata=metadata)
    again = load_model(str(path), device="cpu")
    assert all(p.dtype == torch.float32 for p in again.module.parameters())
    expected = {k: v.half().float() for k, v in model.module.state_dict().items()}
    for key, value in again.module.state_dict().items():
        assert torch.equal(value, expected[key]), key


# --- every family's loads: the same model as the ordinary way, and no initialisation ---------

# torch.nn.init's random initialisers, and the tensor methods they (and timm's own) use
_RANDOM_FILLS = set(
    "uniform_ normal_ trunc_normal_ kaiming_uniform_ kaiming_normal_ xavier_uniform_ "
    "xavier_normal_ orthogonal_ sparse_ bernoulli_ random_ exponential_ cauchy_ log_normal_ "
    "geometric_ erfinv_".split()
)


class _Fills(TorchFunctionMode):
    """Records each random fill of a real (not meta) tensor, the work of an initialisation: a
    call of one of torch.nn.init's initialisers, or of a tensor's random fill (timm's own
    truncated normal)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensor = args[0] if args else kwargs.get("tensor")  # torch.nn.init's: by keyword
        if name in _RANDOM_FILLS and isinstance(tensor, torch.Tensor) and not tensor.is_meta:
            self.seen.append((name, tuple(tensor.shape)))
        return func(*args, **kwargs)


def _ordinary(make, state):
    """The way before issue 14: built with random initialisation, the weights copied in."""
    module = make()
    module.load_state_dict(state)
    return module


def _the_old_way(monkeypatch) -> None:
    monkeypatch.setattr(skeletons, "with_weights", _ordinary)
    if importlib.util.find_spec("timm") is not None:
        from vitexplorer.core.models.families import timm_weights

        monkeypatch.setattr(timm_weights, "_without_init", lambda *args: None)


def _assert_same(new: nn.Module, old: nn.Module) -> None:
    """Every parameter and buffer (those outside the state dict too) the same bits, dtype and
    kind, none on the meta device, no load hook left behind."""
    assert type(new) is type(old) and new.training == old.training
    for kind in ("named_parameters", "named_buffers"):
        mine, theirs = dict(getattr(new, kind)()), dict(getattr(old, kind)())
        assert mine.keys() == theirs.keys(), kind
        for key, value in mine.items():
            assert not value.is_meta and value.dtype == theirs[key].dtype, key
            assert torch.equal(value, theirs[key]), key
            assert value.requires_grad == theirs[key].requires_grad, key
    assert all(not m._load_state_dict_pre_hooks for m in new.modules())


def _perturbed(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():  # off the initial values (zero biases, near-zero tokens)
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


class _WithBuffers(nn.Module):
    """A module whose ``__init__`` computes a buffer outside the state dict (a relative-position
    index, as some ViTs keep) and one inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        rows, cols = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
        grid = torch.stack([rows.flatten(), cols.flatten()])
        relative = grid[:, :, None] - grid[:, None, :] + 2
        self.register_buffer("index", relative[0] * 5 + relative[1], persistent=False)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.scale + self.index.float().mean()


def test_buffers_outside_the_state_dict_are_computed_as_init_computes_them() -> None:
    torch.manual_seed(0)
    reference = _perturbed(_WithBuffers())
    reference.scale.mul_(3.0)
    state = dict(reference.state_dict())
    assert "index" not in state
    with _Fills() as fills:
        built = skeletons.with_weights(_WithBuffers, state)
    assert fills.seen == []
    _assert_same(built.eval(), reference)
    assert built.scale.data_ptr() != reference.scale.data_ptr()  # its own memory


def test_the_blocks_act_only_in_their_own_thread() -> None:
    """The meta device, the assigning pre-hooks and compute_buffers' parameters on the meta
    device reach no module that another thread builds meanwhile, nor any built after."""
    built: list[nn.Module] = []
    start, finished = threading.Semaphore(0), threading.Semaphore(0)

    def other() -> None:
        for _ in range(2):
            if start.acquire(timeout=60):
                built.extend([nn.Linear(3, 4), _WithBuffers()])
                finished.release()

    def make() -> nn.Module:
        module = _WithBuffers()
        start.release()  # the other thread builds while this one is inside the block
        assert finished.acquire(timeout=60)
        return module

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    with skeleton(assign_loads=True):
        target = make()
        assert has_meta(target) and target._load_state_dict_pre_hooks
    assert not target._load_state_dict_pre_hooks  # removed with the block
    compute_buffers(target, make)
    thread.join(timeout=60)
    assert target.proj.weight.is_meta and target.proj.bias.is_meta  # only the buffers computed
    assert torch.equal(target.index, _WithBuffers().index)
    assert torch.equal(target.scale, torch.ones(4))
    assert len(built) == 4
    for module in (*built, nn.Linear(3, 4)):
        assert not has_meta(module) and not module._load_state_dict_pre_hooks


# --- Hugging Face: a weights file and a checkpoint, for every class vitexplorer supports ---


def _tiny_hf(architecture: str) -> tuple[nn.Module, object]:
    from vitexplorer.core.models.families.hf_config import CONFIG_CLASSES, EXTRA, model_class
    from vitexplorer.core.models.families.hf_model import KINDS

    kind = KINDS[architecture]
    changes: dict[str, object] = {"num_labels": 3} if kind.classifier else {}
    if kind.model_type == "dinov2_with_registers":
        changes["num_register_tokens"] = 2
    if architecture == "CLIPVisionModelWithProjection":
        changes["projection_dim"] = 16
    config = tiny_hf_config(CONFIG_CLASSES[kind.model_type], **changes)
    torch.manual_seed(0)
    model = model_class(architecture)(config, **EXTRA.get(architecture, {}))
    return _perturbed(model), config


def _hf_architectures() -> list[str]:
    pytest.importorskip("transformers")
    from vitexplorer.core.models.families.hf_model import KINDS

    return list(KINDS)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", _hf_architectures())
def test_an_hf_weights_file_loads_without_initialising(
    architecture: str,
    tmp_path: Path,
    monkeypatch,
) -> None:
    from vitexplorer.core.models.families import hf
    from vitexplorer.core.models.families.hf_config import EXTRA, model_class
    from vitexplorer.core.models.families.hf_model import HFClassifier

    model, config = _tiny_hf(architecture)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    cls, extra = model_class(architecture), EXTRA.get(architecture, {})
    with _Fills() as fills:
        new = hf._from_state_dict(cls, config, extra, path, "tiny")
    assert fills.seen == []
    with monkeypatch.context() as patch, _Fills() as before:
        _the_old_way(patch)
        old = hf._from_state_dict(cls, config, extra, path, "tiny")
    assert before.seen  # the spy sees the ordinary way's initialisation
    _assert_same(new, old)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        logits = [HFClassifier(m, architecture, 32).eval()(x) for m in (new, old)]
    assert torch.equal(*logits)
    if architecture.startswith("CLIP"):  # a buffer outside the state dict, computed as before
        ids = dict(new.named_buffers())
        key = next(k for k in ids if k.endswith("position_ids"))
        assert key not in new.state_dict() and torch.equal(ids[key], torch.arange(17)[None])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", _hf_architectures())
def test_an_hf_checkpoint_loads_without_initialising(
    architecture: str,
    tmp_path: Path,
    monkeypatch,
) -> None:
    """A vitexplorer checkpoint of every class, an image tower with a head of its own (as
    fine-tuning gives it) included."""
    from vitexplorer.core.models.families import hf
    from vitexplorer.core.models.families.hf_config import (
        architecture_config,
        build_model,
        preprocessing,
    )
    from vitexplorer.core.models.families.hf_model import KINDS

    config = _tiny_hf(architecture)[1]
    torch.manual_seed(1)
    wrapper = _perturbed(build_model(architecture, architecture_config(config), 3, 32))
    prep = preprocessing(KINDS[architecture].model_type, 32, {})
    spec = hf.make_spec(wrapper, "hf:tiny", "tuned", prep, ("a", "b", "c"))
    path = tmp_path / "m.safetensors"
    models.save_checkpoint(path, models.LoadedModel(wrapper, spec, torch.device("cpu")))
    with _Fills() as fills:
        new = models.load_model(str(path), device="cpu")
    assert fills.seen == []
    with monkeypatch.context() as patch, _Fills() as before:
        _the_old_way(patch)
        old = models.load_model(str(path), device="cpu")
    assert before.seen
    _assert_same(new.module, old.module)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(new.module(x), old.module(x))
        assert torch.equal(new.module(x), wrapper(x))
    assert new.spec == old.spec


@pytest.mark.slow
@pytest.mark.parametrize(
    "architecture",
    ["ViTForImageClassification", "DeiTForImageClassificationWithTeacher", "CLIPVisionModel"],
)
def test_an_hf_folder_loads_without_initialising(architecture: str, tmp_path: Path) -> None:
    """transformers' ``from_pretrained`` builds on the meta device itself; nor is the distilled
    DeiT's fused head initialised before its weights are written."""
    import copy

    from vitexplorer.core.models.families.hf_model import HFClassifier

    model, _ = _tiny_hf(architecture)
    model.config.architectures = [architecture]
    model.save_pretrained(tmp_path)
    reference = HFClassifier(copy.deepcopy(model), architecture, 32).eval()
    with _Fills() as fills:
        loaded = models.load_model(f"hf:{tmp_path}", "default", "cpu")
    assert fills.seen == [] and not has_meta(loaded.module)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), reference(x))


# --- timm: its own pretrained loading (the cached hub file) and checkpoints ------------------


def _cached_timm_file(name: str, folder: Path, suffix: str, change=None) -> Path:
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    state = _perturbed(timm.create_model(name, pretrained=False)).state_dict()
    state = change(state) if change is not None else dict(state)
    path = folder / f"model{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _flat_patch_filter(state: dict) -> dict:
    """The patch filter as a linear map (O, C*P*P), the layout timm's own conversion reshapes."""
    weight = state["patch_embed.proj.weight"]
    return {**state, "patch_embed.proj.weight": weight.reshape(weight.shape[0], -1)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "suffix", "change"),
    [
        ("test_vit", ".safetensors", None),
        ("test_vit", ".bin", None),
        ("test_vit", ".safetensors", _flat_patch_filter),
        ("deit_tiny_distilled_patch16_224", ".safetensors", None),
    ],
)
def test_timms_default_weights_load_without_initialising(
    name: str,
    suffix: str,
    change,
    tmp_path: Path,
    monkeypatch,
) -> None:
    import huggingface_hub

    path = _cached_timm_file(name, tmp_path, suffix, change)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(path))
    with _Fills() as fills:
        new = models.load_model(f"timm:{name}", "default", "cpu", allow_download=False)
    assert fills.seen == []
    with monkeypatch.context() as patch, _Fills() as before:
        _the_old_way(patch)
        old = models.load_model(f"timm:{name}", "default", "cpu", allow_download=False)
    assert before.seen
    _assert_same(new.module, old.module)
    assert new.module.pretrained_cfg == old.module.pretrained_cfg and new.spec == old.spec
    x = torch.randn(2, 3, *new.module.patch_embed.img_size)
    with torch.inference_mode():
        assert torch.equal(new.module(x), old.module(x))


@pytest.mark.slow
def test_a_damaged_or_misfit_timm_file_is_refused_with_the_same_message(
    tmp_path: Path,
    monkeypatch,
) -> None:
    import huggingface_hub

    from vitexplorer.core.models.checkpoint import WeightsFileError

    def without_norm(state: dict) -> dict:
        return {k: v for k, v in state.items() if k != "norm.weight"}

    misfit = _cached_timm_file("test_vit", tmp_path, ".safetensors", without_norm)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(misfit.read_bytes()[:5000])
    for path in (misfit, damaged):
        monkeypatch.setattr(
            huggingface_hub, "try_to_load_from_cache", lambda *a, p=path, **k: str(p)
        )
        messages = []
        for old in (False, True):
            with monkeypatch.context() as patch:
                if old:
                    _the_old_way(patch)
                with pytest.raises(WeightsFileError) as err:
                    models.load_model("timm:test_vit", "default", "cpu", allow_download=False)
            messages.append(str(err.value))
        assert messages[0] == messages[1] and "could not be loaded" in messages[0]


@pytest.mark.slow
def test_a_timm_checkpoint_and_weights_file_load_without_initialising(
    tmp_path: Path,
    monkeypatch,
) -> None:
    timm = pytest.importorskip("timm")
    from vitexplorer.core.models.families import timm as family

    torch.manual_seed(5)
    module = _perturbed(timm.create_model("test_vit", pretrained=False, img_size=32))
    base = models.LoadedModel(module, family.spec_for(module, "test_vit", "r"), torch.device("cpu"))
    checkpoint, plain = tmp_path / "m.safetensors", tmp_path / "w.safetensors"
    models.save_checkpoint(checkpoint, base)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(plain))
    for args in ((str(checkpoint), "default"), ("timm:test_vit", str(plain))):
        with _Fills() as fills:
            new = models.load_model(*args, "cpu")
        assert fills.seen == []
        with monkeypatch.context() as patch, _Fills() as before:
            _the_old_way(patch)
            old = models.load_model(*args, "cpu")
        assert before.seen
        _assert_same(new.module, old.module)
        x = torch.randn(2, 3, 32, 32)
        with torch.inference_mode():
            assert torch.equal(new.module(x), old.module(x))
