"""Evaluations of the explanations themselves: the sanity check (cascading randomisation)
and faithfulness (perturbation curves)."""
