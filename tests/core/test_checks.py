"""Checks of explanations: Spearman by hand, cascading randomisation, the perturbation test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vitexplorer.core.evaluate.faithfulness import (
    FaithfulnessProgress,
    FaithfulnessResult,
    area_under,
    faithfulness,
    perturbation_curve,
    perturbation_fractions,
    perturbed_copies,
    removal_counts,
)
from vitexplorer.core.evaluate.sanity import (
    average_ranks,
    randomisation_steps,
    sanity_check,
    spearman,
)
from vitexplorer.core.explain.maps import method_explainer
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.models.families.small_vit import spec_for as small_vit_spec
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.vit import SmallViT, SmallViTConfig

# 32 px images in 4 px patches: an 8x8 grid, so rank correlations rest on 64 values
CONFIG = SmallViTConfig(image_size=32, patch_size=4, width=32, depth=2, heads=2, num_classes=10)
SPEC = small_vit_spec(CONFIG, "random")


def _small_vit(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    return LoadedModel(SmallViT(CONFIG).eval(), SPEC, torch.device("cpu"))


def _image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --- Spearman ---------------------------------------------------------------------------------


def test_spearman_by_hand() -> None:
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 35, 90])) == 1.0  # monotone
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == -1.0
    # ties: a = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4]; b = [1, 3, 2, 4] ranks [1, 3, 2, 4].
    # Centred (mean 2.5): [-1.5, 0, 0, 1.5] and [-1.5, .5, -.5, 1.5];
    # sum of products 4.5, sums of squares 4.5 and 5: rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    np.testing.assert_array_equal(average_ranks(np.array([1, 2, 2, 3])), [1, 2.5, 2.5, 4])
    got = spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert got == pytest.approx(np.sqrt(0.9), abs=1e-12)
    # ranks of three tied values and a 2-D input (flattened)
    np.testing.assert_array_equal(average_ranks(np.array([[5, 1], [5, 5]])), [3, 1, 3, 3])


def test_spearman_undefined_cases() -> None:
    assert np.isnan(spearman(np.ones(5), np.arange(5)))
    assert np.isnan(spearman(np.array([1.0, np.nan]), np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="cannot correlate 3 values with 4"):
        spearman(np.zeros(3), np.zeros(4))


# --- Sanity check -----------------------------------------------------------------------------


def test_randomisation_steps_cover_every_parameter_once(tiny_torchvision_vit: nn.Module) -> None:
    for module in (_small_vit().module, tiny_torchvision_vit):
        steps = randomisation_steps(module)
        assert [name for name, _ in steps] == ["head", "block 2", "block 1", "embedding"]
        seen: list[int] = []
        for _, parts in steps:
            for part in parts:
                params = [part] if isinstance(part, nn.Parameter) else list(part.parameters())
                seen += [id(p) for p in params]
        assert sorted(seen) == sorted(id(p) for p in module.parameters())
    with pytest.raises(ValueError, match="does not know the parts of a Linear"):
        randomisation_steps(nn.Linear(2, 2))


@pytest.mark.parametrize("method", ["rollout", "relevance"])
def test_sanity_check_randomises_a_copy(method: str) -> None:
    model = _small_vit()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    explain = method_explainer(method, MethodOptions())
    steps = list(sanity_check(model, _image(), explain, seed=0))
    assert [s.name for s in steps] == ["original", "head", "block 2", "block 1", "embedding"]
    assert steps[0].correlation == 1.0
    np.testing.assert_array_equal(steps[0].map, explain(model, _image()))
    assert all(s.map.shape == (8, 8) for s in steps)
    # rollout never looks at the head, so its map ignores the head's randomisation (the
    # weakness this check exposes); relevance follows the gradient of the class logit
    if method == "rollout":
        assert steps[1].correlation == 1.0
    else:
        assert steps[1].correlation < 0.9
    # once every block is random, the map no longer resembles the original
    assert steps[-2].correlation < 0.5 and steps[-1].correlation < 0.5
    after = model.module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    again = list(sanity_check(model, _image(), explain, seed=0))
    assert [s.correlation for s in again] == [s.correlation for s in steps]


def _part(key: str) -> str:
    """``blocks.1.attn.qkv.weight`` -> ``blocks.1``; ``head.weight`` -> ``head``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]


def test_sanity_check_reinitialises_the_named_parts() -> None:
    """Through a spying explainer: each step changes its own part and keeps the ones below."""
    model = _small_vit()
    with torch.no_grad():  # LayerNorms reset to weight 1 and bias 0: start them elsewhere
        for m in model.module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.5)
                m.bias.fill_(0.1)
    original = {k: v.clone() for k, v in model.module.state_dict().items()}
    changed: list[set[str]] = []

    def spy(m: LoadedModel, batch: torch.Tensor) -> np.ndarray:
        state = m.module.state_dict()
        keys = [k for k, v in state.items() if not torch.equal(v, original[k])]
        changed.append({_part(k) for k in keys})
        if len(changed) > 1:  # every tensor of a randomised part is new
            assert {k for k in state if _part(k) in changed[-1]} == set(keys)
        return np.arange(64, dtype=np.float32).reshape(8, 8)

    steps = list(sanity_check(model, _image(), spy, seed=3))
    top = {"norm", "head"}
    assert changed == [
        set(),
        top,
        top | {"blocks.1"},
        top | {"blocks.1", "blocks.0"},
        top | {"blocks.1", "blocks.0", "patch_embed", "cls_token", "pos_embed"},
    ]
    assert all(s.correlation == 1.0 for s in steps)  # the spy's map never changes
    state = model.module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in original.items())


def test_sanity_check_stops_when_cancelled() -> None:
    model = _small_vit()
    flat = lambda m, b: np.arange(64, dtype=np.float32).reshape(8, 8)  # noqa: E731
    calls = iter([False, True])
    steps = list(sanity_check(model, _image(), flat, cancelled=lambda: next(calls)))
    assert [s.name for s in steps] == ["original", "head"]


# --- Faithfulness -----------------------------------------------------------------------------


def test_fractions_and_counts_are_exact() -> None:
    fractions = perturbation_fractions(10)
    assert fractions.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    # 6 patches: 0.6, 1.2, 1.8, 2.4, 3, 3.6, 4.2, 4.8, 5.4 rounded half up
    assert removal_counts(6, 10).tolist() == [0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6]
    assert removal_counts(196, 10).tolist() == [round(19.6 * k + 1e-9) for k in range(11)]
    assert removal_counts(4, 8).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]  # 0.5 and 1.5 round up


def test_area_under() -> None:
    fractions = perturbation_fractions(10)
    assert area_under(fractions, np.full(11, 0.37)) == pytest.approx(0.37, abs=1e-15)
    assert area_under(fractions, fractions) == pytest.approx(0.5, abs=1e-15)
    assert area_under(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])) == 0.5
    with pytest.raises(ValueError, match="two equally long curves"):
        area_under(fractions, fractions[:-1])


def test_perturbed_copies_zero_the_right_pixels_on_a_wide_grid() -> None:
    """An 8x12 image in a 2x3 grid of 4x4 patches, numbered row-major:
    relevance [[5, 0, 1], [2, 4, 3]] orders the patches 0, 4, 5, 3, 2, 1 (most relevant first)."""
    image = torch.arange(1, 1 + 3 * 8 * 12, dtype=torch.float32).reshape(1, 3, 8, 12)
    relevance = np.array([[5.0, 0.0, 1.0], [2.0, 4.0, 3.0]])
    copies = perturbed_copies(image, relevance, positive=True, steps=2)  # 0, 3, 6 patches
    assert copies.shape == (3, 3, 8, 12)
    torch.testing.assert_close(copies[0], image[0])
    zeroed = copies[1] == 0
    expected = torch.zeros(8, 12, dtype=torch.bool)
    expected[0:4, 0:4] = True  # patch 0: row 0, col 0
    expected[4:8, 4:8] = True  # patch 4: row 1, col 1
    expected[4:8, 8:12] = True  # patch 5: row 1, col 2
    assert torch.equal(zeroed, expected.expand(3, 8, 12))
    torch.testing.assert_close(copies[1][~zeroed], image[0][~zeroed])
    assert (copies[2] == 0).all()
    # negative: least relevant first, patches 1, 2, 3
    least = perturbed_copies(image, relevance, positive=False, steps=2)[1] == 0
    expected = torch.zeros(8, 12, dtype=torch.bool)
    expected[0:4, 4:12] = True  # patches 1 and 2
    expected[4:8, 0:4] = True  # patch 3
    assert torch.equal(least, expected.expand(3, 8, 12))
    with pytest.raises(ValueError, match="does not split into a 3x3 grid"):
        perturbed_copies(image, np.zeros((3, 3)), positive=True)


class PatchDetector(nn.Module):
    """Class 0's logit is the weighted mean brightness of the patches; the other classes 0.

    Its relevance is known: the weights. Removing a patch (zeroing it) takes exactly its weighted
    brightness off the logit.
    """

    def __init__(self, weights: np.ndarray, patch: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.patch = patch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        brightness = F.avg_pool2d(images.mean(1, keepdim=True), self.patch)[:, 0]
        evidence = (brightness * self.weights).sum((1, 2))
        zeros = torch.zeros_like(evidence)
        return torch.stack([evidence, zeros, zeros], dim=1)


def test_planted_detector_curves_by_hand() -> None:
    weights = np.array([[3.0, 0.0, 1.0], [0.5, 2.0, 0.0]])  # a 2x3 grid
    model = LoadedModel(PatchDetector(weights, 4), SPEC, torch.device("cpu"))
    image = torch.ones(1, 3, 8, 12)
    fractions, positive = perturbation_curve(model, image, weights, 0, positive=True, steps=2)
    _, negative = perturbation_curve(model, image, weights, 0, positive=False, steps=2)
    assert fractions.tolist() == [0.0, 0.5, 1.0]
    # Class 0's logit starts at 3 + 0 + 1 + 0.5 + 2 + 0 = 6.5. Strongest first, half the
    # patches (3, 2 and 1) leave 0.5; weakest first, the three weakest (0, 0 and 0.5) leave 6.0;
    # with every patch gone it is 0. The other two logits stay 0: p = e^x / (e^x + 2).
    p = lambda x: np.exp(x) / (np.exp(x) + 2)  # noqa: E731
    np.testing.assert_allclose(positive, [p(6.5), p(0.5), p(0.0)], rtol=1e-6)
    np.testing.assert_allclose(negative, [p(6.5), p(6.0), p(0.0)], rtol=1e-6)
    assert area_under(fractions, positive) < area_under(fractions, negative)


def _pictures(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(count)
    ]


def test_faithfulness_of_a_planted_detector(tmp_path: Path) -> None:
    """The right map makes the positive curve fall first; the reversed map does the opposite."""
    weights = np.linspace(-1, 1, 64).reshape(8, 8) ** 2  # strongest at the corners
    model = LoadedModel(PatchDetector(weights, 4), SPEC, torch.device("cpu"))
    bright = Image.new("RGB", (32, 32), (255, 255, 255))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    events = list(faithfulness(model, [bright, broken], lambda m, b: weights))
    assert events[:-1] == [
        FaithfulnessProgress(0, 2),
        FaithfulnessProgress(1, 2),
        FaithfulnessProgress(2, 2),
    ]
    result = events[-1]
    assert isinstance(result, FaithfulnessResult) and not result.cancelled
    assert [i.source for i in result.images] == ["image 1"]  # counted from 1
    assert result.skipped[0][0] == str(broken) and "not an image" in result.skipped[0][1]
    (one,) = result.images
    assert one.target == 0 and one.positive.shape == one.negative.shape == (11,)
    assert one.positive[0] == one.negative[0] and one.positive[-1] == one.negative[-1]
    assert np.all(np.diff(one.positive) <= 1e-7) and np.all(np.diff(one.negative) <= 1e-7)
    assert result.positive_auc < result.negative_auc - 0.1
    reversed_map = list(faithfulness(model, [bright], lambda m, b: -weights))[-1]
    assert reversed_map.positive_auc > reversed_map.negative_auc + 0.1


@pytest.mark.slow
def test_faithfulness_of_relevance_on_a_small_vit() -> None:
    model = _small_vit()
    explain = method_explainer("relevance", MethodOptions())
    calls = iter([False, False, True])
    events = list(faithfulness(model, _pictures(3), explain, cancelled=lambda: next(calls)))
    result = events[-1]
    assert events[:-1] == [FaithfulnessProgress(i, 3) for i in range(3)]
    assert result.cancelled and len(result.images) == 2
    for image in result.images:
        assert 0 <= image.positive_auc <= 1 and 0 <= image.negative_auc <= 1
        assert image.positive[0] == pytest.approx(image.negative[0])
    assert result.positive_auc == pytest.approx(np.mean([i.positive_auc for i in result.images]))
    assert result.fractions.tolist() == perturbation_fractions(10).tolist()
