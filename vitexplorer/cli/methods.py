"""The options of the explanation methods, shared by ``analyze``, ``compare`` and the checks:
--method and each method's settings, generated from the method catalogue
(:mod:`vitexplorer.core.explain.method`, torch-free) and read back as a checked
``MethodOptions``."""

from __future__ import annotations

import argparse
from typing import Any

from vitexplorer.cli.common import PROG, Failed

_TYPES = {"layer": int, "head": int, "token": int, "ratio": float, "count": int, "real": float}


def method_help() -> str:
    """--method's help: each method's name and summary, from the catalogue."""
    from vitexplorer.core.explain.method import catalogue

    described = "; ".join(f"{m.name}: {m.summary}" for m in catalogue())
    return (
        f"write this method's map too; repeat for several ('{PROG} methods' lists them with "
        f"their papers and costs). {described}"
    )


def add_method_options(parser: argparse.ArgumentParser, method_help: str | None = None) -> Any:
    """--method (repeatable) and the options of the explanation methods (shared with the checks
    and ``compare``); ``method_help`` replaces --method's help. Returns the group, for a
    command's own method options."""
    from vitexplorer.core.explain.method import OPTIONS, method_names  # descriptions: no torch
    from vitexplorer.core.render.numbering import shown

    methods = parser.add_argument_group("explanation methods")
    methods.add_argument(
        "--method",
        action="append",
        choices=method_names(),
        default=[],
        metavar="M",  # the names are in the help, each with its summary
        help=method_help or globals()["method_help"](),
    )
    for option in OPTIONS:
        if option.flag is None:
            continue
        default = option.default
        if option.counted_from_1 and isinstance(default, int) and not option.from_end:
            default = shown(default)  # people's number: start layer 1
        settings: dict[str, Any] = {"default": default, "help": option.help}
        if option.choices:
            settings["choices"] = option.choices
        else:
            settings["metavar"] = option.metavar
            if option.kind in _TYPES:
                settings["type"] = _TYPES[option.kind]
        methods.add_argument(option.flag, **settings)
    return methods


def method_options(
    options: argparse.Namespace, spec: Any, methods: list[str], model: Any = None
) -> Any:
    """The parsed method options as a checked ``MethodOptions`` for this model, or Failed.
    With the loaded ``model``, a method that cannot run on it (its computation's refusal:
    a part the method needs that the model lacks) is refused here, before any image.

    People give layers and heads from 1 (a negative layer counts from the last); the options
    come back as the code holds them, 0-based, the layer resolved to its place (so a card
    names layer 12, not -1). A number outside the model is refused in one line that states
    the convention and the range."""
    from vitexplorer.core.explain.method import OPTIONS, MethodOptions, get
    from vitexplorer.core.render.numbering import index_of

    given = {o.name: getattr(options, o.name) for o in OPTIONS if o.flag is not None}
    for option in OPTIONS:
        if option.kind == "class" and given.get(option.name) is not None:
            given[option.name] = class_index(given[option.name], spec.class_names)
    try:
        for option in OPTIONS:
            value = given.get(option.name)
            if value is None or option.flag is None or not option.counted_from_1:
                continue
            if option.kind == "head":
                given[option.name] = index_of(
                    value,
                    option.flag,
                    spec.num_heads,
                    "head",
                    hint=f"leave {option.flag} out for the mean of the heads",
                )
            elif option.kind == "layer":
                given[option.name] = index_of(
                    value, option.flag, spec.num_layers, "layer", from_end=option.from_end
                )
        chosen = MethodOptions(**given)
        for method in methods:
            chosen.check(method, spec)
            reason = get(method).applies(spec, model) if model is not None else None
            if reason:
                raise ValueError(reason)
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc
    return chosen


def class_index(text: str, class_names: tuple[str, ...]) -> int:
    """A class given as an index or as a name (case does not matter)."""
    if text.strip().lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise Failed(
                f"--target-class {index} is outside 0..{len(class_names) - 1} for this model", 2
            )
        return index
    folded = [name.casefold() for name in class_names]
    if text.strip().casefold() in folded:
        return folded.index(text.strip().casefold())
    raise Failed(
        f"--target-class {text!r} is not one of the model's {len(class_names)} class names; "
        f"give its index instead",
        2,
    )
