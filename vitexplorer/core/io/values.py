"""Values read from untrusted input (a checkpoint's metadata, a config file, a time-lapse's
description), checked and shown in one line: the validators every reader shares.
"""

from __future__ import annotations


def show_value(value: object, limit: int = 40) -> str:
    """``value`` for a one-line message, in JSON's words (null, true, a list), cut short."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int) and value.bit_length() > 128:
        return "a number of over 38 digits"
    text = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    if isinstance(value, str):
        text = f"the text {text}"
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def check_whole(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a bool) from ``low`` to ``high``; else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {show_value(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {show_value(value)}")
    return value
