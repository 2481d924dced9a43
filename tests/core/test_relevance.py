"""Class-specific relevance: a hand-worked example, the row shortcut, and a clean capture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import tiny_spec
from vitexplorer.core.explain.relevance import (
    capture_with_gradients,
    relevance_from,
    relevance_map,
    relevance_row,
)
from vitexplorer.core.explain.tokens import token_relevance
from vitexplorer.core.models.capture import Sink, attention_modules, capturing_attention
from vitexplorer.core.models.loading import LoadedModel

KINDS = ["tiny_small_vit", "tiny_torchvision_vit"]


def tiny_loaded(module: nn.Module) -> LoadedModel:
    """The conftest's tiny models (32 px, 8 px patches, 2 layers, 2 heads, 10 classes)."""
    spec = tiny_spec()
    return LoadedModel(module, spec, torch.device("cpu"))


@pytest.fixture(params=KINDS)
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return tiny_loaded(request.getfixturevalue(request.param))


def _image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# Two layers, two heads, three tokens (CLS, patch 1, patch 2). Worked by hand:
#
# layer 0: grad*A, head 0 = [[1,-1,0],[0,1,0],[-.5,0,1]] -> relu [[1,0,0],[0,1,0],[0,0,1]]
#          grad*A, head 1 = [[1,0,0],[0,1,-1],[0,0,-1]]  -> relu [[1,0,0],[0,1,0],[0,0,0]]
#          mean: Ā0 = [[1,0,0],[0,1,0],[0,0,.5]];  R = I + Ā0 @ I = diag(2, 2, 1.5)
# layer 1: grad*A, head 0 = [[1,1,-1],[1,0,0],[0,1,1]]   -> relu [[1,1,0],[1,0,0],[0,1,1]]
#          grad*A, head 1 = [[0,1,1],[0,0,0],[-3,0,0]]   -> relu [[0,1,1],[0,0,0],[0,0,0]]
#          mean: Ā1 = [[.5,1,.5],[.5,0,0],[0,.5,.5]]
#          Ā1 @ R = [[1,2,.75],[1,0,0],[0,1,.75]]
#          R = diag(2,2,1.5) + Ā1 @ R = [[3,2,.75],[1,2,0],[0,1,2.25]]
# The CLS token's map over the two patches: [2, .75].
HAND_ATTENTION = np.array(
    [
        [
            [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]],
            [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]],
        ],
        [
            [[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]],
            [[0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]],
        ],
    ]
)
HAND_GRADIENTS = np.array(
    [
        [
            [[2.0, -2.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 2.0]],
            [[1.0, 0.0, 0.0], [4.0, 2.0, -2.0], [0.0, 0.0, -1.0]],
        ],
        [
            [[2.0, 4.0, -4.0], [1.0, 0.0, 0.0], [0.0, 2.0, 2.0]],
            [[0.0, 2.0, 2.0], [0.0, 0.0, 0.0], [-3.0, 0.0, 0.0]],
        ],
    ]
)
HAND_RELEVANCE = np.array([[3.0, 2.0, 0.75], [1.0, 2.0, 0.0], [0.0, 1.0, 2.25]])


def test_relevance_from_hand_worked_example() -> None:
    np.testing.assert_allclose(relevance_from(HAND_ATTENTION, HAND_GRADIENTS), HAND_RELEVANCE)


def test_relevance_row_equals_the_full_matrix_row() -> None:
    for token in range(3):
        row = relevance_row(HAND_ATTENTION, HAND_GRADIENTS, token)
        np.testing.assert_allclose(row, HAND_RELEVANCE[token])
    rng = np.random.default_rng(0)
    attention, gradients = rng.random((4, 3, 9, 9)), rng.normal(size=(4, 3, 9, 9))
    full = relevance_from(attention, gradients)
    for token in (0, 5):
        np.testing.assert_allclose(relevance_row(attention, gradients, token), full[token])


def test_relevance_from_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="layers, heads, tokens, tokens"):
        relevance_from(HAND_ATTENTION, HAND_GRADIENTS[:1])


def test_capture_keeps_logits_and_leaves_the_model_as_it_was(model: LoadedModel) -> None:
    module = model.module
    frozen = next(module.parameters())
    frozen.requires_grad_(False)  # a partly frozen model keeps its flags
    flags = [p.requires_grad for p in module.parameters()]
    state = {k: v.clone() for k, v in module.state_dict().items()}
    image = _image()
    with torch.inference_mode():
        plain = module(image)[0]
    module.train()  # restored afterwards, though the pass itself runs in eval mode
    logits, attention, gradients = capture_with_gradients(model, image)
    assert module.training
    module.eval()
    assert np.abs(logits - plain.numpy()).max() <= 1e-5
    assert attention.shape == gradients.shape == (2, 2, 17, 17)
    assert np.abs(attention.sum(-1) - 1).max() <= 1e-5
    assert all("forward" not in vars(m) for m in attention_modules(module))
    assert [p.requires_grad for p in module.parameters()] == flags
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())


def test_gradients_follow_the_layers(model: LoadedModel) -> None:
    """Only the CLS token's output of the last layer reaches the head, so the last layer's
    gradient is zero outside the CLS row; the first layer's reaches every row."""
    _, _, gradients = capture_with_gradients(model, _image(), target=3)
    assert np.all(gradients[-1][:, 1:, :] == 0)
    assert np.abs(gradients[-1][:, 0, :]).min() > 0
    assert (np.abs(gradients[0]).max(axis=(0, 2)) > 0).all()


class _NudgedMaps(Sink):
    """A sink that adds ``eps * direction`` to one layer's attention."""

    def __init__(self, layer: int, direction: torch.Tensor, eps: float) -> None:
        self.layer, self.direction, self.eps, self.count = layer, direction, eps, 0

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(scores, dim=-1)
        if self.count == self.layer:
            weights = weights + self.eps * self.direction
        self.count += 1
        return weights


@torch.no_grad()
def _nudged_logit(module: nn.Module, image, layer, direction, eps, target) -> float:
    sink = _NudgedMaps(layer, direction, eps)
    with capturing_attention(module, sink):
        return module(image)[0, target].item()


@pytest.mark.slow
def test_gradients_match_finite_differences(tiny_small_vit: nn.Module) -> None:
    """d logit / d A_l along a random direction, by central differences in float64."""
    module = tiny_small_vit.double()
    model = tiny_loaded(module)
    image = _image().double()
    target = 7
    _, _, gradients = capture_with_gradients(model, image, target)
    direction = torch.randn(1, 2, 17, 17, generator=torch.Generator().manual_seed(2)).double()
    eps = 1e-4
    for layer in range(2):
        up = _nudged_logit(module, image, layer, direction, eps, target)
        down = _nudged_logit(module, image, layer, direction, -eps, target)
        numeric = (up - down) / (2 * eps)
        analytic = float((gradients[layer] * direction[0].numpy()).sum())
        assert numeric == pytest.approx(analytic, rel=1e-3, abs=1e-7)


def test_relevance_map_depends_on_the_class(model: LoadedModel) -> None:
    image = _image()
    predicted = relevance_map(model, image)
    assert predicted.map.shape == (4, 4) and predicted.map.dtype == np.float32
    assert predicted.target == int(np.argmax(predicted.logits))
    other = relevance_map(model, image, target=(predicted.target + 1) % 10)
    assert other.target == (predicted.target + 1) % 10
    np.testing.assert_array_equal(other.logits, predicted.logits)
    assert np.abs(predicted.map - other.map).max() > 1e-3 * np.abs(predicted.map).max()
    assert (predicted.map >= 0).all()  # relu(grad * A) >= 0 and R starts at I


def test_relevance_map_matches_the_full_matrix(model: LoadedModel) -> None:
    image = _image()
    _, attention, gradients = capture_with_gradients(model, image, target=2)
    expected = relevance_from(attention, gradients)[0, 1:].reshape(4, 4)
    np.testing.assert_allclose(relevance_map(model, image, 2).map, expected, rtol=1e-5)


def test_works_inside_inference_mode(model: LoadedModel) -> None:
    with torch.inference_mode():
        image = _image()
        result = relevance_map(model, image, target=0)
    assert np.isfinite(result.map).all() and result.map.max() > 0


def test_bad_inputs_are_refused(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="outside 0..9"):
        relevance_map(model, _image(), target=10)
    with pytest.raises(ValueError, match="one image"):
        relevance_map(model, torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="whole number"):
        relevance_map(model, _image(), target=1.5)  # type: ignore[arg-type]


def test_without_a_class_token_the_row_is_the_mean_of_the_rows() -> None:
    rng = np.random.default_rng(4)
    attention = rng.random((3, 2, 5, 5))
    attention /= attention.sum(-1, keepdims=True)
    gradients = rng.normal(size=attention.shape)
    full = relevance_from(attention, gradients)
    assert np.allclose(relevance_row(attention, gradients, token=None), full.mean(axis=0))
    assert np.allclose(relevance_row(attention, gradients, token=2), full[2])


def _oracle_relevance(vit: nn.Module, image: torch.Tensor, target: int) -> torch.Tensor:
    """Chefer's full R for a torchvision ViT, rebuilt here from its weights: an explicit forward
    (patch embedding, class token, position embedding, each block's pre-norm attention written
    out from ``in_proj_weight``, MLP, final norm, head) whose softmax outputs keep their
    gradients, then R = I and R += mean_heads(relu(grad * A)) @ R per layer."""
    n, heads = vit.hidden_dim, vit.encoder.layers[0].num_heads
    x = vit.conv_proj(image).flatten(2).transpose(1, 2)
    x = torch.cat([vit.class_token.expand(1, -1, -1), x], dim=1) + vit.encoder.pos_embedding
    maps = []
    for block in vit.encoder.layers:
        attn = block.self_attention
        y = block.ln_1(x)
        q, k, v = torch.nn.functional.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
        split = [t.reshape(1, -1, heads, n // heads).transpose(1, 2) for t in (q, k, v)]
        weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / (n // heads) ** 0.5, -1)
        weights.retain_grad()
        maps.append(weights)
        mixed = (weights @ split[2]).transpose(1, 2).reshape(1, -1, n)
        x = x + attn.out_proj(mixed)
        x = x + block.mlp(block.ln_2(x))
    logits = vit.heads(vit.encoder.ln(x)[:, 0])
    logits[0, target].backward()
    relevance = torch.eye(x.shape[1], dtype=torch.float64)
    for weights in maps:
        weighted = (weights.grad * weights).clamp(min=0).mean(dim=1)[0].double()
        relevance = relevance + weighted @ relevance
    return relevance.detach()


@pytest.mark.slow
def test_every_tokens_relevance_is_its_row_of_r(tiny_torchvision_vit: nn.Module) -> None:
    """The explorer shows relevance for the clicked token: row i of R. Checked against R
    rebuilt independently from the model's weights, for the CLS token and three patches."""
    image = _image(3)
    result = relevance_map(tiny_loaded(tiny_torchvision_vit), image, target=4, matrix=True)
    expected = _oracle_relevance(tiny_torchvision_vit, image, 4).numpy()
    assert result.matrix.shape == (17, 17) and result.matrix.dtype == np.float32
    np.testing.assert_allclose(result.matrix, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.map, expected[0, 1:].reshape(4, 4), rtol=1e-4, atol=1e-6)
    for token in (0, 1, 6, 16):
        row = result.token_map(token, (4, 4), 1)
        np.testing.assert_allclose(row, expected[token, 1:].reshape(4, 4), rtol=1e-4, atol=1e-6)
    # the patches' rows differ from the CLS token's: following the token changes the map
    assert np.abs(result.token_map(6, (4, 4), 1) - result.map).max() > 1e-3
    assert relevance_map(tiny_loaded(tiny_torchvision_vit), image, 4).matrix is None


def test_a_tokens_relevance_is_read_from_the_hand_worked_r() -> None:
    np.testing.assert_allclose(token_relevance(HAND_RELEVANCE, 2, (1, 2), 1), [[1.0, 2.25]])
    np.testing.assert_allclose(token_relevance(HAND_RELEVANCE, 1, (1, 2), 1), [[2.0, 0.0]])
    with pytest.raises(ValueError, match="does not fit"):
        token_relevance(HAND_RELEVANCE, 0, (2, 2), 1)
    with pytest.raises(ValueError, match="token 4 does not exist"):
        token_relevance(HAND_RELEVANCE, 3, (1, 2), 1)
