"""Every method of the catalogue on every family: a matrix built from ``catalogue()`` when the
tests are collected, so a new method file joins with no change here.

Each (method, family, grid) cell runs the method as ``analyze`` does (:func:`explain_methods`,
the square crop or the whole image on a rectangular grid): the map has the grid's shape and is
finite, a pixel map sums to it patch by patch, the method card written as JSON makes the same
map again (:func:`replay_map`), and the model is left as it was. A method may refuse a model
only when it declares so (:meth:`Method.applies` names a reason), with that one line; any
other exception fails. Multi-pass methods call progress and stop on a cancel. Tiny models
(32 px, 8 px patches, width 32, two layers, two heads) and small options keep it fast; the
quick suite (``-m "not slow"``) runs two families of the matrix, the full run all."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, tiny_hf_config
from tests.core.test_cli import _image
from vitexplorer.cli import main
from vitexplorer.cli.analyze import explain_methods
from vitexplorer.core.explain import method as catalogue_module
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.attribution import Attribution, Attributor, grid_of, patch_sums
from vitexplorer.core.explain.card import replay_map
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import (
    Method,
    MethodCancelled,
    MethodOptions,
    catalogue,
    get,
    register,
)
from vitexplorer.core.explain.provenance import strict_json
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.feed import CROP, WHOLE
from vitexplorer.core.models.loading import LoadedModel, load_model

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

METHODS = [method.name for method in catalogue()]  # at collection: new methods join here
MULTI_PASS = [m.name for m in catalogue() if m.cost_per is not None]
FAMILIES = [
    "small_vit",
    "checkpoint",
    "torchvision",
    "timm",
    "timm distilled",
    "timm registers",
    "timm pooled",
    "timm encoder",
    "hf",
    "wrapped",
]
# the cells the quick suite runs: three prefix tokens on a rectangle, none (pooling) square
QUICK = (("timm registers", "wide"), ("timm pooled", "square"))
GRIDS = {"square": ((40, 40), CROP), "wide": ((60, 36), WHOLE)}  # 4x4; 3x5 at its own aspect
SMALL = MethodOptions(path_steps=2, samples=2)  # multi-pass methods kept to a few passes

TIMM_TINY = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
TIMM_KINDS = {
    "timm": ("vit_tiny_patch16_224", {}),
    "timm distilled": ("deit_tiny_distilled_patch16_224", {}),
    "timm registers": ("vit_tiny_patch16_224", dict(reg_tokens=2, no_embed_class=True)),
    "timm pooled": ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg")),
    "timm encoder": ("vit_tiny_patch16_224", dict(num_classes=0)),
}


def _spread(module: torch.nn.Module) -> torch.nn.Module:
    """Parameters moved off their initialisation (zero biases, near-zero tokens), so that
    every gradient and map is far from zero."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return module.eval()


def _timm(kind: str) -> torch.nn.Module:
    name, extra = TIMM_KINDS[kind]
    return _spread(timm.create_model(name, pretrained=False, **{**TIMM_TINY, **extra}))


def _build(family: str, checkpoint: Path, folder: Path) -> LoadedModel:
    from vitexplorer.core.models.families import timm as timm_family

    cpu = torch.device("cpu")
    torch.manual_seed(FAMILIES.index(family))
    if family == "small_vit":
        from vitexplorer.core.models.families.small_vit import spec_for
        from vitexplorer.core.models.vit import SmallViT

        module = SmallViT(TINY).eval()
        torch.nn.init.normal_(module.head.weight, std=0.5)
        return LoadedModel(module, spec_for(TINY, "random"), cpu)
    if family == "checkpoint":
        return load_model(str(checkpoint), device="cpu")
    if family == "torchvision":
        from torchvision.models.vision_transformer import VisionTransformer

        from vitexplorer.core.models.families.torchvision import spec_for

        tv = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
        torch.nn.init.normal_(tv.heads.head.weight, std=0.5)  # torchvision's is zero
        return LoadedModel(tv.eval(), spec_for("vit_b_16", tv, "random"), cpu)
    if family in TIMM_KINDS:
        module = _timm(family)
        return LoadedModel(module, timm_family.spec_for(module, TIMM_KINDS[family][0], "r"), cpu)
    if family == "hf":
        hf = _spread(transformers.ViTForImageClassification(tiny_hf_config(num_labels=10)))
        hf.save_pretrained(folder / "hf")
        return load_model(f"hf:{folder / 'hf'}", device="cpu")
    if family == "wrapped":
        from vitexplorer.api import wrap

        module = _timm("timm")
        names = [f"blocks.{i}.attn" for i in range(2)]
        return wrap(module, names, patch_size=8, image_size=32, name="own", device="cpu").loaded
    raise AssertionError(family)


@pytest.fixture(scope="module")
def loaded(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable:
    """``loaded(family)``: that family's tiny model, built once for the module."""
    folder = tmp_path_factory.mktemp("families")
    built: dict[str, LoadedModel] = {}

    def get_model(family: str) -> LoadedModel:
        if family not in built:
            built[family] = _build(family, checkpoint, folder)
        return built[family]

    return get_model


def _state(model: LoadedModel, batch: torch.Tensor) -> tuple:
    """What a method must leave as it was: the mode, the gradients, the logits, the forwards."""
    module = model.module
    with torch.inference_mode():
        logits = module(batch)
    logits = logits if isinstance(logits, torch.Tensor) else logits[0]
    patched = sorted(name for name, m in module.named_modules() if "forward" in vars(m))
    grads = [name for name, p in module.named_parameters() if p.grad is not None]
    flags = [p.requires_grad for p in module.parameters()]
    return module.training, grads, flags, patched, logits.detach().clone()


def _assert_unchanged(before: tuple, after: tuple) -> None:
    assert before[0] == after[0], "the train/eval mode changed"
    assert after[1] == [], f"parameters with a .grad left behind: {after[1][:3]}"
    assert before[2] == after[2], "requires_grad changed"
    assert before[3] == after[3], "a forward was left replaced"
    torch.testing.assert_close(after[4], before[4], rtol=0, atol=0)


def _photo(tmp_path: Path, grid: str) -> Path:
    size, _ = GRIDS[grid]
    return _image(tmp_path / "photo.png", size, seed=7)


def _cells() -> list:
    """(method, family, grid) for every method, family and grid; the quick suite runs the
    :data:`QUICK` cells of each method, the rest is slow."""
    return [
        pytest.param(
            method, family, grid, marks=() if (family, grid) in QUICK else pytest.mark.slow
        )
        for method in METHODS
        for family in FAMILIES
        for grid in GRIDS
    ]


@pytest.mark.parametrize(("method", "family", "grid"), _cells())
def test_every_method_on_every_family(method, family, grid, loaded, tmp_path) -> None:
    model = loaded(family)
    described = get(method)
    photo = _photo(tmp_path, grid)
    image = load_image(photo)
    feed = GRIDS[grid][1]
    if family == "wrapped" and feed.whole:  # the analysis itself refuses, in one line
        from vitexplorer.core.models.families.family import UnsupportedModel

        with pytest.raises(UnsupportedModel, match="runs at its own input size only"):
            analyze_image(model, image, feed)
        return
    analysis = analyze_image(model, image, feed)
    rows, cols = analysis.spec.grid
    assert (rows, cols) == ((4, 4) if grid == "square" else (3, 5))
    square = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = _state(model, square)

    reason = described.applies(analysis.spec, model)
    if reason:  # a refusal the method declares: that one line, nothing else
        with pytest.raises(ValueError) as refused:
            explain_methods(model, image, photo, analysis, [method], SMALL, feed)
        assert str(refused.value) == reason and "\n" not in reason
        spec = analysis.spec  # the line names the method and the model
        assert method in reason and (spec.display_name in reason or spec.name in reason)
        _assert_unchanged(before, _state(model, square))
        return

    found = explain_methods(model, image, photo, analysis, [method], SMALL, feed)[method]
    heat = found.heat
    assert heat.shape == (rows, cols) and heat.dtype == np.float32
    assert np.isfinite(heat).all(), f"{method} on {family}: a map that is not finite"
    if described.pixels:
        assert found.pixels is not None
        assert found.pixels.shape == (rows * 8, cols * 8)
        sums = patch_sums(found.pixels[None], (rows, cols))[0]
        np.testing.assert_allclose(heat, sums, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(sums).max()))

    card = json.loads(strict_json(found.card)[0])  # the card as analyze writes it
    assert card["method"] == method
    if grid == "wide":
        assert card["input"] == {"aspect": "keep", "grid": [rows, cols]}
    replayed = replay_map(card, model)  # its image read back from the card's file
    scale = max(1.0, float(np.abs(heat).max()))
    np.testing.assert_allclose(replayed, heat, rtol=0, atol=1e-6 * scale)
    _assert_unchanged(before, _state(model, square))


@pytest.mark.parametrize("method", MULTI_PASS)
def test_multi_pass_methods_report_progress_and_stop_on_cancel(method, loaded) -> None:
    model = loaded("timm")
    batch = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    calls: list[tuple[int, int]] = []
    explanation_map(
        method, SMALL, model=model, batch=batch, progress=lambda d, t: calls.append((d, t))
    )
    assert calls, f"{method} takes several passes but reported no progress"
    totals = {total for _, total in calls}
    assert len(totals) == 1 and calls[-1][0] == calls[-1][1]
    assert all(0 <= done <= total for done, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    def cancel(done: int, total: int) -> None:
        raise MethodCancelled()

    before = _state(model, batch)
    with pytest.raises(MethodCancelled):
        explanation_map(method, SMALL, model=model, batch=batch, progress=cancel)
    _assert_unchanged(before, _state(model, batch))


@pytest.mark.parametrize("aspect", ["crop", pytest.param("keep", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", METHODS)
def test_analyze_runs_every_method_on_a_checkpoint(
    method, aspect, checkpoint, tmp_path, capsys
) -> None:
    """The command line, end to end: ``analyze --method X`` for every method of the
    catalogue, on the square crop and at the image's own aspect."""
    photo = _image(tmp_path / "in" / "photo.png", (60, 36), seed=8)
    out = tmp_path / aspect
    status = main(
        ["analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
         "--method", method, "--path-steps", "2", "--samples", "2", "--device", "cpu",
         "--aspect", aspect]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    heat = np.load(out / f"photo.{method}.npy")
    card = json.loads((out / f"photo.{method}.json").read_text())
    assert list(heat.shape) == card["map"]["shape"]
    assert heat.shape == ((4, 4) if aspect == "crop" else (3, 5))
    assert np.isfinite(heat).all()
    pixels = out / f"photo.{method}.pixels.npy"
    assert pixels.exists() == get(method).pixels
    replayed = replay_map(card, load_model(str(checkpoint), device="cpu"))
    np.testing.assert_allclose(replayed, heat, rtol=0, atol=1e-6 * max(1.0, np.abs(heat).max()))


def test_a_card_of_another_model_is_not_replayed(loaded, tmp_path) -> None:
    model = loaded("small_vit")
    photo = _photo(tmp_path, "square")
    image = Image.open(photo)
    analysis = analyze_image(model, image)
    card = explain_methods(model, image, photo, analysis, ["attention"], SMALL)["attention"].card
    with pytest.raises(ValueError, match="describes a map of small_vit, not of vit_b_16"):
        replay_map(card, loaded("torchvision"))


class _NeedsLayerNorms(Attributor):
    """A method that declares it cannot run on a small ViT (as an LRP method may refuse a
    model lacking the parts its rules need); it would explain the first channel otherwise."""

    def refusal(self, model: LoadedModel) -> str | None:
        if model.spec.name != "small_vit":
            return None
        return f"{model.spec.display_name} lacks what picky needs; attention and rollout work"

    def attribute(self, model, batch, options, grid=None, progress=None) -> Attribution:
        chosen, _ = grid_of(model, grid)
        pixels = batch[:, 0].detach().float().cpu().numpy()
        targets = np.zeros(len(pixels), np.int64)
        return Attribution(patch_sums(pixels, chosen), targets, pixels)


@pytest.fixture
def picky() -> Iterator[Method]:
    method = register(
        Method(
            name="picky",
            label="Picky",
            summary="a test's method that refuses small ViTs",
            tip="",
            help_title="",
            help="",
            options=("target_class",),
            needs_model=True,
            class_specific=True,
            only_cls=True,
            requires_classifier=True,
            per_token=False,
            cost=1,
            compute=_NeedsLayerNorms(),
            order=996,
        )
    )
    yield method
    catalogue_module._REGISTRY.pop("picky", None)


def test_a_method_that_refuses_the_model_says_so_once(picky, loaded, checkpoint, tmp_path, capsys):
    """The refusal a method declares (:meth:`Computation.refusal`) comes back in one line from
    the dispatcher, and from the command line before any image is analysed (exit 2)."""
    small = loaded("small_vit")
    reason = picky.applies(small.spec, small)
    assert reason == f"{small.spec.display_name} lacks what picky needs; attention and rollout work"
    batch = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="lacks what picky needs") as refused:
        explanation_map("picky", MethodOptions(), model=small, batch=batch)
    assert str(refused.value) == reason
    assert picky.applies(loaded("timm").spec, loaded("timm")) is None  # others it runs on
    heat = explanation_map("picky", MethodOptions(), model=loaded("timm"), batch=batch)
    assert heat.shape == (4, 4)

    photo = _image(tmp_path / "photo.png", (40, 40), seed=9)
    out = tmp_path / "out"
    status = main(
        ["analyze", str(photo), "--model", str(checkpoint), "--out", str(out),
         "--method", "picky", "--device", "cpu"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "lacks what picky needs; attention and rollout work" in lines[0]
    assert captured.out == "" and not list(out.glob("*"))  # no image was analysed
