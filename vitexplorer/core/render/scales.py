"""Tick values and their labels for a colour bar (or any axis) over a range, without Qt.

:func:`tick_labels` is the one place where the numbers beside a colour scale are chosen and
written: ``vitexplorer analyze`` draws its PNGs' colour bars with it, and the app's colour bars
are meant to use it too, so both label a map the same way.
"""

from __future__ import annotations

import math

import numpy as np

NICE_STEPS = (1.0, 2.0, 5.0, 10.0)
"""A tick step is one of these times a power of ten."""

SCIENTIFIC_BELOW = 1e-3
SCIENTIFIC_FROM = 1e5
"""Labels switch to scientific notation when the largest magnitude on the scale is below
``SCIENTIFIC_BELOW`` or at least ``SCIENTIFIC_FROM`` (``2.4e-5``, not ``0.000024``)."""


def is_distribution(method: str) -> bool:
    """Whether every row of ``method``'s maps is a probability distribution over the tokens (a
    softmax row, a mean of them, or a product of row-stochastic matrices), so a uniform level
    exists: the catalogue's ``distribution`` (attention, rollout; relevance is not)."""
    from vitexplorer.core.explain.method import get, method_names

    return method in method_names() and get(method).distribution


def is_signed(method: str) -> bool:
    """Whether ``method``'s maps have a sign that means something (integrated gradients, the
    LRP methods, occlusion: negative is evidence against the class), so they are drawn on a
    diverging colour map with levels symmetric around zero (:func:`symmetric`): the
    catalogue's ``signed``."""
    from vitexplorer.core.explain.method import get, method_names

    return method in method_names() and get(method).signed


def symmetric(levels: tuple[float, float]) -> tuple[float, float]:
    """``levels`` widened to be symmetric around zero: ``(-m, m)``, ``m`` the larger of their
    magnitudes, so that zero takes a diverging table's neutral middle colour and a value and
    its negative are equally strong colours."""
    largest = max(abs(float(levels[0])), abs(float(levels[1])))
    return -largest, largest


def symmetric_range(values: np.ndarray) -> tuple[float, float] | None:
    """The symmetric scale of a signed map: ``(-m, m)``, ``m`` its largest finite magnitude
    (``(0.0, 0.0)`` for a map of zeros); None when no value is finite."""
    low, high = finite_range(values)
    finite = np.isfinite(np.asarray(values, dtype=np.float64))
    return symmetric((low, high)) if finite.any() else None


def uniform_level(tokens: int) -> float:
    """What every token gets from a row spread evenly over ``tokens`` tokens: ``1 / tokens``."""
    if tokens < 1:
        raise ValueError(f"a row over {tokens} tokens has no uniform level")
    return 1.0 / tokens


def uniform_label(tokens: int) -> str:
    """The words beside the uniform level on a colour bar: ``uniform 1/65``."""
    return f"uniform 1/{tokens}"


def uniform_mark(method: str, tokens: int) -> tuple[float, str] | None:
    """The uniform level and its words for a colour bar of ``method``'s map over rows of
    ``tokens`` tokens; None for a map that is no distribution (relevance, a difference)."""
    if not is_distribution(method):
        return None
    return uniform_level(tokens), uniform_label(tokens)


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """The lowest and highest finite value of ``values`` (any shape), as floats; ``(0.0, 0.0)``
    when none is finite. One colour scale for many maps (every frame of a time-lapse, every
    layer) is this range over all of them."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def nice_step(span: float, count: int) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that covers ``span`` in at most
    ``count - 1`` steps (so about ``count`` ticks fall in the span). ``span`` must be > 0."""
    raw = span / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in NICE_STEPS:
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power  # not reached: NICE_STEPS ends at 10


def tick_labels(low: float, high: float, count: int = 5) -> list[tuple[float, str]]:
    """Ticks for a scale from ``low`` to ``high``: ``[(value, label), ...]`` in ascending order.

    The values are the multiples of a "nice" step (1, 2 or 5 times a power of ten, see
    :func:`nice_step`) that lie within ``[low, high]``, about ``count`` of them (at least two
    whenever ``high > low``, and three when ``count`` asks for that many: a span that the
    nice step would cover in two ticks gets the next finer step). Each label carries as many
    digits as the step needs, so no two labels are equal: 0.018 to 0.024 gives ``0.018,
    0.020, 0.022, 0.024``, never ``0.0, 0.0``.
    When the largest magnitude on the scale is below 1e-3 or at least 1e5, the labels are in
    scientific notation with one shared exponent (``1.2e-5, 1.4e-5``; zero there is ``0``).

    ``low == high`` (a constant map) gives one tick at that value, labelled with four
    significant digits; a range that is not finite, or inverted, gives no ticks.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        return []
    if high == low:
        return [(float(low), _single_label(low))]
    step = nice_step(high - low, count)
    values = _multiples(low, high, step)
    for _ in range(3):  # a span that a nice step covers in only two ticks: a finer step
        if len(values) >= min(3, count):
            break
        step = _finer(step)
        values = _multiples(low, high, step)
    if len(values) < 2:  # fewer than two nice values inside (count 1 or 2): label the two ends,
        # to a tenth of the span (they are not round numbers)
        values = [float(low), float(high)]
        return list(zip(values, format_ticks(values, (high - low) / 10), strict=True))
    return list(zip(values, format_ticks(values, step), strict=True))


def _multiples(low: float, high: float, step: float) -> list[float]:
    """The multiples of ``step`` from ``low`` to ``high``, rounded to 12 significant digits
    (0.018, not 0.018000000000000002)."""
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, last + 1)]


def _finer(step: float) -> float:
    """The nice step below ``step``: 5 -> 2 -> 1 -> 0.5 (times the same power of ten)."""
    power = 10.0 ** math.floor(math.log10(step) + 1e-9)
    factor = step / power
    if factor > 2.5:
        return 2.0 * power
    if factor > 1.5:
        return 1.0 * power
    return 0.5 * power


def format_ticks(values: list[float], step: float) -> list[str]:
    """Labels for tick ``values`` spaced by ``step``: enough decimals to tell neighbours apart,
    in scientific notation (one exponent for all) for very small or very large magnitudes."""
    largest = max(abs(v) for v in values)
    digits = max(0, -math.floor(math.log10(step) + 1e-9))  # decimals the step needs
    if largest > 0 and (largest < SCIENTIFIC_BELOW or largest >= SCIENTIFIC_FROM):
        exponent = math.floor(math.log10(largest))
        decimals = max(0, exponent - math.floor(math.log10(step) + 1e-9))
        return [_scientific(v, exponent, decimals, step) for v in values]
    return [_fixed(v, digits, step) for v in values]


def _fixed(value: float, decimals: int, step: float) -> str:
    if abs(value) < step * 1e-6:
        value = 0.0  # never "-0.00"
    return f"{value:.{decimals}f}"


def _scientific(value: float, exponent: int, decimals: int, step: float) -> str:
    if abs(value) < step * 1e-6:
        return "0"
    return f"{value / 10.0**exponent:.{decimals}f}e{exponent}"


def _single_label(value: float) -> str:
    """One value alone on a scale: four significant digits, scientific where that reads
    better."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < SCIENTIFIC_BELOW or magnitude >= SCIENTIFIC_FROM:
        exponent = math.floor(math.log10(magnitude))
        return f"{value / 10.0**exponent:.3f}e{exponent}"
    return f"{value:.{max(0, 3 - math.floor(math.log10(magnitude)))}f}"
