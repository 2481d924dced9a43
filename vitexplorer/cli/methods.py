"""The options of the explanation methods, shared by ``analyze``, ``compare`` and the checks:
--method and each method's settings, read back as a checked ``MethodOptions``."""

from __future__ import annotations

import argparse
from typing import Any

from vitexplorer.cli.common import Failed


def add_method_options(parser: argparse.ArgumentParser, method_help: str | None = None) -> Any:
    """--method (repeatable) and the options of the explanation methods (shared with the checks
    and ``compare``); ``method_help`` replaces --method's help. Returns the group, for a
    command's own method options."""
    from vitexplorer.cli.common import METHODS  # names only: no torch

    methods = parser.add_argument_group("explanation methods")
    methods.add_argument(
        "--method",
        action="append",
        choices=METHODS,
        default=[],
        help=method_help
        or "write this method's map too; repeat for several. attention: the CLS token's "
        "attention in --layer and --head; rollout: attention rollout (Abnar and Zuidema "
        "2020); relevance: class-specific relevance (Chefer et al. 2021) for --target-class",
    )
    methods.add_argument(
        "--layer",
        type=int,
        default=-1,
        metavar="L",
        help="attention: the layer, from 1 (the first) to the number of layers; -1 is the "
        "last, -2 the one before (default: -1)",
    )
    methods.add_argument(
        "--head",
        type=int,
        default=None,
        metavar="H",
        help="attention: the head, from 1 (default: the mean of the heads)",
    )
    methods.add_argument(
        "--head-fusion",
        choices=("mean", "max", "min"),
        default="mean",
        help="rollout: how each layer's heads are combined (default: mean)",
    )
    methods.add_argument(
        "--discard-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="rollout: the share of each row's weakest patch attention set to zero, from 0 to "
        "below 1; the CLS column is never discarded (default: 0)",
    )
    methods.add_argument(
        "--start-layer",
        type=int,
        default=1,
        metavar="L",
        help="rollout: the first layer multiplied in, from 1 (default: 1, every layer)",
    )
    methods.add_argument(
        "--target-class",
        default=None,
        metavar="K",
        help="relevance: the class to explain, an index or a class name (default: the "
        "predicted class)",
    )
    return methods


def method_options(options: argparse.Namespace, spec: Any, methods: list[str]) -> Any:
    """The parsed method options as a checked ``MethodOptions`` for this model, or Failed.

    People give layers and heads from 1 (a negative layer counts from the last); the options
    come back as the code holds them, 0-based, the layer resolved to its place (so a card
    names layer 12, not -1). A number outside the model is refused in one line that states
    the convention and the range."""
    from vitexplorer.core.explain.methods import MethodOptions
    from vitexplorer.core.render.numbering import index_of

    target = options.target_class
    if target is not None:
        target = class_index(target, spec.class_names)
    try:
        layers, heads = spec.num_layers, spec.num_heads
        layer = index_of(options.layer, "--layer", layers, "layer", from_end=True)
        head = options.head
        if head is not None:
            head = index_of(
                head, "--head", heads, "head", hint="leave --head out for the mean of the heads"
            )
        start = index_of(options.start_layer, "--start-layer", layers, "layer")
        chosen = MethodOptions(
            layer=layer,
            head=head,
            head_fusion=options.head_fusion,
            discard_ratio=options.discard_ratio,
            start_layer=start,
            target_class=target,
        )
        for method in methods:
            chosen.check(method, spec)
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
