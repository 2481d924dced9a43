"""Drawing one view of a map, shared by the explorer's views and a compared model's: the
overlay and its title (:func:`draw_view`, from a :class:`ViewSource`) and the locked colour
scale of a second view (:func:`lock_view`, :func:`follow_lock`). Neither the explorer's
wiring nor the model comparison: both import it (no import cycle between them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitexplorer.core.explain.maps import MapJob, caption, map_job
from vitexplorer.core.explain.method import MapChoice
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.feed import Feed
from vitexplorer.core.render.numbering import shown
from vitexplorer.core.render.scales import uniform_mark
from vitexplorer.gui.views.image_view import ImageView


@dataclass(frozen=True)
class ViewSource:
    """What one view draws from: an analysis and its selection (the explorer's, or model B's
    in a model comparison), how its title begins, and where a map still to be computed by the
    worker is asked for and a map that ranks nothing is said."""

    analysis: Any  # ImageAnalysis
    selection: Selection
    title: str  # the title's first words: "", "photo.png — ", "B · demo — "
    feed: Feed  # how the image was fed: the centre crop or the whole image
    ask_map: Callable[[MapJob], None]  # a map the worker is still to compute
    notice: Callable[[str, str], None]  # (what the map is, why it ranks nothing)
    # whether the person cancelled a job's map (then it is not asked again until asked anew)
    cancelled: Callable[[MapJob], bool] = lambda _job: False


def draw_view(
    view: ImageView,
    choice: MapChoice,
    patch,
    heat,
    levels,
    source: ViewSource,
) -> None:
    """One view's overlay and title for ``choice`` and its map ``heat`` (None: a map the
    worker has not computed yet, asked for and drawn when it arrives), on ``levels`` or,
    without, the map's own range. Every method's map is the selected token's, and the title
    names it."""
    from vitexplorer.core.explain.analysis import flat_map

    analysis, sel = source.analysis, source.selection
    options = choice.at(sel)
    what = caption(choice.method, options, analysis)
    if heat is None:
        job = map_job(choice.method, options, analysis)
        cancelled = job is not None and source.cancelled(job)
        if job is not None and not cancelled:  # else the stored attention makes the map
            source.ask_map(job)
        view.clear_heat()
        view.set_selected_patch(None)
        state = "cancelled (choose the method again to compute it)" if cancelled else "computing…"
        view.title.setText(f"{source.title}{what}: {state}")
        return
    uniform = uniform_mark(choice.method, analysis.spec.num_tokens)
    view.set_heat(heat, levels, uniform, signed=choice.described.signed)
    flat = flat_map(heat)  # a map that ranks nothing is said so, not drawn as if it did
    if flat:
        source.notice(what, flat)
    said = f" · {flat.split(':')[0]}" if flat else ""
    view.set_selected_patch(patch)
    where = f"{analysis.spec.token_label(sel.token)} (token {shown(sel.token)})"
    if source.feed.whole:
        rows, cols = analysis.spec.grid
        where += f" · whole image, {rows}x{cols} patches"
    view.title.setText(f"{source.title}{what} · {where}{said}")


def lock_view(view: ImageView, locked: bool, current: bool) -> None:
    """Lock scale for a second view: ``current`` when its map is the present one (it is on
    screen, or kept drawn behind a tab); else its old map's levels are not kept, the next map's
    are."""
    if locked and not current:
        view.clear_heat()  # a stale map: the next one drawn gives the locked levels
    view.lock_scale(locked)


def follow_lock(view: ImageView, leader: ImageView) -> None:
    """While the scale is locked and two views are on one colour scale: ``view`` kept on the
    levels ``leader`` is locked to (drawn before it), so that one colour is one value in both
    whenever each view was locked."""
    if leader.locked_levels is None or view.locked_levels == leader.locked_levels:
        return
    view.lock_scale(False)  # forget a lock of its own, or one waiting for its next map
    view.locked_levels = leader.locked_levels
