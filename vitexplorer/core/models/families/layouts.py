"""Which family a bare state dict comes from, read off its keys and shapes alone.

A user with only a weights file (no vitexplorer metadata) should hear what the file looks like
and how to open it, not merely that its architecture is unknown. Nothing here builds a model.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from vitexplorer.core.models.spec import PREFIX_NAMES

_SIZES = {192: "tiny", 384: "small", 768: "base", 1024: "large", 1280: "huge"}
_TORCHVISION_SIZES = {768: "b", 1024: "l", 1280: "h"}


@dataclass(frozen=True)
class Layout:
    """What a state dict looks like."""

    family: str  # "timm", "torchvision", "hf", "small_vit"
    width: int
    depth: int
    patch: int
    image_size: int | None  # from the position embeddings, when square
    num_classes: int | None  # None without a classifier
    prefix: tuple[str, ...]  # "cls", "dist", "reg" per prefix token
    suggestion: str  # how to open it

    def describe(self) -> str:
        size = f", {self.image_size} px" if self.image_size else ""
        head = f", {self.num_classes} classes" if self.num_classes else ", no classifier"
        registers = self.prefix.count("reg")
        named = [PREFIX_NAMES[kind] for kind in self.prefix if kind != "reg"]
        named += [f"{registers} register{'s' if registers > 1 else ''}"] if registers else []
        prefix = " + ".join(named) or "no prefix token"
        return (
            f"it looks like a {self.family} ViT (width {self.width}, depth {self.depth}, "
            f"patch {self.patch}{size}{head}, {prefix}); {self.suggestion}"
        )


def recognise_layout(shapes: Mapping[str, tuple[int, ...]]) -> Layout | None:
    """The layout of a state dict given as key -> shape, or None when it matches no family."""
    for recognise in (_timm, _torchvision, _hf, _small_vit):
        found = recognise(shapes)
        if found is not None:
            return found
    return None


def _depth(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    found = {m.group(1) for key in shapes if (m := re.match(pattern, key))}
    return len(found)


def _side(tokens: int, prefix: int) -> int | None:
    side = math.isqrt(max(tokens - prefix, 0))
    return side if side * side == tokens - prefix and side > 0 else None


def _timm(shapes: Mapping[str, tuple[int, ...]]) -> Layout | None:
    proj = shapes.get("patch_embed.proj.weight")
    if proj is None or len(proj) != 4 or "blocks.0.attn.qkv.weight" not in shapes:
        return None
    width, patch = proj[0], proj[2]
    prefix = []
    if "cls_token" in shapes:
        prefix.append("cls")
    if "dist_token" in shapes:
        prefix.append("dist")
    registers = shapes.get("reg_token", (0, 0))[1] if "reg_token" in shapes else 0
    prefix += ["reg"] * registers
    pos = shapes.get("pos_embed")
    # timm keeps the registers out of pos_embed; the class token is in it unless no_embed_class
    side = None
    if pos is not None and len(pos) == 3:
        side = _side(pos[1], len(prefix) - registers) or _side(pos[1], 0)
    image = side * patch if side else None
    head = shapes.get("head.weight")
    classes = head[0] if head is not None and len(head) == 2 else None
    size = _SIZES.get(width, "")
    if "dist_token" in shapes:
        guess = f"deit_{size}_distilled_patch{patch}_{image or 224}"
    elif registers:
        guess = f"vit_{size}_patch{patch}_reg{registers}_dinov2"
    else:
        guess = f"vit_{size}_patch{patch}_{image or 224}"
    depth = _depth(shapes, r"blocks\.(\d+)\.")
    hint = (
        f"open it with --model timm:{guess} --weights FILE (or the timm model it came from)"
        if size and _timm_has(guess)
        else "open it with --model timm:NAME --weights FILE, NAME the timm model it came from"
    )
    return Layout("timm", width, depth, patch, image, classes, tuple(prefix), hint)


def _timm_has(name: str) -> bool:
    """Whether timm (when installed) has a model of that name: no made-up name is suggested."""
    if importlib.util.find_spec("timm") is None:
        return False
    import timm

    return bool(timm.is_model(name))


def _torchvision(shapes: Mapping[str, tuple[int, ...]]) -> Layout | None:
    proj = shapes.get("conv_proj.weight")
    pos = shapes.get("encoder.pos_embedding")
    if proj is None or pos is None or len(proj) != 4 or len(pos) != 3:
        return None
    width, patch = proj[0], proj[2]
    side = _side(pos[1], 1)
    head = shapes.get("heads.head.weight")
    letter = _TORCHVISION_SIZES.get(width)
    name = f"vit_{letter}_{patch}" if letter else None
    hint = (
        f"open it as --model {name} --weights FILE"
        if name
        else "torchvision has no ViT of that width by name"
    )
    return Layout(
        "torchvision",
        width,
        _depth(shapes, r"encoder\.layers\.encoder_layer_(\d+)\."),
        patch,
        side * patch if side else None,
        head[0] if head is not None else None,
        ("cls",),
        hint,
    )


def _hf(shapes: Mapping[str, tuple[int, ...]]) -> Layout | None:
    key = next(
        (k for k in shapes if k.endswith("embeddings.patch_embeddings.projection.weight")), None
    )
    if key is None:
        key = next((k for k in shapes if k.endswith("embeddings.patch_embedding.weight")), None)
    if key is None:
        return None
    proj = shapes[key]
    if len(proj) != 4:
        return None
    width, patch = proj[0], proj[2]
    prefix = ["cls"] if any(k.endswith("embeddings.cls_token") for k in shapes) else []
    if any(k.endswith("embeddings.class_embedding") for k in shapes):
        prefix = ["cls"]  # CLIP
    if any(k.endswith("embeddings.distillation_token") for k in shapes):
        prefix.append("dist")
    registers = next(
        (s[1] for k, s in shapes.items() if k.endswith("embeddings.register_tokens")), 0
    )
    prefix += ["reg"] * registers
    depth = _depth(shapes, r".*?(?:encoder\.layers?|\.layers)\.(\d+)\.") or _depth(
        shapes, r".*?layer\.(\d+)\."
    )
    head = next(
        (s for k, s in shapes.items() if k in ("classifier.weight", "cls_classifier.weight")), None
    )
    return Layout(
        "Hugging Face",
        width,
        depth,
        patch,
        None,
        head[0] if head is not None and len(head) == 2 else None,
        tuple(prefix),
        "a Hugging Face model needs its config.json: open the folder that save_pretrained wrote "
        "as --model hf:FOLDER",
    )


def _small_vit(shapes: Mapping[str, tuple[int, ...]]) -> Layout | None:
    proj = shapes.get("patch_embed.weight")
    pos = shapes.get("pos_embed")
    if proj is None or pos is None or len(proj) != 4 or "blocks.0.attn.qkv.weight" not in shapes:
        return None
    side = _side(pos[1], 1)
    head = shapes.get("head.weight")
    return Layout(
        "vitexplorer small",
        proj[0],
        _depth(shapes, r"blocks\.(\d+)\."),
        proj[2],
        side * proj[2] if side else None,
        head[0] if head is not None else None,
        ("cls",),
        "without vitexplorer's metadata its number of heads is unknown: save it from "
        "vitexplorer (File > Save model, or 'vitexplorer finetune') to open it",
    )


def unknown_layout_message(source: str) -> str:
    """What to say about a state dict whose keys match none of the layouts above (opened alone):
    no model name will load it, which layouts can, and that a module of one's own cannot."""
    return f"{source} has no vitexplorer metadata and {NO_LAYOUT}. {loadable_layouts()}"


def misfit_message(source: str, misfit: str, shapes: Mapping[str, tuple[int, ...]]) -> str:
    """A file that does not fit the model named for it; when its keys match no layout at all,
    also that no other name would do, and what would."""
    if recognise_layout(shapes) is not None:
        return f"{source}: {misfit}"
    return (
        f"{source}: {misfit}. Its keys {NO_LAYOUT.removeprefix('its keys ')}. {loadable_layouts()}"
    )


NO_LAYOUT = "its keys match no layout vitexplorer can load, so no --model NAME will load it"


def loadable_layouts() -> str:
    """The state dicts vitexplorer loads, and what it does not."""
    from vitexplorer.core.models.families.registry import TORCHVISION_VITS

    names = "/".join(TORCHVISION_VITS)
    return (
        f"vitexplorer loads the state dicts of torchvision's ViTs (--model {names}), timm's "
        f"VisionTransformer models (--model timm:NAME), Hugging Face ViT, DeiT, DINOv2 and CLIP "
        f"vision models (a save_pretrained folder, --model hf:FOLDER) and its own small ViT "
        f"(--model small_vit, or a checkpoint it saved); a file with other key names needs "
        f"converting to one of those first. A module of your own is not supported: there is no "
        f"API to plug one in (a new family is an adapter file in vitexplorer/core/families)"
    )
