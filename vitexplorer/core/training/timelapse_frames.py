"""A time-lapse's frames and the maps they show, asked of the method catalogue.

A :class:`Frame` keeps, for every probe, the CLS token's attention row over the patches in every
layer and head: the part of an analysis's attention that a map of the CLS token reads. A method
whose map needs more than those rows (the rollout multiplies every layer's whole matrix) is
kept whole instead, in a field named after the method whose metadata says how it was made (with
the catalogue's default options): those are the *recorded* maps.

The methods a time-lapse shows are the catalogue's that read only the stored attention
(``needs_model`` False), the recorded ones first: a recorded map is read back as it was kept;
any other is computed per frame by the one dispatcher
(:func:`~vitexplorer.core.explain.maps.stored_map`) from the frame's rows, as from an analysis's
attention. The options chosen in a view (the layer, the head) are free, since every layer and
head is kept; the token is the CLS token; a recorded map has the options it was recorded with.
numpy only (no torch): the window's time-lapse view imports it at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from vitexplorer.core.explain.maps import stored_map
from vitexplorer.core.explain.method import (
    OPTION,
    OPTIONS,
    Method,
    MethodOptions,
    Option,
    catalogue,
    get,
    method_names,
)
from vitexplorer.core.render.numbering import shown
from vitexplorer.core.render.scales import finite_range, uniform_mark
from vitexplorer.core.training.verdict import is_tie, verdict

RECORDED = "recorded"  # a Frame field's metadata: the words for the map it keeps whole
ROLLOUT_METHOD = "rollout of the CLS token: heads averaged, nothing discarded, from layer 1"


@dataclass(frozen=True)
class Frame:
    """One epoch's capture of every probe (P probes, L layers, H heads, G patches)."""

    epoch: int  # 0: before the first step
    predicted: np.ndarray  # (P,) int64
    probability: np.ndarray  # (P,) float32, of the predicted class
    cls_attention: np.ndarray  # (P, L, H, G) float32: the CLS row over the patches
    # (P, G) float32: the rollout's CLS row over the patches, recorded with the default options
    rollout: np.ndarray = field(metadata={RECORDED: ROLLOUT_METHOD})
    distance: np.ndarray  # (P, L, H) mean attention distance, pixels
    entropy: np.ndarray  # (P, L, H) nats
    prefix_share: np.ndarray  # (P, L, H)
    # (P,) float32: the second-highest class probability, to tell a tie (None: a time-lapse
    # saved before it was recorded)
    runner_up: np.ndarray | None = None

    def verdict(self, probe: int, true: int, num_classes: int) -> str:
        """``probe``'s prediction against its ``true`` class: right, wrong, tie or unknown
        (:func:`vitexplorer.core.training.verdict.verdict`; a tie is never right)."""
        return verdict(
            true,
            int(self.predicted[probe]),
            float(self.probability[probe]),
            self._second(probe),
            num_classes,
        )

    def tied(self, probe: int, num_classes: int) -> bool:
        """Whether ``probe``'s top probability is a tie
        (:func:`~vitexplorer.core.training.verdict.is_tie`): the model picked no class."""
        return is_tie(float(self.probability[probe]), self._second(probe), num_classes)

    def _second(self, probe: int) -> float | None:
        return None if self.runner_up is None else float(self.runner_up[probe])


# --- the catalogue's methods in a time-lapse -------------------------------------------------


def recorded_maps() -> dict[str, str]:
    """The catalogue's methods whose CLS map a frame keeps whole (a :class:`Frame` field of the
    method's name), each with the words for how it was made."""
    names = method_names()
    return {
        f.name: f.metadata[RECORDED]
        for f in fields(Frame)
        if RECORDED in f.metadata and f.name in names
    }


def timelapse_methods() -> tuple[Method, ...]:
    """The methods a time-lapse shows: the catalogue's that read only the stored attention,
    the recorded ones first (the first is the default), then in the catalogue's order."""
    recorded = recorded_maps()
    shown_here = [m for m in catalogue() if not m.needs_model]
    return tuple(sorted(shown_here, key=lambda m: m.name not in recorded))


def timelapse_method_names() -> tuple[str, ...]:
    return tuple(m.name for m in timelapse_methods())


def chosen_options() -> tuple[Option, ...]:
    """The options people choose for a time-lapse map: those chosen in a view (every layer and
    head is kept) that a method shown reads and that have a command-line flag."""
    read = {name for method in timelapse_methods() for name in method.options}
    return tuple(o for o in OPTIONS if o.selected and o.flag and o.name in read)


def reads(method: str, option: str) -> bool:
    """Whether ``method`` reads the option named ``option`` (a view enables its widget)."""
    return option in get(method).options


def check_map(method: str, options: MethodOptions) -> None:
    """A ValueError, one line, when a time-lapse cannot show ``method`` with ``options``: a
    method it does not show, a token other than CLS, a recorded map's options changed."""
    names = timelapse_method_names()
    if method not in names:
        raise ValueError(f"unknown time-lapse map {method!r}; use one of {', '.join(names)}")
    if options.token != 0:
        raise ValueError(
            f"a time-lapse keeps the CLS token's maps (token 1) only, not token "
            f"{shown(options.token)}"
        )
    recorded = recorded_maps()
    if method in recorded:
        defaults = MethodOptions()
        for name in get(method).options:
            if getattr(options, name) != getattr(defaults, name):
                raise ValueError(
                    f"a time-lapse keeps the {recorded[method]}; its "
                    f"{OPTION[name].label} cannot be changed"
                )


# --- the time-lapse as a model's analysis ----------------------------------------------------


def timelapse_spec(timelapse: Any, class_names: tuple[str, ...] | None = None) -> Any:
    """A :class:`~vitexplorer.core.models.spec.ModelSpec` of the model a time-lapse was recorded
    with, as far as it says (its grid, patch, prefix tokens, layers, heads and classes)."""
    from vitexplorer.core.models.spec import ModelSpec

    layers, heads = timelapse.frames[0].distance.shape[1:]
    rows, cols = timelapse.grid
    side = max(rows, cols) * timelapse.patch_size
    names = class_names or tuple(f"class {i}" for i in range(timelapse.num_classes))
    return ModelSpec(
        name="timelapse",
        display_name="the model the time-lapse was recorded with",
        weights="",
        image_size=side,
        resize_size=side,
        patch_size=timelapse.patch_size,
        num_layers=int(layers),
        num_heads=int(heads),
        class_names=tuple(names),
        num_prefix_tokens=timelapse.num_prefix,
        grid_shape=(rows, cols),
    )


def kept_attention(frame: Frame, probe: int, num_prefix: int) -> np.ndarray:
    """What ``frame`` keeps of ``probe``'s attention, as an analysis holds it: (layers, heads,
    1, tokens), the CLS token's row in every layer and head; the prefix columns, not kept, NaN."""
    cls = frame.cls_attention[probe]
    rows = np.full((*cls.shape[:2], 1, num_prefix + cls.shape[-1]), np.nan, np.float32)
    rows[:, :, 0, num_prefix:] = cls
    return rows


def frame_map(
    timelapse: Any, index: int, probe: int, method: str, options: MethodOptions, spec: Any = None
) -> np.ndarray:
    """``probe``'s ``method`` map at frame ``index``, (rows, cols) float32: a recorded map as
    kept, any other through the dispatcher from the frame's attention rows. ``spec``: the
    model's (default: :func:`timelapse_spec`)."""
    check_map(method, options)
    frame = timelapse.frames[index]
    if method in recorded_maps():
        values = getattr(frame, method)[probe].reshape(timelapse.grid)
        return np.ascontiguousarray(values, dtype=np.float32)
    spec = timelapse_spec(timelapse) if spec is None else spec
    attention = kept_attention(frame, probe, timelapse.num_prefix)
    return stored_map(method, options, attention, spec)


def epoch_maps(
    timelapse: Any, probe: int, method: str, options: MethodOptions, spec: Any = None
) -> np.ndarray:
    """One probe's ``method`` map at every frame, (F, rows, cols) float32."""
    spec = timelapse_spec(timelapse) if spec is None else spec
    maps = [
        frame_map(timelapse, i, probe, method, options, spec) for i in range(len(timelapse.frames))
    ]
    return np.ascontiguousarray(np.stack(maps), dtype=np.float32)


def probe_maps(
    timelapse: Any, probe: int, method: str, layer: int | None = None, head: int | None = None
) -> np.ndarray:
    """One probe's map at every frame, (F, rows, cols) float32, of a method of the catalogue
    that a time-lapse shows (:func:`timelapse_methods`); ``layer`` and ``head`` 0-based (None:
    the last layer, the mean of the heads), a negative layer counting from the last."""
    options = MethodOptions(layer=-1 if layer is None else layer, head=head)
    return epoch_maps(timelapse, probe, method, options)


def map_words(method: str, options: MethodOptions, spec: Any) -> str:
    """The title of a time-lapse map: a recorded map's words, else the catalogue's title."""
    recorded = recorded_maps()
    if method in recorded:
        return recorded[method]
    return get(method).make_title(options.as_dict(method), spec)


def row_tokens(timelapse: Any) -> int:
    """How many tokens the CLS row (and the rollout's) is a distribution over: the prefix tokens
    and the patches. Uniform attention gives each ``1 / row_tokens``."""
    return int(timelapse.num_prefix + timelapse.grid[0] * timelapse.grid[1])


def uniform_of(method: str, timelapse: Any) -> tuple[float, str] | None:
    """The uniform level (1/N) of ``method``'s map and its words, or None for a map that is no
    distribution (the catalogue's ``distribution``)."""
    return uniform_mark(method, row_tokens(timelapse))


def epoch_levels(maps: np.ndarray) -> tuple[float, float]:
    """One colour scale for a probe's maps at every epoch, (F, rows, cols): their lowest and
    highest finite values, so that a colour means the same value in every frame."""
    return finite_range(maps)
