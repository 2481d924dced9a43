"""How vitexplorer numbers things for people, in one place.

Everything a person reads or types counts from 1: layers 1..L, heads 1..H, tokens 1..N (token 1
is the first prefix token, CLS in most models, then the patches row by row), patch rows 1..R and
columns 1..C. That holds in the app (labels, titles, tooltips, the status bar, the analytics
tables and plot axes), in the command line's options, in every JSON card and CSV column and in
the PNGs' titles. A negative layer counts from the end (-1 is the last), where the command line
accepts one.

The code holds 0-based indices throughout; the conversion happens only where numbers meet
people, through these functions. Arrays written to ``.npy`` files keep numpy's 0-based axes,
and the card beside each says what its axes hold (:func:`attention_axes`, :func:`map_axes`).
"""

from __future__ import annotations

from typing import Any

NUMBERING = (
    "layers, heads, tokens, patch rows and patch columns count from 1 (token 1 is the first "
    "prefix token, CLS in most models, then the patches row by row); .npy arrays keep numpy's "
    "0-based axes: position 0 of a layer axis is layer 1"
)
"""The convention in one sentence, for the cards."""

# the parameters a card writes 1-based (the code holds them 0-based)
NUMBERED_PARAMETERS = ("layer", "head", "token", "start_layer")


def shown(index: int) -> int:
    """The number people read for a 0-based ``index``: ``index + 1``; a negative index counts
    from the end and is shown as it is (-1 is the last)."""
    return int(index) + 1 if index >= 0 else int(index)


def index_of(
    number: int, option: str, count: int, noun: str, from_end: bool = False, hint: str = ""
) -> int:
    """The 0-based index of ``number`` as a person gave it (1..``count``; with ``from_end``
    also -1..-``count``, counting from the last).

    Anything else raises ValueError with one line that states the convention and the valid
    range, e.g. "--layer 0: layers are numbered from 1; this model has layers 1 to 12".
    """
    if 1 <= number <= count:
        return number - 1
    if from_end and -count <= number <= -1:
        return count + number
    plural = f"{noun}s"
    message = f"{option} {number}: {plural} are numbered from 1; this model has "
    message += f"{plural} 1 to {count}" if count > 1 else f"one {noun}, {noun} 1"
    if from_end:
        message += " (-1 is the last)"
    raise ValueError(message + (f"; {hint}" if hint else ""))


def patch_label(row: int, col: int) -> str:
    """A patch at 0-based (``row``, ``col``) as people read it: "patch row 1, col 1"."""
    return f"patch row {row + 1}, col {col + 1}"


def card_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A method's parameters as the code holds them (0-based), as a card writes them: layer,
    head, token and start layer from 1; ``None`` (the mean of the heads) stays ``None``."""
    written = dict(parameters)
    for key in NUMBERED_PARAMETERS:
        value = written.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            written[key] = shown(value)
    return written


def attention_axes(layers: int, heads: int, tokens: int, prefix: int = 1) -> list[str]:
    """What each axis of a (layers, heads, tokens, tokens) attention array holds."""
    order = (
        f"tokens 1 to {prefix} are the prefix tokens, then the patches row by row"
        if prefix
        else "the patches row by row"
    )
    return [
        f"axis 0: layers 1..{layers}",
        f"axis 1: heads 1..{heads}",
        f"axis 2: query tokens 1..{tokens} ({order})",
        f"axis 3: key tokens 1..{tokens}",
    ]


def map_axes(rows: int, cols: int, leading: str | None = None) -> list[str]:
    """What each axis of a (rows, cols) map over the patch grid holds; ``leading`` names an
    axis before them (e.g. the sanity check's steps)."""
    axes = [leading] if leading else []
    return [
        f"axis {i}: {text}"
        for i, text in enumerate([*axes, f"patch rows 1..{rows}", f"patch columns 1..{cols}"])
    ]
