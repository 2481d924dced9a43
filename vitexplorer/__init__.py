"""vitexplorer: see inside Vision Transformers.

The Python API (:mod:`vitexplorer.api`) is re-exported here on first use, so ``import
vitexplorer`` stays instant and imports no torch: ``vitexplorer.load_model("demo")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = (
    "METHODS",
    "Analysis",
    "Explanation",
    "Model",
    "Prediction",
    "VitexplorerError",
    "explain",
    "load_model",
    "sample_image",
    "wrap",
)

if TYPE_CHECKING:
    from vitexplorer.api import METHODS as METHODS
    from vitexplorer.api import Analysis as Analysis
    from vitexplorer.api import Explanation as Explanation
    from vitexplorer.api import Model as Model
    from vitexplorer.api import Prediction as Prediction
    from vitexplorer.api import VitexplorerError as VitexplorerError
    from vitexplorer.api import explain as explain
    from vitexplorer.api import load_model as load_model
    from vitexplorer.api import sample_image as sample_image
    from vitexplorer.api import wrap as wrap


def __getattr__(name: str) -> Any:
    """The API's names, imported from :mod:`vitexplorer.api` when first asked for."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module("vitexplorer.api"), name)
    raise AttributeError(f"module 'vitexplorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (what tab completion offers)."""
    return sorted(["__version__", *_API])


__all__ = ["__version__", *_API]
