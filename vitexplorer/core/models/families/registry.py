"""The one table of model families (:data:`FAMILIES`) and the ways to find one: by a model's
name (:func:`info_for`, :func:`family_for`) or by a built module (:func:`adapter_for`).

Adding a family is its own file (a class implementing
:class:`~vitexplorer.core.models.families.family.Family`) and one entry here. Nothing here
imports torch; a family's class is imported when one of its models is first asked for, and
only once its library is known to be installed.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, cast

from vitexplorer.core.models import names as model_names
from vitexplorer.core.models.families.family import (
    Asking,
    Family,
    FamilyInfo,
    UnsupportedModel,
)

if TYPE_CHECKING:
    from torch import nn

    from vitexplorer.core.models.families.base import ViTAdapter

TORCHVISION_VITS: dict[str, str] = {
    "vit_b_16": "ViT-B/16",
    "vit_b_32": "ViT-B/32",
    "vit_l_16": "ViT-L/16",
    "vit_l_32": "ViT-L/32",
    "vit_h_14": "ViT-H/14",
}
SMALL_VIT = "small_vit"

FAMILIES: tuple[FamilyInfo, ...] = (
    FamilyInfo(
        "small_vit",
        "vitexplorer.core.models.families.small_vit:SmallViTFamily",
        names=(SMALL_VIT,),
        example=SMALL_VIT,
        pretrained=False,  # its trained weights are checkpoints, which record its shape
    ),
    FamilyInfo(
        "torchvision",
        "vitexplorer.core.models.families.torchvision:TorchvisionFamily",
        names=tuple(TORCHVISION_VITS),
        library="torchvision",
        example="vit_b_16",
        downloads=True,  # ImageNet weights into the torch hub cache
    ),
    FamilyInfo(
        "timm",
        "vitexplorer.core.models.families.timm:TimmFamily",
        prefix="timm",
        library="timm",
        extra="timm",
        example="timm:vit_tiny_patch16_224",
        downloads=True,  # pretrained tags from the Hugging Face hub or timm's URLs
        asking=Asking(
            menu="timm model…",
            title="timm model",
            filter_hint="Type to filter, e.g. deit small",
            names=model_names.timm_vit_names,
            note=model_names.timm_note,
        ),
    ),
    FamilyInfo(
        "hf",
        "vitexplorer.core.models.families.hf:HFFamily",
        prefix="hf",
        library="transformers",
        extra="hf",
        example="hf:google/vit-base-patch16-224",
        asking=Asking(
            menu="Hugging Face model…",
            title="Hugging Face model",
            filter_hint="Filter",
            names=model_names.cached_hf_names,
            note=model_names.hf_note,
            folder_tip="A folder that save_pretrained wrote",
            folder_title="Open a Hugging Face model: the folder that save_pretrained wrote",
        ),
    ),
)
# the families another library builds, by the prefix of their models' names
LIBRARY_FAMILIES: dict[str, FamilyInfo] = {f.prefix: f for f in FAMILIES if f.prefix}
_BY_NAME: dict[str, FamilyInfo] = {name: f for f in FAMILIES for name in f.names}
_LOADED: dict[str, Family] = {}


def library_family(name: str) -> FamilyInfo | None:
    """The family a ``PREFIX:NAME`` model name belongs to, or None for the built-in names."""
    prefix, sep, _ = name.partition(":")
    if not sep or len(prefix) < 2:  # "C:\\models\\x.pth" is a Windows path, not a family
        return None
    return LIBRARY_FAMILIES.get(prefix.lower())


def prefixed_names() -> str:
    """The families that name their models, for messages: "timm: or hf:"."""
    return " or ".join(f"{prefix}:" for prefix in LIBRARY_FAMILIES)


def info_for(name: str) -> FamilyInfo | None:
    """The family of the model name ``name`` (a built-in name or ``PREFIX:NAME``), or None."""
    return _BY_NAME.get(name) or library_family(name)


def family_named(family: str) -> FamilyInfo:
    """The entry of the family called ``family`` ("timm", "small_vit", ...)."""
    return next(f for f in FAMILIES if f.name == family)


def implementation(info: FamilyInfo) -> Family:
    """``info``'s family class (imported once), or a ValueError of one line naming the extra to
    install when its library is missing."""
    if not info.installed:  # asked each time, as the library may go (or a test hide it)
        raise ValueError(info.missing_message())
    if info.name not in _LOADED:
        module, _, name = info.implementation.partition(":")
        _LOADED[info.name] = cast("type[Family]", getattr(importlib.import_module(module), name))()
    return _LOADED[info.name]


def family_for(name: str) -> Family | None:
    """The family that loads the model name ``name``, or None for a name no family knows."""
    info = info_for(name)
    return None if info is None else implementation(info)


_BARE_ADAPTERS: list[type[ViTAdapter]] = []  # modules no family loads by name (vitexplorer.wrap)


def register_adapter(adapter_type: type[ViTAdapter]) -> None:
    """Let :func:`adapter_for` recognise modules that no family of :data:`FAMILIES` loads by name
    (one's own ViT wrapped with ``vitexplorer.wrap``); called by that adapter's module."""
    if adapter_type not in _BARE_ADAPTERS:
        _BARE_ADAPTERS.append(adapter_type)


def adapter_for(module: nn.Module) -> ViTAdapter:
    """The adapter of a bare ``module`` (one that arrives without the LoadedModel that its family
    gave its adapter at load), or :class:`UnsupportedModel` saying what it is. A family whose
    library is not imported cannot have built the module, so it is not asked (asking about a
    torchvision model never imports timm)."""
    candidates = [f for f in FAMILIES if f.library is None or f.library in sys.modules]
    types = [implementation(info).adapter_type for info in candidates] + _BARE_ADAPTERS
    for adapter_type in types:
        if adapter_type.matches(module):
            return adapter_type(module)
    known = ", ".join([f.name for f in candidates] + [a.family for a in _BARE_ADAPTERS])
    raise UnsupportedModel(
        f"a {type(module).__module__}.{type(module).__name__} is not a ViT that vitexplorer "
        f"knows (families: {known})"
    )
