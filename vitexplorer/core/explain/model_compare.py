"""Two models side by side on the same image: the same method, layer, head and token.

Every difference here is **B minus A**: positive where model B's map (or statistic) is higher
than model A's. It is "after minus before" only when B was fine-tuned from A (its checkpoint
names A as its base, :func:`relation`); for two unrelated models it is just B − A. Both maps
are computed by the project's own machinery
(:func:`vitexplorer.core.explain.maps.explanation_map`, the statistics of
:func:`vitexplorer.core.explain.head_stats.head_statistics`); this module only pairs, resamples and
subtracts them.

Two models' maps compare token for token when they have the same patch grid and the same number
of prefix tokens (:func:`comparability`). Otherwise the comparison still runs on what can be
compared: with different grids each map is resampled bilinearly to the image, the pixel size of
model A's display crop (:func:`compare_analyses`); with the same grid but different prefix
tokens the maps, which cover the patches only, still compare patch for patch. A query token is
carried over to model B by what it is, not by its number (:func:`counterpart_token`): a prefix
token (CLS) to the same prefix token, a patch to B's patch at the same place in the image.

No Qt here: the app and ``vitexplorer compare`` draw from these results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitexplorer.core.explain.head_stats import HeadStatistics, average_statistics
from vitexplorer.core.explain.tokens import patch_for_token, token_for_patch
from vitexplorer.core.models.feed import CROP, Feed
from vitexplorer.core.render.numbering import patch_label

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.explain.analysis import ImageAnalysis
    from vitexplorer.core.explain.method import MethodOptions
    from vitexplorer.core.models.loading import LoadedModel
    from vitexplorer.core.models.spec import ModelSpec

DIFFERENCE = "B minus A: model B's map minus model A's"
"""What every difference holds, in one line for cards and titles (see :func:`difference_words`)."""

AFTER_MINUS_BEFORE = "after minus before"  # B was fine-tuned from A
BEFORE_MINUS_AFTER = "before minus after"  # A was fine-tuned from B

# --- which model came first ------------------------------------------------------------------


def base_label(spec: ModelSpec) -> str:
    """How a fine-tune names the model it started from (its checkpoint's ``finetune.base``)."""
    return f"{spec.display_name}, {spec.weights}"


def fine_tuned_from(
    metadata: dict | None,
    base: ModelSpec,
    checkpoint: str | Path | None = None,
    base_file: str | Path | None = None,
) -> bool:
    """Whether a checkpoint's metadata records ``base`` as the model it was fine-tuned from.

    A base read from a file is named only by the file's name, so when both files are known
    the base must be that file beside the ``checkpoint`` (where the app looks for it too): a
    file of the same name elsewhere may hold other weights."""
    record = metadata.get("finetune") if isinstance(metadata, dict) else None
    if not isinstance(record, dict) or record.get("base") != base_label(base):
        return False
    weights = str(base.weights)
    if weights.startswith("file ") and checkpoint is not None and base_file is not None:
        beside = Path(checkpoint).parent / weights.removeprefix("file ")
        return beside.resolve() == Path(base_file).resolve()
    return True


def relation(
    spec_a: ModelSpec,
    metadata_a: dict | None,
    spec_b: ModelSpec,
    metadata_b: dict | None,
    files: tuple[str | Path | None, str | Path | None] = (None, None),
) -> str:
    """What B − A means: :data:`AFTER_MINUS_BEFORE` when B's checkpoint names A as its base,
    :data:`BEFORE_MINUS_AFTER` when A's names B, "" for two models neither of which is the
    other's base (then B − A is said neutrally). ``files`` are A's and B's weights files,
    when known (see :func:`fine_tuned_from`)."""
    file_a, file_b = files
    if fine_tuned_from(metadata_b, spec_a, file_b, file_a):
        return AFTER_MINUS_BEFORE
    if fine_tuned_from(metadata_a, spec_b, file_a, file_b):
        return BEFORE_MINUS_AFTER
    return ""


def difference_words(relation_words: str = "") -> str:
    """:data:`DIFFERENCE`, with which model came first when one is the other's base."""
    if relation_words == AFTER_MINUS_BEFORE:
        return f"{DIFFERENCE}, after minus before: B was fine-tuned from A"
    if relation_words == BEFORE_MINUS_AFTER:
        return f"{DIFFERENCE}, before minus after: A was fine-tuned from B"
    return DIFFERENCE


# --- can the two be compared token for token? ------------------------------------------------


@dataclass(frozen=True)
class Comparability:
    """Whether two models' analyses compare token for token, and if not, why and how."""

    same_grid: bool  # the same patch rows and columns: the maps compare patch for patch
    same_prefix: bool  # the same number of prefix tokens: token numbers mean the same
    message: str  # one line for people; "" when the two compare token for token

    @property
    def token_for_token(self) -> bool:
        return self.same_grid and self.same_prefix


def _grid_words(spec: ModelSpec) -> tuple[str, int]:
    rows, cols = spec.grid
    return f"{rows}x{cols}", spec.num_prefix_tokens


def comparability(spec_a: ModelSpec, spec_b: ModelSpec, feed: Feed = CROP) -> Comparability:
    """Whether model A's and model B's analyses (their specs: an analysis's spec carries the
    grid it was analysed at) compare token for token; when not, a one-line reason that says
    how they are compared instead. With ``feed=WHOLE`` both saw the whole image; otherwise two
    models whose centre crops take different shares of the image are named too, since their
    maps then cover different parts of it."""
    grid_a, prefix_a = _grid_words(spec_a)
    grid_b, prefix_b = _grid_words(spec_b)
    same_grid, same_prefix = spec_a.grid == spec_b.grid, prefix_a == prefix_b
    tokens = "token" if prefix_a == 1 else "tokens"
    start = f"model A has a {grid_a} grid with {prefix_a} prefix {tokens}, model B {grid_b} with"
    if not same_grid:
        message = f"{start} {prefix_b}: the maps are compared resampled to the image (bilinear)"
    elif not same_prefix:
        message = (
            f"{start} {prefix_b}: the maps are compared patch for patch, but token numbers "
            f"differ (the first patch is token {prefix_a + 1} in A, {prefix_b + 1} in B)"
        )
    else:
        message = ""
    crop = "" if feed.whole else _crop_difference(spec_a, spec_b)
    if crop:
        message = f"{message}; {crop}" if message else crop
    return Comparability(same_grid, same_prefix, message)


def _crop_difference(spec_a: ModelSpec, spec_b: ModelSpec) -> str:
    """Why the two centre crops cover different parts of an image, or ""."""
    if spec_a.crop_mode == spec_b.crop_mode and (
        spec_a.image_size * spec_b.resize_size == spec_b.image_size * spec_a.resize_size
    ):
        return ""
    if spec_a.crop_mode == spec_b.crop_mode == "center":
        return (
            f"the two models crop the image differently (A its central {spec_a.image_size} of "
            f"{spec_a.resize_size} px, B {spec_b.image_size} of {spec_b.resize_size}), so their "
            f"maps cover different parts of it"
        )
    return (
        f"the two models crop the image differently (A {_crop(spec_a)}, B {_crop(spec_b)}), so "
        f"their maps cover different parts of it"
    )


def _crop(spec: ModelSpec) -> str:
    """How a model's input is cut from the image, in a few words."""
    side, resize = spec.image_size, spec.resize_size
    whole = {
        "squash": f"the whole image squashed to {resize} px square",
        "border": f"the whole image fitted into {resize} px, padded",
    }.get(spec.crop_mode)
    if whole is None:
        return f"its central {side} of {resize} px"
    return whole if side == resize else f"{whole}, its central {side} px"


def counterpart_token(token: int, spec_a: ModelSpec, spec_b: ModelSpec) -> tuple[int, str]:
    """Model B's token for model A's ``token`` (0-based), and a note for people ("" when
    nothing needs saying).

    A prefix token (CLS first) is the same prefix token in B; B must have it (ValueError
    otherwise). A patch is the same patch when the grids agree (its number shifts if the
    prefix counts differ); across different grids it is B's patch under the centre of A's
    patch, the same place in the image, which the note names (rows and columns from 1)."""
    prefix_a, prefix_b = spec_a.num_prefix_tokens, spec_b.num_prefix_tokens
    patch = patch_for_token(token, spec_a.grid, prefix_a)
    if patch is None:
        if token >= prefix_b:
            raise ValueError(
                f"model A's token {token + 1} is {spec_a.token_label(token)}, and model B has "
                f"{prefix_b} prefix token(s): it has no counterpart there; choose a patch"
                + (" or the CLS token (token 1)" if prefix_b else "")
            )
        return token, ""
    row, col = patch
    if spec_a.grid == spec_b.grid:
        return token_for_patch(row, col, spec_b.grid, prefix_b), ""
    (rows_a, cols_a), (rows_b, cols_b) = spec_a.grid, spec_b.grid
    row_b, between_rows = _under_centre(row, rows_a, rows_b)
    col_b, between_cols = _under_centre(col, cols_a, cols_b)
    note = (
        f"model A's query {patch_label(row, col)} of {rows_a}x{cols_a} is model B's "
        f"{patch_label(row_b, col_b)} of {rows_b}x{cols_b}, the patch under its centre"
    )
    if between_rows or between_cols:
        note += " (the upper left one: the centre falls on a border between B's patches)"
    return token_for_patch(row_b, col_b, spec_b.grid, prefix_b), note


def _under_centre(index: int, count_a: int, count_b: int) -> tuple[int, bool]:
    """The row (or column) of B's ``count_b`` that holds the centre of A's ``index`` of
    ``count_a``, and whether that centre lies on a border (then the lower index is taken).
    In whole numbers: the centre is at (2 index + 1) / (2 count_a) of the side."""
    scaled, whole = divmod((2 * index + 1) * count_b, 2 * count_a)
    on_border = whole == 0
    return max(scaled - 1 if on_border else scaled, 0), on_border


def counterpart_options(
    options: MethodOptions, spec_a: ModelSpec, spec_b: ModelSpec
) -> tuple[MethodOptions, str]:
    """Model A's method options as model B reads them: the query token carried over by
    :func:`counterpart_token`, everything else as it is (a negative layer counts from the end
    in each model; a layer or head B lacks is refused when the map is computed)."""
    token, note = counterpart_token(options.token, spec_a, spec_b)
    return replace(options, token=token), note


# --- the two maps and their difference -----------------------------------------------------


@dataclass(frozen=True)
class MapComparison:
    """Model A's and model B's maps as compared, their difference and colour scales."""

    a: np.ndarray  # float32: over the patch grid, or resampled to the image (``resampled_to``)
    b: np.ndarray
    difference: np.ndarray  # b - a, float32: see DIFFERENCE
    levels: tuple[float, float] | None  # one scale for both views: lowest and highest of both
    difference_levels: tuple[float, float] | None  # (-m, m), m the largest |difference|
    resampled_to: tuple[int, int] | None  # (height, width) in pixels; None: patch for patch
    notes: tuple[str, ...] = ()  # what people should know: comparability, the query token


def resample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols) ``heat`` resampled bilinearly to ``size`` (height, width), float32: half-
    pixel centres (``align_corners=False``), as the faithfulness check upsamples its maps."""
    from vitexplorer.core.evaluate.faithfulness import upsampled_map

    return upsampled_map(heat, int(size[0]), int(size[1])).astype(np.float32)


def shared_levels(*maps: np.ndarray) -> tuple[float, float] | None:
    """One colour scale over all ``maps``: their lowest and highest finite values (None when
    none is finite)."""
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def symmetric_levels(difference: np.ndarray) -> tuple[float, float] | None:
    """A scale symmetric around zero for a diverging colour map: (-m, m) with m the largest
    finite |difference| ((0, 0) for no difference; None when nothing is finite)."""
    values = np.abs(np.asarray(difference, dtype=np.float64))
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    largest = float(finite.max())
    return -largest, largest


def compare_maps(
    map_a: np.ndarray,
    map_b: np.ndarray,
    size: tuple[int, int] | None = None,
    notes: Sequence[str] = (),
) -> MapComparison:
    """The difference B - A of two maps, with a shared scale for the two views and a symmetric
    one for the difference. Without ``size`` the maps compare patch for patch and must have one
    shape; with it both are first resampled to ``size`` (:func:`resample`)."""
    a = np.asarray(map_a, dtype=np.float32)
    b = np.asarray(map_b, dtype=np.float32)
    if size is not None:
        a, b = resample(a, size), resample(b, size)
    elif a.shape != b.shape:
        raise ValueError(
            f"maps of {a.shape[0]}x{a.shape[1]} and {b.shape[0]}x{b.shape[1]} patches compare "
            f"only resampled to the image: give its size"
        )
    difference = b - a
    return MapComparison(
        a=a,
        b=b,
        difference=difference,
        levels=shared_levels(a, b),
        difference_levels=symmetric_levels(difference),
        resampled_to=None if size is None else (int(size[0]), int(size[1])),
        notes=tuple(note for note in notes if note),
    )


def compare_analyses(
    analysis_a: ImageAnalysis,
    analysis_b: ImageAnalysis,
    map_a: np.ndarray,
    map_b: np.ndarray,
    feed: Feed = CROP,
    notes: Sequence[str] = (),
) -> MapComparison:
    """:func:`compare_maps` for two analyses of one image: patch for patch on one grid, else
    resampled to the pixel size of model A's display crop; the comparability message first in
    the notes."""
    check = comparability(analysis_a.spec, analysis_b.spec, feed)
    size = None if check.same_grid else analysis_a.display.shape[:2]
    return compare_maps(map_a, map_b, size, (check.message, *notes))


def pair_maps(
    method: str,
    options: MethodOptions,
    analysis_a: ImageAnalysis,
    analysis_b: ImageAnalysis,
    *,
    models: tuple[LoadedModel | None, LoadedModel | None] = (None, None),
    batches: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    feed: Feed = CROP,
) -> MapComparison:
    """Model A's and model B's ``method`` maps of one image, compared.

    ``options`` are model A's (0-based, as :class:`~vitexplorer.core.explain.method.MethodOptions`
    holds them); model B gets :func:`counterpart_options`. Attention and rollout read the
    analyses; relevance needs each model and its (1, 3, H, W) preprocessed batch of the image,
    and explains each model's own predicted class unless ``options.target_class`` is set."""
    from vitexplorer.core.explain.maps import explanation_map

    options_b, note = counterpart_options(options, analysis_a.spec, analysis_b.spec)
    map_a, map_b = [
        explanation_map(method, chosen, analysis=analysis, model=model, batch=batch)
        for chosen, analysis, model, batch in zip(
            (options, options_b), (analysis_a, analysis_b), models, batches, strict=True
        )
    ]
    return compare_analyses(analysis_a, analysis_b, map_a, map_b, feed, (note,))


# --- how each head changed -----------------------------------------------------------------

HEAD_STATISTICS: tuple[str, ...] = ("distance", "entropy", "prefix_share")
"""The per-head statistics of :class:`~vitexplorer.core.explain.head_stats.HeadStatistics`, in
table order."""

# each statistic's CSV column stem and number format (those of explain.statistics_csv)
_COLUMNS = {
    "distance": ("mean_distance", "_px", ".4f"),
    "entropy": ("entropy", "_nats", ".5f"),
    "prefix_share": ("prefix_share", "", ".5f"),
}


@dataclass(frozen=True)
class HeadChange:
    """One head's statistics in model A and model B; layer and head 0-based (people read them
    from 1), each tuple in :data:`HEAD_STATISTICS` order."""

    layer: int
    head: int
    a: tuple[float, float, float]
    b: tuple[float, float, float]

    def change(self, statistic: str) -> float:
        """B minus A of ``statistic`` (one of :data:`HEAD_STATISTICS`)."""
        k = HEAD_STATISTICS.index(statistic)
        return self.b[k] - self.a[k]


def _check_statistic(statistic: str) -> None:
    if statistic not in HEAD_STATISTICS:
        raise ValueError(
            f"unknown head statistic {statistic!r}; use one of {', '.join(HEAD_STATISTICS)}"
        )


def head_changes(
    statistics_a: HeadStatistics, statistics_b: HeadStatistics, sort_by: str = "distance"
) -> list[HeadChange]:
    """Every (layer, head)'s statistics in A and B, the heads that changed most first.

    "Most" is the absolute change B - A of ``sort_by`` (mean attention ``distance`` in pixels
    by default, ``entropy`` in nats or ``prefix_share``); equal changes keep layer, then head
    order, and a change that is not finite comes last. Heads are paired by layer and number,
    so both models must have as many layers and heads: otherwise ValueError, in one line."""
    _check_statistic(sort_by)
    shape_a, shape_b = statistics_a.distance.shape, statistics_b.distance.shape
    if shape_a != shape_b:
        raise ValueError(
            f"model A has {shape_a[0]} layers of {shape_a[1]} heads, model B {shape_b[0]} of "
            f"{shape_b[1]}: the head table pairs heads by layer and number, so it needs the "
            f"same layers and heads in both"
        )
    table_a = np.stack([getattr(statistics_a, name) for name in HEAD_STATISTICS], axis=-1)
    table_b = np.stack([getattr(statistics_b, name) for name in HEAD_STATISTICS], axis=-1)
    changes = [
        HeadChange(
            layer,
            head,
            tuple(float(v) for v in table_a[layer, head]),  # type: ignore[arg-type]
            tuple(float(v) for v in table_b[layer, head]),  # type: ignore[arg-type]
        )
        for layer in range(shape_a[0])
        for head in range(shape_a[1])
    ]
    return sorted(changes, key=lambda c: _largest_first(c.change(sort_by)))


def _largest_first(change: float) -> float:
    return -abs(change) if math.isfinite(change) else math.inf


def mean_head_changes(
    per_image_a: Sequence[HeadStatistics],
    per_image_b: Sequence[HeadStatistics],
    sort_by: str = "distance",
) -> list[HeadChange]:
    """:func:`head_changes` of each model's statistics averaged over the images (the images
    in the same order for both)."""
    if len(per_image_a) != len(per_image_b):
        raise ValueError(
            f"{len(per_image_a)} images for model A but {len(per_image_b)} for model B"
        )
    return head_changes(
        average_statistics(list(per_image_a)), average_statistics(list(per_image_b)), sort_by
    )


def distance_units_note(spec_a: ModelSpec, spec_b: ModelSpec) -> str:
    """Why the distance columns of the head table need care, or "": mean attention distance
    is in each model's own input pixels, so models fed images of different sizes measure it
    in different units."""
    if spec_a.image_size == spec_b.image_size:
        return ""
    return (
        f"mean attention distances are in each model's own input pixels, and model A sees "
        f"{spec_a.image_size} px where model B sees {spec_b.image_size}: their change mixes "
        f"the two units"
    )


def head_changes_csv(changes: Sequence[HeadChange], images: int) -> str:
    """One CSV row per head in the order given (the most changed first), layer and head from
    1 as in ``vitexplorer stats``'s table: each statistic in A, in B and the change B - A,
    then how many images the figures are averaged over."""
    columns = ["layer", "head"]
    for stem, unit, _ in _COLUMNS.values():
        columns += [f"{stem}_a{unit}", f"{stem}_b{unit}", f"{stem}_change{unit}"]
    lines = [",".join([*columns, "images"])]
    for change in changes:
        cells = [str(change.layer + 1), str(change.head + 1)]
        for k, (_, _, form) in enumerate(_COLUMNS.values()):
            a, b = change.a[k], change.b[k]
            cells += [format(a, form), format(b, form), format(b - a, form)]
        lines.append(",".join([*cells, str(images)]))
    return "\n".join(lines) + "\n"
