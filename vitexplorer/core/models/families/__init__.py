"""Model families: one file each, behind :class:`~vitexplorer.core.models.families.base.ViTAdapter`.

A family's file holds its adapter (``ADAPTER``) and how its models are loaded (``load``,
``check_source``, ``check_config``, ``checkpoint_plan``, optionally
``default_weights_download``: see :func:`vitexplorer.core.models.loading.family_module_for`).
Adding a family is one new file here, its entry in :data:`FAMILY_MODULES` and, for a family that
another library builds, its name prefix in :data:`vitexplorer.core.models.spec.LIBRARY_FAMILIES`.

:func:`adapter_for` finds the family of a built module. A family whose library is not imported
cannot have built the module, so its file is imported only when its library already is (asking
about a torchvision model never imports timm).
"""

from __future__ import annotations

import importlib
import sys

from torch import nn

from vitexplorer.core.models.families.base import Part, UnsupportedModel, ViTAdapter

__all__ = ["Part", "UnsupportedModel", "ViTAdapter", "adapter_for"]

# (the family's module here, the library it needs imported before it can match anything)
FAMILY_MODULES: tuple[tuple[str, str | None], ...] = (
    ("vitexplorer.core.models.families.small_vit", None),
    ("vitexplorer.core.models.families.torchvision", "torchvision"),
    ("vitexplorer.core.models.families.timm", "timm"),
    ("vitexplorer.core.models.families.hf", "transformers"),
    # one's own module (vitexplorer.wrap): asked only once its file is imported
    ("vitexplorer.core.models.families.custom", "vitexplorer.core.models.families.custom"),
)


def adapters() -> list[type[ViTAdapter]]:
    """The adapter classes of the families whose libraries are loaded, in order."""
    found = []
    for name, library in FAMILY_MODULES:
        if library is not None and library not in sys.modules:
            continue
        found.append(importlib.import_module(name).ADAPTER)
    return found


def adapter_for(module: nn.Module) -> ViTAdapter:
    """The adapter of ``module``'s family, or :class:`UnsupportedModel` saying what it is."""
    for adapter in adapters():
        if adapter.matches(module):
            return adapter(module)
    known = ", ".join(a.family for a in adapters())
    raise UnsupportedModel(
        f"a {type(module).__module__}.{type(module).__name__} is not a ViT that vitexplorer "
        f"knows (families: {known})"
    )
