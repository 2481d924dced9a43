"""Chefer, Gur and Wolf's relevance propagation through a ViT (CVPR 2021, "Transformer
Interpretability Beyond Attention Visualization"), the computation of the ``chefer-lrp`` method.

One forward through the model's blocks by their parts (:mod:`vitexplorer.core.models.blocks`)
with an :class:`~vitexplorer.core.models.blocks.Ops` that keeps every operation's inputs and
output (the values are the plain forward's); one backward of the class scores, for the gradients
at each layer's attention (the softmax output); then one relevance pass from the class score back
to the blocks, with their rules (their ``modules/layers_ours.py``, ``baselines/ViT/ViT_LRP.py``):

- the classifier and every linear layer: the alpha-beta rule with alpha=1, beta=0 (what their
  ``generate_LRP`` passes), bias left out: ``R_in = x+ * (W+^T s) + x- * (W-^T s)`` with
  ``s = R / (W+ x+ + W- x-)``;
- norms, activations, the softmax, the score scale and layer scales pass relevance unchanged;
- the residual sum: both inputs by the z-rule, then each rescaled so that it keeps its share
  ``|sum a| / (|sum a| + |sum b|)`` of the relevance (each image's own sums here);
- a token stream read twice (the residual and the norm): the two relevances added;
- ``weights @ v`` and ``q k^T``: the z-rule on both operands, each halved;
- the pooling (the class token, the distillation token's concatenation, an average): the z-rule.

Their map, ``transformer_attribution``: per layer ``Ā = mean_heads(clamp(dA * R_A, min=0))``
where ``R_A`` is the relevance at the attention weights and ``dA`` the class score's gradient
there; ``(I + Ā_L) ... (I + Ā_start)``; the class token's row over the patches. A model without
prefix tokens pools all its tokens: its map is the mean of the rows (as the ``relevance`` method
does). Each image is its own: a batch gives what one image at a time gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from vitexplorer.core.models.blocks import Ops, block_forward, model_block_parts

if TYPE_CHECKING:
    from vitexplorer.core.explain.method import Progress
    from vitexplorer.core.models.loading import LoadedModel

EPSILON = 1e-9  # their safe_divide's stabiliser


def stable_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / (b + 1e-9)``, zero where ``b`` is zero."""
    den = b + EPSILON
    den = den + (den == 0).to(den.dtype) * EPSILON
    return a / den * (b != 0).to(b.dtype)


def linear_rule(x: torch.Tensor, weight: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """The alpha-beta rule (alpha 1, beta 0) of a linear layer ``x W^T``: (..., in)."""
    weight = weight.detach().to(x.dtype)
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    px, nx = x.clamp(min=0), x.clamp(max=0)
    s = stable_divide(relevance, F.linear(px, pw) + F.linear(nx, nw))
    return px * (s @ pw) + nx * (s @ nw)


def residual_rule(
    x: torch.Tensor, branch: torch.Tensor, relevance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The relevance of ``x + branch``'s two inputs, (batch, tokens, width) each: the z-rule,
    then each input rescaled to its share of the image's relevance."""
    s = stable_divide(relevance, x + branch)
    a, b = x * s, branch * s
    dims = tuple(range(1, relevance.ndim))
    a_sum, b_sum, total = a.sum(dims), b.sum(dims), relevance.sum(dims)
    both = a_sum.abs() + b_sum.abs()
    a_share = stable_divide(a_sum.abs(), both) * total
    b_share = stable_divide(b_sum.abs(), both) * total
    shape = (-1,) + (1,) * len(dims)
    return (
        a * stable_divide(a_share, a_sum).reshape(shape),
        b * stable_divide(b_share, b_sum).reshape(shape),
    )


def shared_rule(x: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The relevance of a tensor read twice (their ``Clone``): the two added, through x."""
    return x * (stable_divide(first, x) + stable_divide(second, x))


def product_rule(
    a: torch.Tensor, b: torch.Tensor, relevance: torch.Tensor, transpose_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-rule on both operands of ``a @ b`` (``a @ b^T`` with ``transpose_b``), each
    halved: (batch, heads, n, m) products."""
    bt = b.transpose(-2, -1) if transpose_b else b
    s = stable_divide(relevance, a @ bt)
    ra = a * (s @ bt.transpose(-2, -1))
    rb_t = a.transpose(-2, -1) @ s  # the relevance of bt's entries
    rb = b * (rb_t.transpose(-2, -1) if transpose_b else rb_t)
    return ra / 2, rb / 2


@dataclass
class _Step:
    kind: str  # "norm", "linear", "act", "scores", "softmax", "mix", "layer_scale", "residual"
    inputs: tuple[Any, ...]
    output: torch.Tensor
    role: str = ""


@dataclass
class _Tape(Ops):
    """The plain forward's operations, each kept with its inputs and output, block by block."""

    blocks: list[list[_Step]] = field(default_factory=list)
    head: list[_Step] = field(default_factory=list)
    in_head: bool = False

    def _keep(self, step: _Step) -> torch.Tensor:
        (self.head if self.in_head else self.blocks[-1]).append(step)
        return step.output

    def norm(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("norm", (x,), super().norm(module, x)))

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, role: str = ""
    ) -> torch.Tensor:
        out = super().linear(x, weight, bias, role)
        return self._keep(_Step("linear", (x, weight), out, role))

    def act(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("act", (x,), super().act(fn, x)))

    def scores(
        self, q: torch.Tensor, k: torch.Tensor, scale: float, scale_scores: bool
    ) -> torch.Tensor:
        return self._keep(_Step("scores", (q, k), super().scores(q, k, scale, scale_scores)))

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("softmax", (scores,), super().softmax(scores)))

    def mix(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("mix", (weights, v), super().mix(weights, v)))

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("residual", (x, branch), super().residual(x, branch)))

    def layer_scale(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self._keep(_Step("layer_scale", (x, gamma), super().layer_scale(x, gamma)))


def _one(steps: list[_Step], kind: str, role: str = "") -> list[_Step]:
    return [s for s in steps if s.kind == kind and (not role or s.role == role)]


def _block_relevance(
    steps: list[_Step], relevance: torch.Tensor, stop: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One block's relevance pass from its output's ``relevance``: (the relevance at its input,
    or None with ``stop``; the relevance at its attention weights, (batch, heads, N, N))."""
    first, second = _one(steps, "residual")
    linear = {s.role: s for s in _one(steps, "linear")}
    # the MLP branch: x + ls2(fc2(act(fc1(norm2(x))))); norms, act and layer scale pass
    mid, mlp_branch = second.inputs
    r_mid, r_branch = residual_rule(mid, mlp_branch, relevance)
    fc2, fc1 = linear["fc2"], linear["fc1"]
    r_branch = linear_rule(fc2.inputs[0], fc2.inputs[1], r_branch)
    r_branch = linear_rule(fc1.inputs[0], fc1.inputs[1], r_branch)
    relevance = shared_rule(mid, r_mid, r_branch)
    # the attention branch: x + ls1(out(mix(softmax(scores(q, k)), v)))
    x, attention_branch = first.inputs
    r_in, r_branch = residual_rule(x, attention_branch, relevance)
    out = linear["out"]
    r_mixed = linear_rule(out.inputs[0], out.inputs[1], r_branch)
    (mix,) = _one(steps, "mix")
    weights, v = mix.inputs
    b, heads, n, _ = weights.shape
    r_mixed = r_mixed.reshape(b, n, heads, -1).transpose(1, 2)
    r_weights, r_v = product_rule(weights, v, r_mixed, transpose_b=False)
    if stop:
        return None, r_weights
    (scores,) = _one(steps, "scores")
    q, k = scores.inputs  # (batch, heads, N, d), unscaled: the scale passes relevance
    r_q, r_k = product_rule(q, k, r_weights, transpose_b=True)
    r_h = sum(
        linear_rule(
            linear[role].inputs[0], linear[role].inputs[1], r.transpose(1, 2).reshape(b, n, -1)
        )
        for role, r in (("q", r_q), ("k", r_k), ("v", r_v))
    )
    assert isinstance(r_h, torch.Tensor)
    return shared_rule(x, r_in, r_h), r_weights


def _z_rule(x: torch.Tensor, y: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """The z-rule through whatever maps ``x`` to ``y`` without an operation of the tape (the
    pooling): ``x * dy/dx . (R / y)``, by autograd."""
    share = stable_divide(relevance, y.detach().float()).to(y.dtype)
    (grad,) = torch.autograd.grad(y, x, share, retain_graph=True)
    return x.detach().float() * grad.float()


def _head_relevance(
    steps: list[_Step], tokens: torch.Tensor, features: torch.Tensor, relevance: torch.Tensor
) -> torch.Tensor:
    """From the classifier's input back to the last block's output ``tokens``: the head's
    operations (norms and activations pass; linear layers' rule) and the pooling's z-rule."""
    current = features
    for step in reversed(steps):
        if step.output is not current:
            relevance, current = _z_rule(step.output, current, relevance), step.output
        if step.kind == "linear":
            relevance = linear_rule(step.inputs[0].detach().float(), step.inputs[1], relevance)
        current = step.inputs[0]
    if current is not tokens:
        relevance = _z_rule(tokens, current, relevance)
    return relevance


@dataclass(frozen=True)
class CheferResult:
    """The maps of a batch: the class token's row (or the mean row) over the patches."""

    rows: torch.Tensor  # (batch, tokens) float32: the rollout's row, prefix tokens included
    targets: torch.Tensor  # (batch,) int64
    logits: torch.Tensor  # (batch, classes)


def chefer_rows(
    model: LoadedModel,
    images: torch.Tensor,
    target_class: Any = None,
    start_layer: int = 0,
    progress: Progress | None = None,
) -> CheferResult:
    """Their ``transformer_attribution`` for a (batch, 3, H, W) batch at any input size the
    family's embedding accepts. The model is left as it was (mode, no ``.grad``)."""
    from vitexplorer.core.explain.attribution import class_scores, resolve_targets

    adapter = model.adapter
    head = adapter.get_classifier()
    if head is None:
        raise ValueError(
            f"{model.spec.display_name} has no classifier, so chefer-lrp has no class score "
            f"to explain"
        )
    parts = model_block_parts(adapter)  # refuses a model whose blocks it cannot describe
    if not 0 <= start_layer < len(parts):
        raise ValueError(f"start layer {start_layer + 1} is outside 1..{len(parts)}")
    module = model.module
    was_training = module.training
    module.eval()
    tape = _Tape()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().to(model.device).clone().requires_grad_(True)
            x = tape.embed(adapter, inputs)
            for block in parts:
                tape.blocks.append([])
                x = block_forward(block, x, tape)
            tokens = x
            tape.in_head = True
            features = adapter.explicit_head(tokens, tape)
            tape.in_head = False
            logits = F.linear(features, head.weight, head.bias)
            targets = resolve_targets(logits, target_class)
            if progress is not None:
                progress(1, 3)
            weights = [_one(steps, "softmax")[0].output for steps in tape.blocks]
            gradients = torch.autograd.grad(
                class_scores(logits, targets), weights[start_layer:], retain_graph=True
            )
            if progress is not None:
                progress(2, 3)
            one_hot = torch.zeros(logits.shape, device=logits.device)  # float32 relevance
            one_hot[torch.arange(len(targets)), targets] = 1.0
            relevance = linear_rule(features.detach().float(), head.weight, one_hot)
            relevance = _head_relevance(tape.head, tokens, features, relevance)
    finally:
        module.train(was_training)
    cams: list[torch.Tensor] = []
    with torch.no_grad():
        for index in range(len(parts) - 1, start_layer - 1, -1):
            stop = index == start_layer
            steps = [
                _Step(s.kind, tuple(_detached(t) for t in s.inputs), _detached(s.output), s.role)
                for s in tape.blocks[index]
            ]
            relevance_in, r_weights = _block_relevance(steps, relevance, stop)
            cams.append(r_weights)
            if relevance_in is not None:
                relevance = relevance_in
        cams.reverse()
        n = cams[0].shape[-1]
        eye = torch.eye(n, dtype=cams[0].dtype, device=cams[0].device)
        rollout: torch.Tensor | None = None
        for cam, grad in zip(cams, (g.float() for g in gradients), strict=True):
            layer = (grad * cam).clamp(min=0).mean(dim=1) + eye
            rollout = layer if rollout is None else layer @ rollout
        assert rollout is not None
        rows = rollout[:, 0] if adapter.num_prefix_tokens else rollout.mean(dim=1)
    if progress is not None:
        progress(3, 3)
    return CheferResult(rows.float(), targets.detach(), logits.detach())


def _detached(t: Any) -> Any:
    """A kept tensor out of the graph, in float32 (the rules' 1e-9 vanishes in half precision)."""
    return t.detach().float() if isinstance(t, torch.Tensor) else t
