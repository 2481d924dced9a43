"""vitexplorer: see inside Vision Transformers."""

__version__ = "0.1.0"
