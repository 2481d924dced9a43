"""The method catalogue: one file per explanation method, each registering its
:class:`~vitexplorer.core.explain.method.Method` (torch-free) with its computation.

The files are found here (:func:`load_all`), so adding a method is adding its file. The
descriptions' types and the registry are in :mod:`vitexplorer.core.explain.method`; the
dispatcher and the explorer's cache in :mod:`vitexplorer.core.explain.maps`.
"""

from __future__ import annotations

import importlib
import pkgutil

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
