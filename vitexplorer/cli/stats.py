"""``vitexplorer stats``: per-head mean attention distance, entropy and prefix share over images,
as a CSV and the distance-against-depth plot of the ViT paper (Fig. 7, right), drawn with Pillow
(:mod:`vitexplorer.core.render.plots`): like every command, it never imports Qt."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitexplorer.cli.common import (
    PROG,
    CountProgress,
    Failed,
    add_aspect_argument,
    add_model_arguments,
    check_output_folder,
    error,
    expand_images,
    load_model_for,
    model_inputs,
    output_folder,
)
from vitexplorer.core.io.files import FileSet, file_mode, write_atomic
from vitexplorer.core.models.feed import Feed

CSV_NAME = "head_stats.csv"
PLOT_NAME = "distance_vs_depth.png"
CARD_NAME = "head_stats.json"


def stats_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} stats",
        description="Run a ViT on images and write into DIR, averaged over the images: "
        f"{CSV_NAME} (one row per layer and head, both numbered from 1: mean attention "
        f"distance in pixels, attention entropy in nats, share of attention on the CLS/prefix "
        f"tokens), {PLOT_NAME} (mean "
        f"attention distance against depth, one point per head and a line through each layer's "
        f"mean of heads, like Fig. 7 of the ViT paper) "
        f"and {CARD_NAME} (the model, its weights file hash, preprocessing and the images).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders whose image files (in subfolders too) are all used",
    )
    add_model_arguments(parser)
    add_aspect_argument(parser)
    return parser


def run_stats(options: argparse.Namespace) -> int:
    """0 when every image was used, 1 when some could not be read, 2 when none could."""
    images = expand_images(options.inputs)
    names = (CSV_NAME, CARD_NAME, PLOT_NAME)
    check_output_folder(options.out, options.inputs, names, model_inputs(options))
    out_dir = output_folder(options.out)
    model = load_model_for(options)

    from vitexplorer.core.explain.analysis import analyze_image, failure_message
    from vitexplorer.core.explain.head_stats import average_statistics, statistics_csv
    from vitexplorer.core.io.images import ImageLoadError, load_image

    feed = Feed.from_aspect(options.aspect)
    per_image, used, failures = [], [], 0
    progress = CountProgress("stats: images", len(images))
    try:
        for done, path in enumerate(images, start=1):
            try:
                analysis = analyze_image(model, load_image(path), feed)
            except ImageLoadError as exc:
                error(str(exc))
                failures += 1
            except (RuntimeError, ValueError) as exc:  # e.g. the GPU ran out of memory
                error(f"{path.name}: {failure_message(exc)}")
                failures += 1
            else:
                per_image.append(analysis.statistics)  # on the grid the image was analysed at
                used.append(path)
            progress(done)
    finally:
        progress.close()
    if not per_image:
        raise Failed("none of the images could be analysed", 2)
    mean = average_statistics(per_image)
    mode = file_mode()
    try:  # one set: the table and the plot, then the card naming them (core/files.py)
        table = statistics_csv(mean, len(used)).encode("utf-8")
        files = FileSet()
        data = [
            files.add(out_dir / CSV_NAME, lambda f: f.write(table)),
            write_plot(out_dir / PLOT_NAME, mean.distance, model, len(used), mode, files),
        ]
        files.card(
            out_dir / CARD_NAME,
            data,
            lambda listing: stats_card(model, used, failures, options.aspect, listing),
        )
        files.write(mode)
    except OSError as exc:
        raise Failed(f"cannot write to {out_dir}: {exc.strerror or exc}", 2) from exc
    outputs = [CSV_NAME, CARD_NAME, PLOT_NAME]
    print(f"{len(used)} image(s) -> {', '.join(str(out_dir / name) for name in outputs)}")
    return 1 if failures else 0


def stats_card(
    model: Any,
    images: list[Path],
    failures: int,
    aspect: str = "crop",
    listing: list[dict[str, Any]] | None = None,
) -> bytes:
    """The card of the table and plot; ``listing`` (their names and sizes) as its ``files``
    (:mod:`vitexplorer.core.explain.analytics_card`, as the app's Model analytics export)."""
    from vitexplorer.core.explain.analytics_card import (
        DISTANCE,
        STATISTICS,
        card_bytes,
        statistics_facts,
    )
    from vitexplorer.core.explain.provenance import method_card

    outputs = {"table": CSV_NAME, "plot": PLOT_NAME}
    facts = statistics_facts(model.spec, [str(p) for p in images], failures, aspect, outputs)
    return card_bytes(method_card(model, STATISTICS, dict(DISTANCE), extra=facts), listing)


def write_plot(
    path: Path, distance: Any, model: Any, images: int, mode: int, into: FileSet | None = None
) -> Path:
    """The distance-against-depth PNG, drawn with Pillow (no Qt:
    :mod:`vitexplorer.core.render.plots`); ``into`` adds it to a set written later instead."""
    from vitexplorer.core.render.plots import save_distance_plot

    title = f"{model.spec.display_name}: mean attention distance, {images} image(s)"
    if into is not None:
        return into.add(path, lambda f: save_distance_plot(f, distance, title))
    write_atomic(path, lambda f: save_distance_plot(f, distance, title), mode)
    return path
