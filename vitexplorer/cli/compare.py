"""``vitexplorer compare``: two models side by side on the same images, with the same method,
layer, head and token: model A and model B, the difference B minus A ("after minus before" only
when B was fine-tuned from A), and how every head's statistics changed."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitexplorer.cli.analyze import (
    MethodMap,
    explain_methods,
    image_warnings,
    top_line,
    write_method_outputs,
)
from vitexplorer.cli.common import (
    DIVERGING,
    PROG,
    Failed,
    add_aspect_argument,
    add_model_arguments,
    check_output_folder,
    check_stem_outputs,
    colour_table,
    error,
    expand_images,
    load_model_for,
    output_folder,
    terminal_text,
    unique_stems,
)
from vitexplorer.cli.methods import add_method_options, method_options
from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.core.models.feed import Feed

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.explain.analysis import ImageAnalysis
    from vitexplorer.core.explain.model_compare import MapComparison
    from vitexplorer.core.models.loading import LoadedModel

SIDES = ("A", "B")
DIFFERENCE_NAME = "B-A"
CSV_NAME = "head_changes.csv"
CARD_NAME = "head_changes.json"
# vitexplorer.core.explain.model_compare.HEAD_STATISTICS, repeated so the help needs no numpy (a
# test
# keeps them equal)
HEAD_STATISTICS = ("distance", "entropy", "prefix_share")


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Run two models on the same images, model A (the first --model: the base, "
        "when comparing a fine-tune with the model it started from) and model B (the second), "
        "with the same method, layer, head and token, and write into DIR, per image and method: "
        "<stem>.<method>.A.npy and "
        "<stem>.<method>.B.npy (each model's map, float32, over the patch grid; when the two "
        "grids differ, both resampled bilinearly to the pixel size of model A's crop), "
        f"<stem>.<method>.{DIFFERENCE_NAME}.npy (B minus A: positive where B's map is higher; "
        "'after minus before' when B's checkpoint names A as its base), each with a .png (A "
        "and B on one colour scale, the difference on a diverging one symmetric around zero) and a "
        ".json method card; and, "
        f"averaged over the images, {CSV_NAME} (one row per layer and head, from 1: mean "
        "attention distance, entropy and prefix share in A, in B and the change B - A, the "
        f"heads that changed most first; see --sort-by) with {CARD_NAME}. Layers, heads and "
        "tokens are numbered from 1; -1 is the last layer of each model.",
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, or folders whose image files (in subfolders too) are all used",
    )
    add_model_arguments(parser, pair=True)
    add_aspect_argument(parser)
    group = add_method_options(
        parser,
        method_help="compare this method's maps; repeat for several (default: attention). "
        "attention: --token's attention in --layer and --head; rollout: attention rollout "
        "(Abnar and Zuidema 2020) of --token; relevance: class relevance by Chefer et al.'s "
        "generic gradient-times-attention rule (GAE, ICCV 2021) of the CLS token for "
        "--target-class, else each model's own predicted class; every other method: see "
        f"'{PROG} methods'",
    )
    group.add_argument(
        "--token",
        type=int,
        default=1,
        metavar="T",
        help="attention and rollout: model A's query token, from 1 (1 is the CLS token, then "
        "A's patches row by row). Model B gets the same token when the grids agree; across "
        "different grids a prefix token stays itself and a patch becomes B's patch under the "
        "centre of A's, the same place in the image (default: 1)",
    )
    parser.add_argument(
        "--sort-by",
        choices=HEAD_STATISTICS,
        default="distance",
        help=f"{CSV_NAME}: the heads whose statistic changed most (absolute change B - A) come "
        "first: mean attention distance, entropy or prefix share (default: distance)",
    )
    return parser


@dataclass
class ImagePair:
    """One image analysed by both models, with each model's maps and method cards."""

    analyses: tuple[ImageAnalysis, ImageAnalysis]
    maps: tuple[dict[str, MethodMap], ...]
    token_note: str  # how model A's query token was carried over to B; "" when nothing to say


def run_compare(options: argparse.Namespace) -> int:
    """0 when every image was compared, 1 when some failed, 2 when nothing could start."""
    names, weights = model_pair(options)
    images = expand_images(options.images)
    given = [("--model", name) for name in names] + [("--weights", w) for w in weights]
    check_output_folder(options.out, options.images, (CSV_NAME, CARD_NAME), given)
    check_stem_outputs(options.out, images)
    out_dir = output_folder(options.out)
    models = load_pair(names, weights, options.device)
    from vitexplorer.core.explain.methods.attention import ATTENTION

    methods = list(dict.fromkeys(options.method)) or [ATTENTION.name]
    chosen = pair_method_options(options, models, methods)
    run = CompareRun(models, methods, chosen, out_dir, Feed.from_aspect(options.aspect))
    what = f"B - A ({run.relation})" if run.relation else "B - A"
    labels = f"model A: {run.labels[0]}; model B: {run.labels[1]}; difference: {what}"
    print(terminal_text(labels), flush=True)
    used = [
        path for path, stem in zip(images, unique_stems(images), strict=True) if run(path, stem)
    ]
    if not used:
        raise Failed("none of the images could be compared", 2)
    written = write_head_table(
        out_dir, models, run.statistics, used, options, run.mode, run.relation
    )
    names_written = ", ".join(str(out_dir / name) for name in written) or "no head table"
    print(f"{len(used)} image(s) -> {names_written}")
    return 1 if len(used) < len(images) else 0


class CompareRun:
    """Compares one image after another with what they all share; keeps each model's head
    statistics of the images compared and says each note once."""

    def __init__(
        self,
        models: list[LoadedModel],
        methods: list[str],
        chosen: list[Any],
        out_dir: Path,
        feed: Feed,
    ) -> None:
        self.models, self.methods, self.chosen = models, methods, chosen
        self.out_dir, self.feed, self.mode = out_dir, feed, file_mode()
        self.luts = (colour_table(), colour_table(DIVERGING))
        self.statistics: tuple[list[Any], list[Any]] = ([], [])
        self.notes: set[str] = set()
        self.labels, self.relation = pair_names(models)

    def __call__(self, source: Path, stem: str) -> bool:
        """Compare and write one image; False, after one line on stderr, when it failed."""
        from vitexplorer.core.explain.analysis import failure_message
        from vitexplorer.core.io.images import ImageLoadError

        try:
            pair = compare_image(self.models, source, self.methods, self.chosen, self.feed)
        except ImageLoadError as exc:
            error(str(exc))
            return False
        except (RuntimeError, ValueError) as exc:  # e.g. the GPU ran out of memory
            error(f"{source.name}: {failure_message(exc)}")
            return False
        try:  # the image's files of every method as one set, each card after its files
            files = FileSet()
            for method in self.methods:
                args = (self.out_dir, stem, source, pair, method, self.luts, self.mode, self.feed)
                self.note(write_comparison(*args, self.labels, self.relation, files).notes)
            files.write(self.mode)
        except OSError as exc:
            error(f"{source.name}: cannot write to {self.out_dir}: {exc.strerror or exc}")
            return False
        sides = zip(SIDES, pair.analyses, pair.maps, self.statistics, strict=True)
        for side, analysis, maps, kept in sides:
            for warning in image_warnings(analysis, maps):
                error(f"warning: {source.name}: model {side}: {warning}")
            kept.append(analysis.statistics)
        tops = [f"{s} {top_line(a)}" for s, a in zip(SIDES, pair.analyses, strict=True)]
        print(terminal_text(f"{stem}: {'; '.join(tops)}"), flush=True)
        return True

    def note(self, notes: tuple[str, ...]) -> None:
        for note in notes:
            if note not in self.notes:
                self.notes.add(note)
                error(f"note: {note}")


def model_pair(options: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The two model names and their weights, or Failed (2) in one line."""
    names, weights = options.model, options.weights or ["default"]
    if len(names) != 2:
        raise Failed(
            f"give --model exactly twice, model A then model B (the base first, to compare a "
            f"fine-tune with it); it was given "
            f"{len(names)} time(s)",
            2,
        )
    if len(weights) > 2:
        raise Failed(
            f"give --weights once (for both models) or twice (A's, then B's), not "
            f"{len(weights)} times",
            2,
        )
    return names, weights * (2 // len(weights))


def load_pair(names: list[str], weights: list[str], device: str) -> list[LoadedModel]:
    """Model A and model B, or Failed naming which could not be loaded."""
    models = []
    for side, name, weight in zip(SIDES, names, weights, strict=True):
        request = argparse.Namespace(model=name, weights=weight, device=device)
        try:
            models.append(load_model_for(request))
        except Failed as exc:
            raise Failed(f"model {side}: {exc}", exc.status) from exc
    return models


def pair_method_options(
    options: argparse.Namespace, models: list[LoadedModel], methods: list[str]
) -> list[Any]:
    """Each model's checked ``MethodOptions`` (a layer counted from the end resolved in each,
    a class name looked up in each), model B's query token carried over from A's."""
    from vitexplorer.core.explain.model_compare import counterpart_token
    from vitexplorer.core.render.numbering import index_of

    chosen = []
    for side, model in zip(SIDES, models, strict=True):
        try:
            chosen.append(method_options(options, model.spec, methods, model))
        except Failed as exc:
            raise Failed(f"model {side}: {exc}", exc.status) from exc
    spec_a, spec_b = models[0].spec, models[1].spec
    try:
        token = index_of(options.token, "--token", spec_a.num_tokens, "token")
        tokens = (token, counterpart_token(token, spec_a, spec_b)[0])
        chosen = [replace(c, token=t) for c, t in zip(chosen, tokens, strict=True)]
        for method in methods:
            for option, model in zip(chosen, models, strict=True):
                option.check(method, model.spec)
    except ValueError as exc:
        raise Failed(str(exc), 2) from exc
    return chosen


def compare_image(
    models: list[LoadedModel], source: Path, methods: list[str], chosen: list[Any], feed: Feed
) -> ImagePair:
    """Both models' analyses and maps of one image; model B's query token carried over on the
    grids this image was analysed at."""
    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.explain.model_compare import counterpart_token
    from vitexplorer.core.io.images import load_image

    image = load_image(source)
    analyses = tuple(analyze_image(model, image, feed) for model in models)
    spec_a, spec_b = analyses[0].spec, analyses[1].spec
    token_b, note = counterpart_token(chosen[0].token, spec_a, spec_b)
    pair_options = (chosen[0], replace(chosen[1], token=token_b))
    maps = tuple(
        explain_methods(model, image, source, analysis, methods, option, feed)
        for model, analysis, option in zip(models, analyses, pair_options, strict=True)
    )
    return ImagePair(analyses, maps, note)  # type: ignore[arg-type]


def pair_names(models: list[LoadedModel]) -> tuple[list[str], str]:
    """Model A's and model B's names for people (:func:`~vitexplorer.core.explain.provenance.
    model_name`: the file, and how it was trained when its checkpoint says), and what B − A
    means (:func:`~vitexplorer.core.explain.model_compare.relation`: "after minus before" only when
    B was fine-tuned from A)."""
    from vitexplorer.core.explain.model_compare import relation
    from vitexplorer.core.explain.provenance import model_name, weights_metadata

    metadata = [weights_metadata(model.weights_file) for model in models]
    labels = [model_name(m.spec, meta) for m, meta in zip(models, metadata, strict=True)]
    spec_a, spec_b = models[0].spec, models[1].spec
    files = (models[0].weights_file, models[1].weights_file)
    return labels, relation(spec_a, metadata[0], spec_b, metadata[1], files)


def write_comparison(
    out_dir: Path,
    stem: str,
    source: Path,
    pair: ImagePair,
    method: str,
    luts: tuple[np.ndarray, np.ndarray],
    mode: int,
    feed: Feed,
    labels: list[str],
    relation: str = "",
    into: FileSet | None = None,
) -> MapComparison:
    """Write model A's and model B's map of ``method`` (one colour scale) and the difference
    B - A (a diverging scale symmetric around zero), each as .npy, .png and .json, as one set
    (each card after its files, naming them); returns the comparison. ``labels`` name A and B;
    ``relation`` says what B - A means ("" for B - A said neutrally); ``into`` adds the files
    to a set written later instead."""
    from vitexplorer.core.explain.model_compare import compare_analyses
    from vitexplorer.core.render.colour_tables import SIGNED_COLOUR_MAP
    from vitexplorer.core.render.scales import is_signed, symmetric

    chosen = [maps[method] for maps in pair.maps]
    heats = tuple(entry.heat for entry in chosen)
    cards = tuple(entry.card for entry in chosen)
    (analysis_a, analysis_b), (heat_a, heat_b) = pair.analyses, heats
    result = compare_analyses(analysis_a, analysis_b, heat_a, heat_b, feed, (pair.token_note,))
    facts = comparison_facts(result, stem, method, relation)
    sides_scale = (luts[0], result.levels)
    if is_signed(method) and result.levels is not None:  # a signed map: diverging, symmetric
        sides_scale = (luts[1], symmetric(result.levels))
        facts["colour_scales"]["A and B"] = list(sides_scale[1])
        facts["colour_scales"]["A and B colour_map"] = SIGNED_COLOUR_MAP
    axes = None
    if result.resampled_to is not None:
        height, width = result.resampled_to
        axes = [
            f"axis 0: pixel rows 1..{height} of model A's crop",
            f"axis 1: pixel columns 1..{width}",
        ]
    sides = zip(SIDES, pair.analyses, (result.a, result.b), cards, labels, strict=True)
    written = {
        side: (analysis, heat, {**card, "title": f"model {side} · {card['title']}"}, label)
        for side, analysis, heat, card, label in sides
    }
    difference = difference_card(source, cards, labels, facts, relation)
    written[DIFFERENCE_NAME] = (pair.analyses[0], result.difference, difference, "")
    scales = {side: sides_scale for side in SIDES}
    scales[DIFFERENCE_NAME] = (luts[1], result.difference_levels)
    files = FileSet() if into is None else into
    for name, (analysis, heat, card, label) in written.items():
        if label:
            card.update(subtitle=f"{label} · {source.name}", comparison=facts)
        lut, levels = scales[name]
        write_method_outputs(
            out_dir, stem, analysis, method, heat, card, lut, mode,
            name=f"{method}.{name}", levels=levels, axes=axes,
            uniform=name != DIFFERENCE_NAME,  # a difference is no distribution: no 1/N
            into=files,
        )  # fmt: skip
    if into is None:
        files.write(mode)
    return result


def comparison_facts(
    result: MapComparison, stem: str, method: str, relation: str = ""
) -> dict[str, Any]:
    """What a card says about the comparison its map belongs to."""
    from vitexplorer.core.explain.model_compare import difference_words

    if result.resampled_to is None:
        compared = "patch for patch, over the patch grid"
    else:
        height, width = result.resampled_to
        compared = (
            f"each map resampled bilinearly to {height}x{width} px, the size of model A's crop"
        )
    names = (*SIDES, DIFFERENCE_NAME)
    return {
        "difference": difference_words(relation),
        "files": {name: f"{stem}.{method}.{name}.npy" for name in names},
        "compared": compared,
        "notes": list(result.notes),
        "colour_scales": {
            "A and B": None if result.levels is None else list(result.levels),
            DIFFERENCE_NAME: None
            if result.difference_levels is None
            else list(result.difference_levels),
            "difference_colour_map": f"{DIVERGING} (diverging, white at zero, red where B is "
            f"higher)",
        },
    }


def difference_card(
    source: Path,
    cards: tuple[dict[str, Any], ...],
    labels: list[str],
    facts: dict[str, Any],
    relation: str = "",
) -> dict[str, Any]:
    """The card of the difference map: both models' own cards and the comparison."""
    card_a, card_b = cards
    warnings = [f"model {s}: {w}" for s, c in zip(SIDES, cards, strict=True) for w in c["warnings"]]
    return {
        "method": card_a["method"],
        "numbering": card_a["numbering"],
        "image": str(source),
        "title": f"B - A{f' ({relation})' if relation else ''} · {card_a['title']}",
        "subtitle": f"A: {labels[0]} · B: {labels[1]} · {source.name}",
        "comparison": facts,
        "warnings": warnings,
        "A": card_a,
        "B": card_b,
    }


def write_head_table(
    out_dir: Path,
    models: list[LoadedModel],
    per_image: tuple[list[Any], list[Any]],
    used: list[Path],
    options: argparse.Namespace,
    mode: int,
    relation: str = "",
) -> list[str]:
    """:data:`CSV_NAME` and :data:`CARD_NAME`, averaged over the images compared; their names,
    or none, with a note, when the two models' heads cannot be paired."""
    from vitexplorer.core.explain.model_compare import (
        distance_units_note,
        head_changes_csv,
        mean_head_changes,
    )

    try:
        changes = mean_head_changes(*per_image, options.sort_by)
    except ValueError as exc:
        error(f"note: {CSV_NAME} is not written: {exc}")
        return []
    units = distance_units_note(models[0].spec, models[1].spec)
    if units:
        error(f"note: {CSV_NAME}: {units}")
    table = head_changes_csv(changes, len(used)).encode("utf-8")
    files = FileSet()  # the card after the table, naming it
    files.add(out_dir / CSV_NAME, lambda f: f.write(table))
    files.card(
        out_dir / CARD_NAME,
        [out_dir / CSV_NAME],
        lambda listing: head_table_card(models, used, options, units, relation, listing),
    )
    try:
        files.write(mode)
    except OSError as exc:
        raise Failed(f"cannot write to {out_dir}: {exc.strerror or exc}", 2) from exc
    return [CSV_NAME, CARD_NAME]


def head_table_card(
    models: list[LoadedModel],
    images: list[Path],
    options: argparse.Namespace,
    note: str = "",
    relation: str = "",
    listing: list[dict[str, Any]] | None = None,
) -> bytes:
    from vitexplorer.core.explain.provenance import method_card, strict_json

    spec = models[0].spec
    parameters = {"distance": "mean attention distance (ViT paper, Fig. 7), patch-to-patch weights"}
    card: dict[str, Any] = {
        "method": "head changes",
        "difference": "each statistic of model B minus model A's"
        + (f" ({relation})" if relation else ""),
        "order": f"the heads whose {options.sort_by} changed most (absolute change B - A) "
        f"first; equal changes in layer, then head order",
        "table": CSV_NAME,
        "table_rows": f"one per layer (1..{spec.num_layers}) and head (1..{spec.num_heads}), "
        f"both numbered from 1, each figure the mean over the {len(images)} image(s)",
        "images": [str(path) for path in images],
        "input": {"aspect": options.aspect},
        "notes": [note] if note else [],
    }
    for side, model in zip(SIDES, models, strict=True):
        card[side] = method_card(model, "head statistics", parameters)
    if listing is not None:
        card["files"] = listing  # the table's name and size in bytes
    return strict_json(card)[0]
