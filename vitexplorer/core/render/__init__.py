"""Pictures without a window: figures, overlays, plots, colour tables, scales and the
way numbers are written for people."""
