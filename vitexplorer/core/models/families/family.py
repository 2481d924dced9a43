"""What a model family is, typed: :class:`FamilyInfo` (the facts a person and the app need,
torch-free) and :class:`Family` (how its models are checked, built and loaded).

A family is one class implementing :class:`Family` in its own file here, and one
:class:`FamilyInfo` entry in :data:`vitexplorer.core.models.families.registry.FAMILIES`, the one
table that finds it. The table's facts need no torch, so the model box and ``--help`` read them
before torch loads; the class is imported when a model of the family is first asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from vitexplorer.core.models.building import BuildPlan
    from vitexplorer.core.models.download import CancelCheck, ProgressCallback, WeightsDownload
    from vitexplorer.core.models.families.base import ViTAdapter
    from vitexplorer.core.models.spec import ModelSpec
    from vitexplorer.core.models.vit import SmallViTConfig


class UnsupportedModel(ValueError):
    """A module no adapter knows, or whose attention is not a token-by-token matrix."""


@dataclass(frozen=True)
class Asking:
    """How the app asks a person for a model of a family that names its models (the model box's
    entry opens a list of names to filter, and maybe a folder button)."""

    menu: str  # the model box's entry: "timm model…"
    title: str  # the list's window title
    filter_hint: str  # the filter field's placeholder
    names: Callable[[], list[str]]  # the names to list (imports the library when called)
    note: Callable[[list[str]], str]  # the line above the list, given the names listed
    folder_tip: str | None = None  # a model may also be a folder: the Folder… button's tooltip
    folder_title: str = ""  # the folder dialog's title


@dataclass(frozen=True)
class FamilyInfo:
    """A family's torch-free facts: its names, the library it needs and how a person asks for
    one of its models. ``implementation`` is where its :class:`Family` class is
    (``"module:Class"``, imported on first use)."""

    name: str  # "torchvision", "small_vit", "timm", "hf": its ViTAdapter.family
    implementation: str
    names: tuple[str, ...] = ()  # the model names it answers to without a prefix
    prefix: str | None = None  # "timm" in "timm:vit_tiny_patch16_224": it names models itself
    library: str | None = None  # the module its models need (None: vitexplorer's own)
    extra: str | None = None  # pip install "vitexplorer[EXTRA]" installs that library
    example: str = ""  # a model name, for help texts
    pretrained: bool = True  # whether "default" weights are trained ones (else random)
    downloads: bool = False  # whether its default weights may need a download the app offers
    asking: Asking | None = None  # how a person names one of its models in the app

    @property
    def installed(self) -> bool:
        """Whether its library can be imported here."""
        return self.library is None or importlib.util.find_spec(self.library) is not None

    def missing_message(self) -> str:
        return (
            f"{self.prefix} models need the {self.library} package: "
            f'pip install "vitexplorer[{self.extra}]"'
        )

    def shown(self, name: str) -> str:
        """How the model box shows ``PREFIX:NAME``: ``PREFIX: NAME``, a folder by its last part."""
        prefix, _, rest = name.partition(":")
        folders = self.asking is not None and self.asking.folder_tip is not None
        return f"{prefix}: {rest.rstrip('/').rsplit('/', 1)[-1] if folders else rest}"


@runtime_checkable
class Family(Protocol):
    """How one family's models are refused early, built and loaded. Each family is a class
    implementing this (the type checker holds it to these signatures); the loader
    (:mod:`vitexplorer.core.models.loading`) asks it and knows no family by name."""

    info: ClassVar[FamilyInfo]
    adapter_type: ClassVar[type[ViTAdapter]]  # its modules' adapter

    def adapter(self, module: nn.Module) -> ViTAdapter:
        """The adapter of ``module``, a model this family built: decided once, at load."""
        if not self.adapter_type.matches(module):
            raise UnsupportedModel(
                f"a {type(module).__name__} is not a model of the {self.info.name} family"
            )
        return self.adapter_type(module)

    def check_source(self, name: str, weights: str) -> None:
        """Refuse now, cheaply, what :meth:`load` would refuse later (no weights read)."""
        ...

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
        """``name`` with ``weights`` ("default", "none" or a weights file): the module, its
        spec and the file its parameters came from (None when random). ``shape`` shapes a
        family's random model where a person chooses its shape (the small ViT)."""
        ...

    def check_config(self, arch: str, config: dict[str, Any]) -> tuple[int, int]:
        """The image size and class count of a checkpoint's checked ``config`` for ``arch``."""
        ...

    def checkpoint_plan(self, arch: str, meta: dict[str, Any], label: str) -> BuildPlan:
        """How to build ``arch`` as a vitexplorer checkpoint's checked metadata describes."""
        ...

    def default_download(self, name: str) -> WeightsDownload | None:
        """The default weights that loading ``name`` would download, described offline; None
        for a family without downloads."""
        return None
