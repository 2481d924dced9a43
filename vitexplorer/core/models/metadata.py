"""A vitexplorer checkpoint's metadata, checked before anything is built: every field that
loading reads is of the right type and size, and its config is one its family can build (the
family checks that: :meth:`~vitexplorer.core.models.families.family.Family.check_config`).
Class names and preprocessing recorded in a checkpoint then override a spec's defaults."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torchvision.transforms import InterpolationMode

from vitexplorer.core.io.values import check_whole, show_value
from vitexplorer.core.models.families.registry import implementation, info_for, prefixed_names
from vitexplorer.core.models.spec import MODEL_NAMES, ModelSpec

CHECKPOINT_FORMAT = 1
INTERPOLATIONS: tuple[str, ...] = tuple(mode.value for mode in InterpolationMode)
CROP_MODES = ("center", "squash", "border")  # ModelSpec.crop_mode
_MAX_CLASS_NAME = 1000  # characters
_MAX_CHANNEL_VALUE = 1000.0  # a checkpoint's mean and std, per channel
_MIN_STD = 1e-6


def apply_metadata(spec: ModelSpec, meta: dict[str, Any]) -> ModelSpec:
    """Class names and preprocessing recorded in a checkpoint override the defaults."""
    changes: dict[str, Any] = {}
    names = meta.get("class_names")
    if names and len(names) == spec.num_classes:  # checked: see check_checkpoint_metadata
        changes["class_names"] = tuple(names)
    for key in ("mean", "std"):
        if key in meta:
            changes[key] = tuple(meta[key])
    for key in ("resize_size", "interpolation", "crop_mode"):
        if key in meta:
            changes[key] = meta[key]
    return replace(spec, **changes) if changes else spec


def check_checkpoint_metadata(meta: object) -> dict[str, Any]:
    """``meta``, a checkpoint's JSON metadata, if every field that :func:`load_model` reads is
    sound; else a ValueError of one line. Nothing is built. Keys it does not read (the record
    of a fine-tune run, for one) pass unchecked."""
    if not isinstance(meta, dict):
        raise ValueError(f"it is {show_value(meta)}, not a JSON object")
    if "format" in meta:
        version = check_whole("format", meta["format"], 1, 1_000_000)
        if version > CHECKPOINT_FORMAT:
            raise ValueError(
                f"it is format {version}, newer than this vitexplorer reads "
                f"({CHECKPOINT_FORMAT}); update vitexplorer"
            )
    if "architecture" not in meta:
        raise ValueError("it names no architecture")
    arch = meta["architecture"]
    if not isinstance(arch, str) or info_for(arch) is None:
        raise ValueError(
            f"architecture {quoted(arch)} is unknown; expected one of {', '.join(MODEL_NAMES)} "
            f"or a {prefixed_names()} model"
        )
    if "config" not in meta:
        raise ValueError("it has no config")
    config = meta["config"]
    if not isinstance(config, dict):
        raise ValueError(f"config is {show_value(config)}, not a JSON object")
    try:
        image_size, num_classes = _check_config(arch, config)
    except ValueError as exc:
        raise ValueError(f"config: {exc}") from None
    if "class_names" in meta:
        names = meta["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("class_names must be a list of texts")
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
        if any(len(n) > _MAX_CLASS_NAME for n in names):
            raise ValueError(f"class_names has a name over {_MAX_CLASS_NAME} characters long")
    for key in ("mean", "std"):
        if key in meta:
            _check_channels(key, meta[key], positive=key == "std")
    if "resize_size" in meta:
        check_whole("resize_size", meta["resize_size"], image_size, 2 * image_size)
    if meta.get("crop_mode", "center") not in CROP_MODES:
        raise ValueError(
            f"crop_mode {quoted(meta['crop_mode'])} is not one of {', '.join(CROP_MODES)}"
        )
    if "interpolation" in meta and (
        not isinstance(meta["interpolation"], str) or meta["interpolation"] not in INTERPOLATIONS
    ):
        raise ValueError(
            f"interpolation {quoted(meta['interpolation'])} is not one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    return meta


def _check_config(arch: str, config: dict[str, Any]) -> tuple[int, int]:
    """The image size and class count of a checked ``config`` of ``arch``."""
    info = info_for(arch)
    assert info is not None  # checked by the caller
    return implementation(info).check_config(arch, config)


def check_config_keys(arch: str, config: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """A ValueError naming the first setting of ``config`` that ``arch`` does not have."""
    unknown = [key for key in config if key not in allowed]
    if unknown:
        raise ValueError(
            f"unknown setting {quoted(unknown[0])}; a {arch} config has {', '.join(allowed)}"
        )


def _check_channels(key: str, value: object, positive: bool) -> None:
    """``mean`` or ``std``: three numbers, one per colour channel, of a sane size (images are
    scaled to 0..1 before they are normalised); ``std`` above 0."""
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(-_MAX_CHANNEL_VALUE <= v <= _MAX_CHANNEL_VALUE for v in value)  # NaN fails too
    ):
        raise ValueError(
            f"{key} must be a list of three numbers from -{_MAX_CHANNEL_VALUE:g} to "
            f"{_MAX_CHANNEL_VALUE:g}, one per colour channel"
        )
    if positive and not all(v >= _MIN_STD for v in value):
        raise ValueError(f"{key} must be at least {_MIN_STD:g} for every channel")


def quoted(value: object) -> str:
    """A name from a file for a message: quoted and short when it is a text."""
    if not isinstance(value, str):
        return show_value(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"
