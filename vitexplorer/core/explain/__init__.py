"""Explanations: the maps a view or a figure shows (attention, rollout, relevance), the
analysis of one image, head statistics, two models side by side, and the method card."""
