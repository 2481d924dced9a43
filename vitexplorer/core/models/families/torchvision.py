"""torchvision's ``VisionTransformer`` (``vit_b_16`` ... ``vit_h_14``), by public names only:
its adapter, and how it is loaded (ImageNet weights through torchvision's weights API and the
torch hub cache, random weights, or a weights file)."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchvision.models import VisionTransformer, get_model, get_model_weights

from vitexplorer.core.io.values import check_whole
from vitexplorer.core.models import building
from vitexplorer.core.models.building import (
    BuildPlan,
    check_weights_file,
    class_names_for,
    load_weights_file,
)
from vitexplorer.core.models.checkpoint import WeightsFileError, file_label, read_weights, shapes_of
from vitexplorer.core.models.download import (
    CancelCheck,
    ProgressCallback,
    WeightsDownload,
    WeightsUnavailableError,
    download_weights,
)
from vitexplorer.core.models.families.base import (
    Part,
    ViTAdapter,
    resample_positions,
    reset_module_parameters,
)
from vitexplorer.core.models.families.family import Family, UnsupportedModel
from vitexplorer.core.models.families.layouts import recognise_layout
from vitexplorer.core.models.families.registry import TORCHVISION_VITS, family_named
from vitexplorer.core.models.metadata import apply_metadata, check_config_keys
from vitexplorer.core.models.spec import RANDOM, ModelSpec
from vitexplorer.core.models.vit import MAX_CLASSES, MAX_IMAGE_SIZE, SmallViTConfig, check_grid

if TYPE_CHECKING:
    from vitexplorer.core.models.blocks import BlockParts, Ops


class TorchvisionAdapter(ViTAdapter):
    family = "torchvision"
    module: VisionTransformer

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, VisionTransformer)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.module
        x = m.conv_proj(images)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (batch, patches, width), row-major
        x = torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        # another input size (a rectangle): the position embeddings resized to its grid
        positions = resample_positions(m.encoder.pos_embedding, grid, 1)
        return m.encoder.dropout(x + positions)

    def blocks(self) -> list[nn.Module]:
        return list(self.module.encoder.layers)

    def final_norm(self) -> nn.Module:
        return self.module.encoder.ln

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, 0]
        heads = self.module.heads
        if hasattr(heads, "pre_logits"):  # torchvision's optional representation layer
            x = heads.act(heads.pre_logits(x))
        return x

    def get_classifier(self) -> nn.Linear:
        return self.module.heads.head

    def set_classifier(self, head: nn.Linear) -> None:
        self.module.heads.head = head
        self.module.num_classes = head.out_features

    def attention_modules(self) -> list[nn.Module]:
        found = [layer.self_attention for layer in self.module.encoder.layers]
        for module in found:
            if module.in_proj_weight is None:
                raise ValueError("attention capture needs a packed qkv projection")
        return found

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        from vitexplorer.core.models.capture import explicit_attention

        assert isinstance(attention, nn.MultiheadAttention)

        def forward(query, key, value, *args, **kwargs):
            if not (query is key is value):
                raise RuntimeError("attention capture supports self-attention only")
            x = query if attention.batch_first else query.transpose(0, 1)
            out = explicit_attention(
                x,
                attention.in_proj_weight,
                attention.in_proj_bias,
                attention.out_proj.weight,
                attention.out_proj.bias,
                attention.num_heads,
                sink,
            )
            return (out if attention.batch_first else out.transpose(0, 1)), None

        return forward

    def block_parts(self, block: Any) -> BlockParts:
        """An ``EncoderBlock``: ln_1, the packed projection of its ``MultiheadAttention`` (the
        scale multiplies the queries, as torch's attention does), ln_2, the MLPBlock."""
        from vitexplorer.core.models.blocks import BlockParts, check_norm, linear_of, split_packed

        attention = block.self_attention
        if attention.in_proj_weight is None or attention.bias_k is not None:
            raise UnsupportedModel("its attention has no packed qkv projection")
        if attention.add_zero_attn:
            raise UnsupportedModel("its attention adds a zero key (add_zero_attn)")
        q, k, v = split_packed(attention.in_proj_weight, attention.in_proj_bias)
        mlp = block.mlp
        return BlockParts(
            norm1=check_norm(block.ln_1, "its ln_1"),
            q=q,
            k=k,
            v=v,
            num_heads=attention.num_heads,
            scale=attention.head_dim**-0.5,
            scale_scores=False,
            out=linear_of(attention.out_proj),
            norm2=check_norm(block.ln_2, "its ln_2"),
            fc1=linear_of(mlp[0]),
            act=mlp[1],
            fc2=linear_of(mlp[3]),
        )

    def explicit_head(self, tokens: torch.Tensor, ops: Ops) -> torch.Tensor:
        from vitexplorer.core.models.blocks import linear_of

        x = ops.norm(self.module.encoder.ln, tokens)[:, 0]
        heads = self.module.heads
        if hasattr(heads, "pre_logits"):  # the optional representation layer: Linear, Tanh
            x = ops.act(heads.act, ops.linear(x, *linear_of(heads.pre_logits), role="pre_logits"))
        return x

    def position_embeddings(self) -> torch.Tensor:
        return self.module.encoder.pos_embedding[0]

    def patch_filters(self) -> torch.Tensor:
        return self.module.conv_proj.weight

    def reinitialise(self, part: nn.Module, std: float) -> None:
        reset_module_parameters(part, std, _reset_attention)

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        head: list[Part] = [m.encoder.ln, m.heads]
        embedding: list[Part] = [m.conv_proj, m.class_token, m.encoder.pos_embedding]
        return head, self.blocks(), embedding


def _reset_attention(sub: nn.Module) -> bool:
    """What ``nn.MultiheadAttention`` does to reset itself (its method is private): Xavier for
    the packed projection, zero biases. Its output projection resets itself after it."""
    if not isinstance(sub, nn.MultiheadAttention) or sub.in_proj_weight is None:
        return False
    nn.init.xavier_uniform_(sub.in_proj_weight)
    if sub.in_proj_bias is not None:
        nn.init.constant_(sub.in_proj_bias, 0.0)
        nn.init.constant_(sub.out_proj.bias, 0.0)
    return True


# --- loading: TorchvisionFamily, at the end ----------------------------------------------------
# Weights: "default" (torchvision's ImageNet weights through the torch hub cache, downloaded
# with progress when missing), "none" (random) or a weights file: a vitexplorer checkpoint (its
# metadata decides) or a plain state dict in torchvision's layout.

_CONFIG_KEYS = ("image_size", "num_classes")  # what a torchvision checkpoint's config may set


def file_plan(name: str, shapes: Mapping[str, tuple[int, ...]], path: Path) -> BuildPlan:
    """The plan for the plain state dict (no vitexplorer metadata) in ``path``, given as
    ``name``'s weights: it must be in torchvision's layout."""
    source = file_label(path)
    layout = recognise_layout(shapes)
    if layout is not None and layout.family != "torchvision":
        raise WeightsFileError(f"{source} is not in torchvision's layout; {layout.describe()}")
    return _state_plan(name, shapes, f"file {path.name}", source)


def _state_plan(
    name: str, shapes: Mapping[str, tuple[int, ...]], label: str, source: str
) -> BuildPlan:
    """How to build torchvision's ``name`` for these tensors: the input size is read off the
    position embedding, the class count off the head, both checked before anything is built."""
    image_size, num_classes = get_model_weights(name).DEFAULT.meta["min_size"][0], 1000
    pos, head = shapes.get("encoder.pos_embedding"), shapes.get("heads.head.weight")
    if pos is not None and head is not None and len(pos) == 3 and len(head) == 2:
        patch = patch_size(name)
        positions = pos[1] - 1  # the class token, then one per patch
        side = math.isqrt(max(positions, 0))
        if positions < 1 or side * side != positions:
            raise WeightsFileError(
                f"{source}: its encoder.pos_embedding has {pos[1]} positions, not one plus a "
                f"square grid of patches"
            )
        image_size, num_classes = side * patch, head[0]
        try:
            check_whole(
                "the image size its encoder.pos_embedding implies", image_size, 1, MAX_IMAGE_SIZE
            )
            check_grid(image_size, patch)
            check_whole("the class count of its heads.head.weight", num_classes, 1, MAX_CLASSES)
        except ValueError as exc:
            raise WeightsFileError(f"{source}: {exc}") from None

    def build() -> nn.Module:
        return get_model(name, weights=None, image_size=image_size, num_classes=num_classes)

    return BuildPlan(
        build,
        TORCHVISION_VITS[name],
        lambda module: spec_for(name, module, label),
        from_metadata=False,
    )


def spec_for(
    name: str, module: VisionTransformer, label: str, meta: dict[str, Any] | None = None
) -> ModelSpec:
    """The spec of a torchvision ViT; preprocessing follows its default weights' transforms."""
    default = get_model_weights(name).DEFAULT
    preset = default.transforms()
    image_size = module.image_size
    num_classes = module.heads.head.out_features
    spec = ModelSpec(
        name=name,
        display_name=TORCHVISION_VITS[name],
        weights=label,
        image_size=image_size,
        resize_size=preset.resize_size[0] if preset.crop_size[0] == image_size else image_size,
        patch_size=module.patch_size,
        num_layers=len(module.encoder.layers),
        num_heads=module.encoder.layers[0].num_heads,
        class_names=class_names_for(num_classes, default.meta["categories"]),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
        config={"image_size": image_size, "num_classes": num_classes},
    )
    return apply_metadata(spec, meta or {})


def patch_size(name: str) -> int:
    """The patch size in a torchvision ViT's name: ``vit_b_16`` has 16 px patches."""
    return int(name.rsplit("_", 1)[1])


def default_weights_download(name: str) -> WeightsDownload:
    """Describe the default ImageNet weights of a torchvision ViT (no network access)."""
    weights = get_model_weights(name).DEFAULT
    filename = os.path.basename(urllib.parse.urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    description = f"{TORCHVISION_VITS[name]} ImageNet-1k weights ({weights.name}"
    description += f", top-1 {acc:.1f}%)" if acc else ")"
    return WeightsDownload(name, weights.url, path, float(weights.meta["_file_size"]), description)


class TorchvisionFamily(Family):
    """torchvision's ViTs by builder name; "default" weights are ImageNet's, downloaded into the
    torch hub cache with progress when missing."""

    info = family_named("torchvision")
    adapter_type = TorchvisionAdapter

    def default_download(self, name: str) -> WeightsDownload:
        """The default weights loading ``name`` would download (see default_weights_download)."""
        return default_weights_download(name)

    def check_source(self, name: str, weights: str) -> None:
        """What :meth:`load` would refuse that can be found out cheaply (a weights file that is
        not a file, or a safetensors file whose tensors do not fit)."""
        if weights not in ("default", "none"):
            check_weights_file(Path(weights), lambda shapes, path: file_plan(name, shapes, path))

    def load(
        self,
        name: str,
        weights: str,
        *,
        allow_download: bool = True,
        progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        shape: SmallViTConfig | None = None,
    ) -> tuple[nn.Module, ModelSpec, Path | None]:
        """torchvision's ``name`` with ``weights``: "default", "none" or a weights file."""
        if weights == "none":
            module = get_model(name, weights=None)  # 224 px: random weights need no 518 px ViT-H
            return module, spec_for(name, module, RANDOM).randomised(), None
        if weights != "default":
            path = Path(weights)
            plan_for = lambda shapes, path: file_plan(name, shapes, path)  # noqa: E731
            return (*load_weights_file(path, plan_for), path)
        download = default_weights_download(name)
        if not download.cached:
            if not allow_download:
                raise WeightsUnavailableError(f"the {download.description} are not downloaded")
            download_weights(download, progress, cancelled)
        try:
            state, _ = read_weights(download.path)
        except WeightsFileError as exc:
            raise WeightsFileError(
                f"the cached {download.description} at {download.path} are damaged ({exc}); "
                f"delete that file and load the model again to download a fresh copy"
            ) from exc
        source = file_label(download.path)
        plan = _state_plan(name, shapes_of(state), download.description, source)
        module, spec = building.build(plan, state, source)
        return module, spec, download.path

    def check_config(self, arch: str, config: dict[str, Any]) -> tuple[int, int]:
        """The image size and class count of a checkpoint's ``config`` for ``arch``."""
        check_config_keys(arch, config, _CONFIG_KEYS)
        patch = patch_size(arch)
        image_size = check_whole("image_size", config.get("image_size", 224), patch, MAX_IMAGE_SIZE)
        if image_size % patch:
            raise ValueError(
                f"image_size {image_size} is not a multiple of {TORCHVISION_VITS[arch]}'s "
                f"{patch} px patches"
            )
        check_grid(image_size, patch)
        return image_size, check_whole(
            "num_classes", config.get("num_classes", 1000), 1, MAX_CLASSES
        )

    def checkpoint_plan(self, arch: str, meta: dict[str, Any], label: str) -> BuildPlan:
        """An untrained ``arch`` shaped by a vitexplorer checkpoint's checked metadata."""
        kwargs = {key: meta["config"][key] for key in _CONFIG_KEYS if key in meta["config"]}
        return BuildPlan(
            lambda: get_model(arch, weights=None, **kwargs),
            TORCHVISION_VITS[arch],
            lambda module: spec_for(arch, module, label, meta),
            True,
        )
