"""The oracle of ``chefer-lrp``: Chefer, Gur and Wolf's relevance propagation (CVPR 2021,
"Transformer Interpretability Beyond Attention Visualization") rebuilt from the published rules
as small per-module relprop classes, acting on the weights of a torchvision or timm ViT.

Written from the equations of their ``modules/layers_ours.py`` and ``baselines/ViT/ViT_LRP.py``
(hila-chefer/Transformer-Explainability), as their code runs them: every layer keeps its
detached input in the forward and propagates relevance with ``torch.autograd.grad`` on a small
local function (``x * d(z)/dx . R/z``, the z-rule), one image at a time (their ``Add`` sums over
the whole tensor, so a batch would mix its images; their rollout reads image 0 only).

- Linear: the alpha-beta rule with alpha=1, beta=0 (``generate_LRP`` passes alpha=1), no bias:
  ``R_in = x+ * (W+^T s) + x- * (W-^T s)`` with ``s = R / (W+ x+ + W- x-)``.
- LayerNorm, GELU, Softmax, Dropout (and the score scale): relevance passes unchanged.
- Add: the z-rule on both inputs, then each branch rescaled so that its sum is its share
  ``|sum a| / (|sum a| + |sum b|)`` of ``sum R``.
- Clone: the relevances of the copies added (through the z-rule).
- The two attention products (einsum): the z-rule on both operands, each halved.
- IndexSelect (the class-token pool): the z-rule, so all relevance lands on token 0.
- Transformer attribution: per block ``mean_heads(clamp(dA * R_A, min=0))`` where R_A is the
  relevance at the softmax output (after the /2) and dA the class score's gradient there; the
  rollout ``(I + Ā_L) ... (I + Ā_start)``; the class token's row over the patches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

EPSILON = 1e-9


def stable_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / (b + 1e-9)`` where ``b`` is not zero, zero where it is (their ``safe_divide``)."""
    den = b + EPSILON
    den = den + (den == 0).to(den.dtype) * EPSILON
    return a / den * (b != 0).to(b.dtype)


class Layer:
    """A layer that keeps its detached inputs, so that relevance can be propagated back."""

    inputs: list[torch.Tensor]

    def keep(self, *tensors: torch.Tensor) -> None:
        self.inputs = [t.detach().requires_grad_(True) for t in tensors]

    def z_rule(self, function: Callable[..., torch.Tensor], relevance: torch.Tensor):
        """``x_i * d f / d x_i . (R / f(x))`` for each kept input."""
        with torch.enable_grad():
            z = function(*self.inputs)
            s = stable_divide(relevance, z)
            grads = torch.autograd.grad(z, self.inputs, s)
        return [x * g for x, g in zip(self.inputs, grads, strict=True)]


class PassThrough(Layer):
    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.function = function

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        return relevance


class Linear(Layer):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.keep(x)
        return F.linear(x, self.weight, self.bias)

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        x = self.inputs[0].detach()
        positive_w, negative_w = self.weight.clamp(min=0), self.weight.clamp(max=0)
        positive_x = x.clamp(min=0).requires_grad_(True)
        negative_x = x.clamp(max=0).requires_grad_(True)
        with torch.enable_grad():
            z1 = F.linear(positive_x, positive_w)
            z2 = F.linear(negative_x, negative_w)
            s = stable_divide(relevance, z1 + z2)
            (g1,) = torch.autograd.grad(z1, positive_x, s)
            (g2,) = torch.autograd.grad(z2, negative_x, s)
        return positive_x.detach() * g1 + negative_x.detach() * g2  # alpha 1, beta 0


class Add(Layer):
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.keep(a, b)
        return a + b

    def relprop(self, relevance: torch.Tensor) -> list[torch.Tensor]:
        a, b = self.z_rule(lambda x, y: x + y, relevance)
        a_sum, b_sum = a.sum(), b.sum()
        total = a_sum.abs() + b_sum.abs()
        a_share = stable_divide(a_sum.abs(), total) * relevance.sum()
        b_share = stable_divide(b_sum.abs(), total) * relevance.sum()
        return [a * stable_divide(a_share, a.sum()), b * stable_divide(b_share, b.sum())]


class Clone(Layer):
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keep(x)
        return x, x

    def relprop(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        x = self.inputs[0]
        with torch.enable_grad():
            copies = [x, x]
            s = [stable_divide(first, x), stable_divide(second, x)]
            (g,) = torch.autograd.grad(copies, x, s)
        return x.detach() * g


class Product(Layer):
    """One of the attention's two einsum products."""

    def __init__(self, equation: str) -> None:
        self.equation = equation

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.keep(a, b)
        return torch.einsum(self.equation, a, b)

    def relprop(self, relevance: torch.Tensor) -> list[torch.Tensor]:
        return self.z_rule(lambda a, b: torch.einsum(self.equation, a, b), relevance)


class SelectToken(Layer):
    """The pool: token 0 (the class token) of (1, tokens, width)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.keep(x)
        return x[:, 0:1]

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        return self.z_rule(lambda x: x[:, 0:1], relevance)[0]


class MeanTokens(Layer):
    """The pool of a model without a class token: the mean of the tokens (the z-rule of an
    average pool, their ``AdaptiveAvgPool2d``'s); not in their ViT, our analogue."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.keep(x)
        return x.mean(dim=1, keepdim=True)

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        return self.z_rule(lambda x: x.mean(dim=1, keepdim=True), relevance)[0]


class Attention:
    def __init__(self, qkv: Linear, proj: Linear, heads: int) -> None:
        self.qkv, self.proj, self.heads = qkv, proj, heads
        self.scores = Product("bhid,bhjd->bhij")
        self.mix = Product("bhij,bhjd->bhid")
        self.attn: torch.Tensor | None = None  # the softmax output, in the graph
        self.attn_cam: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        dots = self.scores(q, k) * d**-0.5
        self.attn = torch.softmax(dots, dim=-1)
        out = self.mix(self.attn, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        relevance = self.proj.relprop(relevance)
        b, n, c = relevance.shape
        relevance = relevance.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        r_attn, r_v = (r / 2 for r in self.mix.relprop(relevance))
        self.attn_cam = r_attn
        r_q, r_k = (r / 2 for r in self.scores.relprop(r_attn))  # softmax: passes unchanged
        stacked = torch.stack([r_q, r_k, r_v])  # (3, b, h, n, d)
        return self.qkv.relprop(stacked.permute(1, 3, 0, 2, 4).reshape(b, n, 3 * c))


class Block:
    def __init__(self, norm1, attention: Attention, norm2, fc1: Linear, act, fc2: Linear) -> None:
        self.norm1, self.norm2 = PassThrough(norm1), PassThrough(norm2)
        self.attn, self.fc1, self.act, self.fc2 = attention, fc1, PassThrough(act), fc2
        self.clone1, self.clone2, self.add1, self.add2 = Clone(), Clone(), Add(), Add()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.clone1(x)
        x = self.add1(x1, self.attn(self.norm1(x2)))
        x1, x2 = self.clone2(x)
        return self.add2(x1, self.fc2(self.act(self.fc1(self.norm2(x2)))))

    def relprop(self, relevance: torch.Tensor) -> torch.Tensor:
        r1, r2 = self.add2.relprop(relevance)
        r2 = self.norm2.relprop(self.fc1.relprop(self.act.relprop(self.fc2.relprop(r2))))
        relevance = self.clone2.relprop(r1, r2)
        r1, r2 = self.add1.relprop(relevance)
        r2 = self.norm1.relprop(self.attn.relprop(r2))
        return self.clone1.relprop(r1, r2)


class Reference:
    """Their ViT_LRP, assembled from a model's embedding, blocks, final norm and head."""

    def __init__(
        self, embed, blocks: list[Block], norm, head: Linear, pooled_norm=None, mean=False
    ) -> None:
        self.embed, self.blocks, self.norm, self.head = embed, blocks, PassThrough(norm), head
        self.pooled_norm = PassThrough(pooled_norm or (lambda x: x))  # timm's fc_norm
        self.pool = MeanTokens() if mean else SelectToken()
        self.mean = mean

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = self.embed(image)
        for block in self.blocks:
            x = block(x)
        return self.head(self.pooled_norm(self.pool(self.norm(x))).squeeze(1))

    def relprop(self, relevance: torch.Tensor) -> None:
        relevance = self.pooled_norm.relprop(self.head.relprop(relevance).unsqueeze(1))
        relevance = self.norm.relprop(self.pool.relprop(relevance))
        for block in reversed(self.blocks):
            relevance = block.relprop(relevance)

    def attribution(self, image: torch.Tensor, target: int | None, start_layer: int):
        """(their ``generate_LRP(method="transformer_attribution")``) the class token's row over
        the patches, (patches,) float64, the target and the logits, for one (1, 3, H, W) image."""
        with torch.enable_grad():
            logits = self(image)
            target = int(logits[0].argmax()) if target is None else target
            one_hot = torch.zeros_like(logits)
            one_hot[0, target] = 1
            grads = torch.autograd.grad(
                (one_hot * logits).sum(), [b.attn.attn for b in self.blocks]
            )
        self.relprop(one_hot)
        tokens = grads[0].shape[-1]
        rollout = None
        for index in range(start_layer, len(self.blocks)):
            cam = self.blocks[index].attn.attn_cam[0]
            layer = (grads[index][0] * cam).clamp(min=0).mean(dim=0) + torch.eye(tokens)
            rollout = layer if rollout is None else layer @ rollout
        assert rollout is not None
        row = rollout.mean(dim=0) if self.mean else rollout[0, 1:]  # no class token: all rows
        return row.detach().double(), target, logits.detach()


def from_torchvision(model) -> Reference:
    """The reference on a torchvision ``VisionTransformer``'s weights."""

    def embed(images: torch.Tensor) -> torch.Tensor:
        x = model._process_input(images)
        x = torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + model.encoder.pos_embedding

    blocks = []
    for layer in model.encoder.layers:
        sa = layer.self_attention
        attention = Attention(
            Linear(sa.in_proj_weight, sa.in_proj_bias),
            Linear(sa.out_proj.weight, sa.out_proj.bias),
            sa.num_heads,
        )
        mlp = layer.mlp
        blocks.append(
            Block(
                layer.ln_1, attention, layer.ln_2, Linear(mlp[0].weight, mlp[0].bias), mlp[1],
                Linear(mlp[3].weight, mlp[3].bias),
            )
        )  # fmt: skip
    head = model.heads.head
    return Reference(embed, blocks, model.encoder.ln, Linear(head.weight, head.bias))


def from_timm(model, embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Reference:
    """The reference on a timm ``VisionTransformer``'s weights (a class token and the token
    pool, or no prefix token and the average pool; no layer scale); ``embed`` the tokens that
    enter the first block, by default timm's own."""

    def own_embed(images: torch.Tensor) -> torch.Tensor:
        return model.norm_pre(model._pos_embed(model.patch_embed(images)))

    blocks = []
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        attention = Attention(
            Linear(attn.qkv.weight, attn.qkv.bias),
            Linear(attn.proj.weight, attn.proj.bias),
            attn.num_heads,
        )
        blocks.append(
            Block(
                block.norm1, attention, block.norm2, Linear(mlp.fc1.weight, mlp.fc1.bias),
                mlp.act, Linear(mlp.fc2.weight, mlp.fc2.bias),
            )
        )  # fmt: skip
    head, mean = model.head, model.global_pool == "avg"
    assert mean or model.global_pool == "token"
    assert not mean or model.num_prefix_tokens == 0
    return Reference(
        embed or own_embed, blocks, model.norm, Linear(head.weight, head.bias), model.fc_norm, mean
    )


def reference_maps(
    reference: Reference, images: torch.Tensor, targets: list[int | None], start_layer: int
) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Image by image: (batch, patches) float64 maps, the targets, the (batch, classes) logits."""
    maps, chosen, logits = [], [], []
    with torch.no_grad():
        for image, target in zip(images, targets, strict=True):
            row, target, logit = reference.attribution(image[None], target, start_layer)
            maps.append(row)
            chosen.append(target)
            logits.append(logit[0])
    return torch.stack(maps), chosen, torch.stack(logits)
