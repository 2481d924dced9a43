"""The options of ``train`` and ``finetune`` made from the fields of their configuration
(:mod:`vitexplorer.core.training.config`): flag, help, metavar, choices and default come from
each field's :class:`~vitexplorer.core.training.config.Setting`, and the options read back
into the configuration's fields."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from vitexplorer.cli.common import positive_int
from vitexplorer.core.training.config import Setting, settings_of


def options_of(config: type, order: Sequence[str] = ()) -> dict[str, Setting]:
    """The fields of ``config`` that are command-line options: those named in ``order`` first,
    in that order (the help's), then any other in the field order."""
    described = {name: s for name, s in settings_of(config).items() if s.flag is not None}
    first = {name: described[name] for name in order if name in described}
    return {**first, **{n: s for n, s in described.items() if n not in first}}


def add_config_options(
    groups: dict[str, Any], config: type, order: Sequence[str] = ()
) -> dict[str, Setting]:
    """Add an option for each described field of ``config`` to ``groups`` (argument groups by
    :attr:`Setting.group`); returns the options added, by field."""
    kinds = {f.name: f.type for f in fields(config)}
    defaults = {f.name: f.default for f in fields(config)}
    added = options_of(config, order)
    for name, s in added.items():
        default = s.cli_default if s.cli_default_given else defaults[name]
        extra: dict[str, Any] = {"dest": name, "default": default}
        if s.action is not None:
            extra["action"] = s.action
        elif s.choices and s.closed:
            extra["choices"] = s.values
        else:
            extra["type"] = _parser_type(kinds[name], s)
        if s.metavar is not None:
            extra["metavar"] = s.metavar
        shown = f" (default: {s.default_text})" if s.default_text is not None else ""
        groups[s.group].add_argument(s.flag, help=(s.help + shown).strip(), **extra)
    return added


def _parser_type(kind: str | type, s: Setting) -> Any:
    """How the parser reads a value of the field type ``kind`` (its annotation, a string under
    postponed evaluation): whole numbers of at least 1 are refused there already."""
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "int":
        return positive_int if s.low == 1 else int
    return float if kind == "float" else str


def config_values(options: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of ``config`` the options give (a repeated option's values as a tuple)."""
    values = {name: getattr(options, name) for name in options_of(config)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
