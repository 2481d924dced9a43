"""Every explanation method's cost beside its reference implementation's, in the same run.

The model: torchvision ViT-B/16 with random weights and a random head (torchvision zeroes the
head, which would make every gradient zero), on the CPU, ``--batch`` images of 224 px (``--size``
another size: a tiny torchvision ViT of 8 px patches, 2 layers and 12 heads, for smoke runs).
The unit is the plain forward's time per image (``module(images)`` under inference mode, the same
batch). Each method's time per image is printed in forward passes: ours
(:func:`vitexplorer.core.explain.maps.attribute` for a method that explains a class score over a
batch, :func:`~vitexplorer.core.explain.maps.explanation_map` image by image for the others) and
the reference's, called with the same settings (printed) and handed the classes ours explains
(each image's predicted class, found outside the reference's timing: that favours the
reference by the one forward ours spends on it):

- integrated-gradients: captum ``IntegratedGradients`` (Gauss-Legendre, the same black baseline,
  ``internal_batch_size`` our points per pass);
- smoothgrad: captum ``NoiseTunnel(Saliency)`` (``nt_samples_batch_size`` our points per pass,
  its own noise of the same standard deviation);
- occlusion: captum ``Occlusion``, a patch-sized window and stride, the black fill,
  ``perturbations_per_eval`` 16 (as the test's oracle; captum's default is 1);
- gradcam: pytorch-grad-cam's ``GradCAM`` on the last block's ``ln_1`` with the ViT
  ``reshape_transform`` of its tutorial (the object made in each call, as a script does);
- attnlrp: lxt's ViT example (lxt's patches of torchvision and zennit, zennit's Gamma rules,
  one image at a time), the patches entered and undone within each call so that ours runs on
  plain torch; the copy of the model lxt works on is made once, outside the timing;
- chefer-lrp: Chefer's rules rebuilt in ``tests/core/chefer_reference.py`` (imported from the
  tests package; built once from the model outside the timing);
- cp-lrp: the forward written out with the attention and the LayerNorm's deviation detached, then
  plain autograd (``tests/core/test_cp_lrp.py``, imported from the tests package);
- legrad: the paper's equations written out (``tests/core/test_legrad.py``, imported from the
  tests package: one autograd.grad a layer; it finds the predicted class in its own forward).

attention, rollout, relevance and grad-attention have no packaged reference (none published as a
package; their tests' oracles are not speed references): ours alone is printed.

Each repetition runs ours and the reference back to back as a pair, their order alternating, and
the plain forward beside them; the ratio ours/reference is printed per repetition with its
minimum, median and maximum. The load average (1 minute) is read before and after each method: a
method whose load before exceeds ``--max-load``, or after exceeds ``--max-load`` plus the torch
threads this run itself keeps busy, is refused (its figures would not mean anything), as is the
whole run when the load does not fall under ``--max-load`` within ``--wait`` seconds at the start
(each method waits as long for it too before it starts).

    python benchmarks/method_cost.py [--methods ...] [--runs 3] [--warmup 1] [--batch 1]
                                     [--size 224] [--max-load 2.5] [--wait 600]
                                     [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the references rebuilt in the tests package
    sys.path.insert(0, str(ROOT))

from vitexplorer.core.explain.attribution import Attributor  # noqa: E402
from vitexplorer.core.explain.maps import attribute, explanation_map  # noqa: E402
from vitexplorer.core.explain.method import MethodOptions, catalogue, get  # noqa: E402
from vitexplorer.core.models.loading import LoadedModel  # noqa: E402

Call = Callable[[], object]
NO_REFERENCE = "none published as a package; the test's oracle is not a speed reference"
OCCLUSION_PER_EVAL = 16


def build_model(size: int) -> LoadedModel:
    """ViT-B/16 at 224 px, else a tiny torchvision ViT (8 px patches, 2 layers, 12 heads);
    random weights, a random head."""
    from torchvision.models import vit_b_16
    from torchvision.models.vision_transformer import VisionTransformer

    from vitexplorer.core.models.families.torchvision import spec_for

    torch.manual_seed(0)
    if size == 224:
        module = vit_b_16(weights=None)
    else:
        module = VisionTransformer(
            image_size=size, patch_size=8, num_layers=2, num_heads=12, hidden_dim=48,
            mlp_dim=96, num_classes=10,
        )  # fmt: skip
    nn.init.normal_(module.heads.head.weight, std=0.02)
    nn.init.normal_(module.heads.head.bias, std=0.02)
    module.eval()
    return LoadedModel(module, spec_for("vit_b_16", module, "random"), torch.device("cpu"))


def ours(method: str, model: LoadedModel, images: torch.Tensor, options: MethodOptions) -> Call:
    if isinstance(get(method).computation, Attributor):
        return lambda: attribute(method, model, images, options)

    def one_by_one() -> object:
        return [
            explanation_map(method, options, model=model, batch=images[i : i + 1])
            for i in range(len(images))
        ]

    return one_by_one


def black(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(model.spec.mean), torch.tensor(model.spec.std)
    return ((0 - mean) / std).view(1, 3, 1, 1).expand_as(images).contiguous()


def reference(
    method: str, model: LoadedModel, images: torch.Tensor, options: MethodOptions, targets
) -> tuple[Call, str] | None:
    """The reference's call for ``method`` and its settings in words; None when it has none."""
    module = model.module
    target = torch.as_tensor(np.asarray(targets))
    from vitexplorer.core.explain.gradient_sums import points_per_pass

    per_pass = points_per_pass(model, model.spec.grid)
    if method == "integrated-gradients":
        from captum.attr import IntegratedGradients

        start = black(model, images)

        def ig() -> object:
            return IntegratedGradients(module).attribute(
                images, baselines=start, target=target, n_steps=options.path_steps,
                method="gausslegendre", internal_batch_size=per_pass,
            )  # fmt: skip

        return ig, f"captum, {options.path_steps} steps, black baseline, {per_pass} a pass"
    if method == "smoothgrad":
        from captum.attr import NoiseTunnel, Saliency

        span = (images.amax() - images.amin()).item()

        def sg() -> object:
            return NoiseTunnel(Saliency(module)).attribute(
                images, nt_type="smoothgrad", nt_samples=options.samples,
                nt_samples_batch_size=per_pass, stdevs=options.noise * span, target=target,
            )  # fmt: skip

        return sg, f"captum, {options.samples} samples, noise {options.noise}, {per_pass} a pass"
    if method == "occlusion":
        from captum.attr import Occlusion

        patch = model.spec.patch_size
        fill = black(model, images)

        def occlude() -> object:
            with torch.no_grad():
                return Occlusion(module).attribute(
                    images, sliding_window_shapes=(3, patch, patch), strides=(3, patch, patch),
                    baselines=fill, target=target, perturbations_per_eval=OCCLUSION_PER_EVAL,
                )  # fmt: skip

        return occlude, f"captum, {patch} px window and stride, black, {OCCLUSION_PER_EVAL}/eval"
    if method == "gradcam":
        return gradcam_reference(model, images, targets), "pytorch-grad-cam, last block's ln_1"
    if method == "attnlrp":
        return attnlrp_reference(model, images, options, targets), (
            f"lxt + zennit, gamma {options.gamma}, conv gamma {options.conv_gamma}, by image"
        )
    if method == "chefer-lrp":
        from tests.core import chefer_reference

        rebuilt = chefer_reference.from_torchvision(module)
        chosen = [int(t) for t in targets]

        def chefer() -> object:
            return chefer_reference.reference_maps(rebuilt, images, chosen, options.start_layer)

        return chefer, f"tests' chefer_reference, start layer {options.start_layer + 1}, by image"
    if method == "cp-lrp":
        from tests.core.test_cp_lrp import by_hand, torchvision_by_hand

        def cp() -> object:
            return by_hand(torchvision_by_hand, module, images, np.asarray(targets))

        return cp, "tests' forward with hand detaches + autograd"
    if method == "legrad":
        from tests.core.test_legrad import _by_hand, _torchvision_layers

        prefix = model.spec.num_prefix_tokens

        def legrad() -> object:
            return _by_hand(_torchvision_layers, module, images, prefix, options.target_class)

        return legrad, f"tests' equations, start layer {options.start_layer + 1}"
    return None


def gradcam_reference(model: LoadedModel, images: torch.Tensor, targets) -> Call:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module, grid = model.module, model.spec.grid
    prefix = model.spec.num_prefix_tokens
    layer = module.encoder.layers[-1].ln_1

    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:  # the tutorial's
        result = tensor[:, prefix:, :].reshape(tensor.size(0), *grid, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    wanted = [ClassifierOutputTarget(int(t)) for t in targets]

    def cam() -> object:
        made = GradCAM(model=module, target_layers=[layer], reshape_transform=reshape_transform)
        try:
            return made(input_tensor=images, targets=wanted)
        finally:
            made.activations_and_grads.release()
            module.zero_grad(set_to_none=True)

    return cam


def attnlrp_reference(
    model: LoadedModel, images: torch.Tensor, options: MethodOptions, targets
) -> Call:
    import zennit.rules as z_rules
    from zennit.composites import LayerMapComposite

    from tests.core.test_attnlrp import lxt_patches

    copied = copy.deepcopy(model.module).eval()
    for param in copied.parameters():
        param.requires_grad = False

    def lxt() -> object:
        heatmaps = []
        with lxt_patches():
            for image, target in zip(images, targets, strict=True):
                composite = LayerMapComposite(
                    [
                        (nn.Conv2d, z_rules.Gamma(options.conv_gamma)),
                        (nn.Linear, z_rules.Gamma(options.gamma)),
                    ]
                )
                composite.register(copied)
                x = image[None].clone().requires_grad_()
                copied(x)[0, int(target)].backward()
                composite.remove()
                heatmaps.append((x * x.grad).sum(1)[0].detach())
        return heatmaps

    return lxt


def load() -> float:
    return os.getloadavg()[0]


def wait_for_load(limit: float, wait: float) -> float:
    """The load once it is under ``limit``, waiting up to ``wait`` seconds for it."""
    deadline = time.monotonic() + wait
    while (now := load()) > limit and time.monotonic() < deadline:
        print(f"load {now:.2f} > {limit}: waiting", flush=True)
        time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))
    return now


def timed(call: Call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(
    method: str, model: LoadedModel, images: torch.Tensor, args: argparse.Namespace
) -> None:
    options = MethodOptions()
    batch = len(images)
    own = ours(method, model, images, options)
    with torch.no_grad():
        targets = model.module(images).argmax(1).tolist()
    found = reference(method, model, images, options, targets)
    ref, settings = found if found else (None, NO_REFERENCE)

    def forward() -> None:
        with torch.inference_mode():
            model.module(images)

    before = wait_for_load(args.max_load, args.wait)
    for _ in range(args.warmup):
        own()
        if ref is not None:
            ref()
    units, mine, theirs = [], [], []
    for run in range(args.runs):
        units.append(timed(forward) / batch)
        pair = [("ours", own), ("ref", ref)] if run % 2 == 0 else [("ref", ref), ("ours", own)]
        for name, call in pair:
            if call is None:
                continue
            (mine if name == "ours" else theirs).append(timed(call) / batch)
    after = load()
    unit = statistics.median(units)
    busy = args.max_load + torch.get_num_threads()
    loads = f"load {before:.2f} -> {after:.2f}"
    if before > args.max_load or after > busy:
        print(f"{method:<22} refused: {loads} (limits {args.max_load} before, {busy} after)")
        return
    passes = statistics.median(mine) / unit
    head = f"{method:<22} ours {passes:8.1f} passes ({statistics.median(mine):.3f} s/image)"
    if ref is None:
        print(f"{head}  reference -  {loads}  ({settings})", flush=True)
        return
    ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
    reference_passes = statistics.median(theirs) / unit
    print(
        f"{head}  reference {reference_passes:8.1f} passes ({statistics.median(theirs):.3f} "
        f"s/image)  ratio min {min(ratios):.3f} median {statistics.median(ratios):.3f} max "
        f"{max(ratios):.3f}  {loads}"
    )
    listed = " ".join(f"{r:.3f}" for r in ratios)
    print(f"{'':<22} per repetition: {listed}; reference: {settings}", flush=True)


def main() -> None:
    names = [method.name for method in catalogue()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=names, default=names)
    parser.add_argument("--runs", type=int, default=3, help="repetitions (pairs) a method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each first")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="224: ViT-B/16; else a tiny ViT")
    parser.add_argument("--max-load", type=float, default=2.5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the load")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(args.size)
    images = torch.randn(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)
    )
    start = wait_for_load(args.max_load, args.wait)
    if start > args.max_load:
        sys.exit(f"load average {start:.2f} is above --max-load {args.max_load}: not measured")
    threads = torch.get_num_threads()
    print(
        f"{model.spec.display_name if args.size == 224 else 'tiny torchvision ViT'}, "
        f"{args.size} px, batch {args.batch}, CPU, torch {torch.__version__}, {threads} threads, "
        f"{os.cpu_count()} cores; {args.runs} pairs a method after {args.warmup} warm-up; "
        f"default options: {MethodOptions()}"
    )
    print(f"load at start {start:.2f}", flush=True)
    with torch.inference_mode():  # the model's first forwards, untimed
        for _ in range(2):
            model.module(images)
    for method in args.methods:
        measure(method, model, images, args)
    print(f"load at end {load():.2f}")


if __name__ == "__main__":
    main()
