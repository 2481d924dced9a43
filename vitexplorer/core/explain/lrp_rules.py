"""The rule sets of the LRP methods on the explicit block forward (core/models/blocks.py), all
in the gradient x input form: each rule keeps the forward's values and changes only what the
backward pass computes, so relevance = input x (modified) gradient.

- :class:`ConservativeOps` (CP-LRP, Ali et al., ICML 2022): the attention weights and the
  LayerNorms' standard deviation are constants of the backward pass (detached).
- :class:`AttnLRPOps` (AttnLRP, Achtibat et al., ICML 2024, as ``lxt`` 2.x's efficient mode
  computes it on torchvision's ViT in its ViT example): CP's constants, the identity rule on the
  MLP's activation, and zennit's generalised gamma rule on the MLP's and the classifier's
  linear layers and on the patch convolution.

:func:`rule_gradients` runs the explicit forward with a rule set and returns each image's
gradient of its class score at the input; the model is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from vitexplorer.core.models.blocks import Ops, explicit_forward, patch_embedding

if TYPE_CHECKING:
    from vitexplorer.core.models.families.base import ViTAdapter
    from vitexplorer.core.models.loading import LoadedModel


def layer_norm_detached(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm whose standard deviation is a constant of the backward pass (the identity
    rule on the normalisation, as lxt's ``layer_norm_forward``); an Identity passes through."""
    if isinstance(module, nn.Identity):
        return x
    if not isinstance(module, nn.LayerNorm):
        raise TypeError(f"the rules need a LayerNorm, not a {type(module).__name__}")
    dims = tuple(range(-len(module.normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / (var + module.eps).sqrt().detach()
    if module.weight is not None:
        y = y * module.weight
    if module.bias is not None:
        y = y + module.bias
    return y


class _IdentityRule(torch.autograd.Function):
    """``fn(x)`` forward; backward: the incoming gradient times ``fn(x) / (x + 1e-10)``, so that
    input x gradient = output x incoming gradient (AttnLRP's identity rule, Eq. 9)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        out = fn(x)
        ctx.save_for_backward(out / (x + 1e-10))
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


def _stabilise(x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``x`` moved away from zero by ``epsilon`` with its sign (+ for 0), as zennit does."""
    sign = (x == 0.0).to(x) + x.sign()
    return x + sign * epsilon


def _gamma_relevance(
    x: torch.Tensor,
    out: torch.Tensor,
    grad: torch.Tensor,
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    gamma: float,
) -> torch.Tensor:
    """zennit's generalised gamma rule (``zennit.rules.Gamma``, stabiliser 1e-6) in lxt's
    gradient x input form: the output relevance is ``grad * out``; positive outputs share it
    in proportion to the positive contributions with the positive weights raised by gamma
    (and the negative inputs with the negative weights), negative outputs the opposite way;
    returned as the input's gradient (relevance / the input, stabilised by 1e-10)."""
    relevance = grad * out
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    wp, wn = weight + gamma * weight.clamp(min=0), weight + gamma * weight.clamp(max=0)
    bp = bn = None
    if bias is not None:
        bp, bn = bias + gamma * bias.clamp(min=0), bias + gamma * bias.clamp(max=0)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    with torch.enable_grad():
        inputs = [xp.detach().requires_grad_(), xn.detach().requires_grad_()]
        inputs += [xp.detach().requires_grad_(), xn.detach().requires_grad_()]
        outputs = [
            forward(inputs[0], wp, bp),
            forward(inputs[1], wn, None),
            forward(inputs[2], wn, bn),
            forward(inputs[3], wp, None),
        ]
        positive = relevance * (out > 0.0) / _stabilise(outputs[0] + outputs[1], 1e-6)
        negative = relevance * (out < 0.0) / _stabilise(outputs[2] + outputs[3], 1e-6)
        grads = torch.autograd.grad(outputs, inputs, [positive, positive, negative, negative])
    result = sum(i * g for i, g in zip(inputs, grads, strict=True))
    assert isinstance(result, torch.Tensor)
    return result.detach() / _stabilise(x, 1e-10)


class _GammaLinear(torch.autograd.Function):
    """A linear layer whose backward is the gamma rule's (weights and bias get no gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Any, weight: Any, bias: Any, gamma: float) -> Any:
        out = F.linear(x, weight, bias)
        ctx.save_for_backward(x, out, weight, *(() if bias is None else (bias,)))
        ctx.gamma = gamma
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, out, weight, *bias = ctx.saved_tensors
        b = bias[0] if bias else None
        return _gamma_relevance(x, out, grad, F.linear, weight, b, ctx.gamma), None, None, None


class _GammaConv(torch.autograd.Function):
    """The patch convolution's output, kept as it is; its backward to the images is the gamma
    rule's (applied through a forward hook on the convolution)."""

    @staticmethod
    def forward(ctx: Any, x: Any, out: Any, conv: nn.Conv2d, gamma: float) -> Any:
        ctx.save_for_backward(x, out)
        ctx.conv, ctx.gamma = conv, gamma
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, out = ctx.saved_tensors
        conv: nn.Conv2d = ctx.conv

        def forward(inputs: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Any:
            return conv._conv_forward(inputs, w, b)

        weight = conv.weight.detach()
        bias = None if conv.bias is None else conv.bias.detach()
        return _gamma_relevance(x, out, grad, forward, weight, bias, ctx.gamma), None, None, None


@contextmanager
def _forwards(modules: Sequence[nn.Module], make: Callable[[nn.Module], Any]) -> Iterator[None]:
    """Within the block, each module's forward is ``make(module)``; restored afterwards."""
    saved = [module.__dict__.get("forward") for module in modules]
    for module in modules:
        module.forward = make(module)
    try:
        yield
    finally:
        for module, old in zip(modules, saved, strict=True):
            if old is None:
                del module.forward
            else:
                module.forward = old


class ConservativeOps(Ops):
    """CP-LRP: the attention weights and every LayerNorm's deviation are constants of the
    backward pass (Ali et al., ICML 2022); everything else is the plain gradient."""

    def embed(self, adapter: ViTAdapter, images: torch.Tensor) -> torch.Tensor:
        """The adapter's embedding, a LayerNorm inside it (CLIP's pre-norm) detached too."""
        norms = [m for m in adapter.module.modules() if isinstance(m, nn.LayerNorm)]
        with _forwards(norms, lambda m: lambda x: layer_norm_detached(m, x)):
            return adapter.embed(images)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer_norm_detached(module, x)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=-1).detach()


GAMMA_ROLES = ("fc1", "fc2", "pre_logits", "projection", "head")  # the linear layers with gamma
ATTENTION_ROLES = ("q", "k", "v", "out")  # with gamma too under the attnlrp attention rule


class _DivideGradient(torch.autograd.Function):
    """The identity forward; backward: the gradient divided by ``factor`` (AttnLRP's uniform
    rule on a product of two inputs, Eq. 7, in the gradient x input form)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> Any:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        return grad / ctx.factor, None


class AttnLRPOps(ConservativeOps):
    """AttnLRP as lxt 2.x computes it on torchvision's ViT (its ``vit_torch`` patch map with
    zennit's gamma rules, as in lxt's ``examples/vit_torch.py``): the attention and the
    LayerNorms as in CP-LRP, the identity rule on the MLP's activation, the gamma rule with
    ``gamma`` on the MLP's and the classifier's linear layers and with ``conv_gamma`` on the
    patch convolution. The attention's projections keep the plain gradient (torch's attention
    computes them functionally, so zennit's module rules never reach them).

    With ``attention="attnlrp"`` the attention follows the paper's own rules instead, as lxt
    applies them to transformers' models (its ``wrap_attention_forward``): the softmax rule,
    the uniform rule on q k^T and on weights @ v (their gradients halved), and the gamma rule
    on the q, k, v and output projections (modules there, which zennit's rules reach)."""

    def __init__(self, gamma: float, conv_gamma: float, attention: str = "cp") -> None:
        if attention not in ("cp", "attnlrp"):
            raise ValueError(f"the attention rule is cp or attnlrp, not {attention!r}")
        self.gamma = gamma
        self.conv_gamma = conv_gamma
        self.attention = attention
        self.gamma_roles = GAMMA_ROLES + (ATTENTION_ROLES if attention == "attnlrp" else ())

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """cp: the weights are constants; attnlrp: the softmax's own gradient, which in the
        gradient x input form is AttnLRP's softmax rule (Eq. 13)."""
        if self.attention == "cp":
            return super().softmax(scores)
        return scores.softmax(dim=-1)

    def scores(
        self, q: torch.Tensor, k: torch.Tensor, scale: float, scale_scores: bool
    ) -> torch.Tensor:
        scores = super().scores(q, k, scale, scale_scores)
        return scores if self.attention == "cp" else _DivideGradient.apply(scores, 2.0)

    def mix(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mixed = super().mix(weights, v)
        return mixed if self.attention == "cp" else _DivideGradient.apply(mixed, 2.0)

    def embed(self, adapter: ViTAdapter, images: torch.Tensor) -> torch.Tensor:
        conv = patch_embedding(adapter)

        def hook(module: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> Any:
            return _GammaConv.apply(inputs[0], out, module, self.conv_gamma)

        handle = conv.register_forward_hook(hook)
        try:
            return super().embed(adapter, images)
        finally:
            handle.remove()

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, role: str = ""
    ) -> torch.Tensor:
        if role in self.gamma_roles:
            return _GammaLinear.apply(x, weight, bias, self.gamma)
        return F.linear(x, weight, bias)

    def act(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return _IdentityRule.apply(x, fn)


def rule_gradients(
    model: LoadedModel,
    images: torch.Tensor,
    ops: Ops,
    target_class: int | None | Sequence[int] = None,
    any_size: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits (batch, classes), the targets (batch,) and each image's gradient of its
    target logit at the input (batch, 3, H, W) under the rule set ``ops``, all detached. The
    model is left as it was: its mode restored, no ``.grad`` on a parameter (only the input's
    gradient is asked for), no forward replaced after the call."""
    from vitexplorer.core.explain.attribution import class_scores, resolve_targets

    module = model.module
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().to(model.device).clone().requires_grad_(True)
            logits = explicit_forward(model.adapter, inputs, ops, any_size)
            targets = resolve_targets(logits, target_class)
            (gradient,) = torch.autograd.grad(class_scores(logits, targets), inputs)
    finally:
        module.train(was_training)
    return logits.detach(), targets, gradient.detach()


def refusal(model: LoadedModel, method: str) -> str | None:
    """Why ``method`` cannot run on ``model`` (its blocks are not the pre-norm block the rules
    are written for), in one line; None when it can."""
    from vitexplorer.core.models.blocks import model_block_parts
    from vitexplorer.core.models.families.family import UnsupportedModel

    try:
        model_block_parts(model.adapter)
        patch_embedding(model.adapter)
    except UnsupportedModel as exc:
        return (
            f"{method} needs the parts of a pre-norm ViT's blocks, and {model.spec.display_name} "
            f"cannot give them: {exc}; gradient methods and attention rollout work on it"
        )
    return None


def pixel_attribution(
    model: LoadedModel,
    batch: torch.Tensor,
    ops: Ops,
    method: str,
    target_class: int | None | Sequence[int],
    grid: Sequence[int] | None,
) -> Any:
    """An :class:`~vitexplorer.core.explain.attribution.Attribution` of gradient x input under
    ``ops``: the pixel map is the sum over the colour channels, the grid map its patch sums."""
    import numpy as np

    from vitexplorer.core.explain.attribution import Attribution, grid_of, patch_sums

    reason = refusal(model, method)
    if reason:
        raise ValueError(reason)
    chosen, any_size = grid_of(model, grid)
    _, targets, gradient = rule_gradients(model, batch, ops, target_class, any_size)
    pixels = (batch.to(gradient.device, gradient.dtype) * gradient).sum(dim=1)
    pixels_np = pixels.float().cpu().numpy().astype(np.float32)
    return Attribution(
        maps=patch_sums(pixels_np, chosen),
        targets=targets.cpu().numpy().astype(np.int64),
        pixels=pixels_np,
    )
