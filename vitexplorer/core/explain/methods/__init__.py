"""The method catalogue: one file per explanation method, each registering its
:class:`~vitexplorer.core.explain.method.Method` (torch-free) with its computation.

The files are found here (:func:`load_all`), so adding a method is adding its file. The
dispatcher and the explorer's cache are in :mod:`vitexplorer.core.explain.maps`; its names are
also reachable from here (``from vitexplorer.core.explain.methods import explanation_map``),
imported only when used, so that importing the catalogue needs no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

_LOADED = False


def load_all() -> None:
    """Import every method file of this package once (each registers its method)."""
    global _LOADED
    if _LOADED:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


_FROM_MAPS = (
    "explanation_map",
    "method_explainer",
    "model_explainer",
    "hold_target",
    "image_logits",
    "Explainer",
)


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        from vitexplorer.core.explain.method import method_names

        return method_names()
    if name in ("MethodOptions", "check_method"):
        from vitexplorer.core.explain import method

        return getattr(method, name)
    if name in _FROM_MAPS:
        from vitexplorer.core.explain import maps

        return getattr(maps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
