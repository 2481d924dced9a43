"""``vitexplorer faithfulness``, and what it shares with ``vitexplorer sanity``
(:mod:`vitexplorer.cli.sanity`): checks of the explanation methods.

``sanity`` is the cascading randomisation of Adebayo et al. (2018): the model's parameters are
re-initialised from the top down and the map is compared with the original after each step.
``faithfulness`` is the perturbation test of Chefer et al. (2021): the most (or least) relevant
part of the image is removed in steps, by one of two protocols: whole patches set to the mean
colour with the predicted class's probability followed (``mean-patch``), or the paper's own,
pixels of the upsampled map set to black with the top-1 accuracy against labels followed
(``chefer2021``).

Numbers that would mislead are not written as numbers: a correlation or an area that is
undefined (a map that ranks no patch above another, a model whose output is the same for every
class) is null in the JSON and empty in the CSV, with a warning on stderr and in the card.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vitexplorer.cli.common import (
    PROG,
    CountProgress,
    CtrlCCancels,
    Failed,
    add_aspect_argument,
    add_model_arguments,
    check_output_folder,
    error,
    expand_images,
    load_model_for,
    model_inputs,
    output_folder,
    positive_int,
)
from vitexplorer.cli.methods import add_method_options, method_options
from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.feed import Feed


def _common_arguments(parser: argparse.ArgumentParser, inputs_help: str, method_help: str) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help=inputs_help)
    add_model_arguments(parser)
    add_aspect_argument(parser)
    add_method_options(parser, method_help=method_help)


def faithfulness_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} faithfulness",
        description="The perturbation test of Chefer et al. (2021) for one explanation method, "
        "over images: remove the most relevant part of each image (positive test) or the least "
        "relevant (negative test) in steps and follow what the model still gets right. A "
        "faithful map gives a small area under the positive curve and a large one under the "
        "negative curve. --protocol mean-patch (the default): whole patches set to the "
        "dataset's mean colour, 0%% to 100%%, following the probability of the class predicted "
        "for the untouched image. --protocol chefer2021 (the paper's, whose tables it matches): "
        "pixels of the map upsampled to the input set to black, 0%% to 90%%, following the "
        "top-1 accuracy against each image's label; it needs folders of class subfolders named "
        "after the model's classes or their indices. With --aspect keep each image is tested "
        "whole, on its own rectangular patch grid. Writes faithfulness.csv (one row per "
        "image: AUCs and both curves, and each image's grid with --aspect keep) and "
        "faithfulness.json (a method card with the protocol and the means; with --aspect keep, "
        "each image's grid and input size too). Ctrl-C stops after the current image and "
        "still writes the images done.",
    )
    _common_arguments(
        parser,
        "image files, or folders whose image files (in subfolders too) are used; with "
        "--protocol chefer2021, folders of class subfolders",
        "the method whose maps are tested, one per run (default: rollout)",
    )
    parser.add_argument(
        "--protocol",
        choices=("mean-patch", "chefer2021"),
        default="mean-patch",
        help="mean-patch: patches to the mean colour, the predicted class's probability "
        "(default); chefer2021: pixels to black, top-1 accuracy against the folder labels, as "
        "Chefer et al. (2021) measure it",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=10,
        metavar="N",
        help="removal steps (default: 10, steps of 10%%: 0%% to 100%% of the patches with "
        "mean-patch, 0%% to 90%% of the pixels with chefer2021, as the paper)",
    )
    return parser


LABELS_NEEDED = (
    "--protocol chefer2021 measures top-1 accuracy against each image's label, so it needs "
    "folders of class subfolders named after the model's classes or their indices"
)


def _prepare(
    options: argparse.Namespace, labelled: bool = False
) -> tuple[list[Path], list[int] | None, Path, Any, Any]:
    """The images (with their labels when ``labelled``), the output folder, the model and the
    checked method options for ``options.methods``."""
    if labelled:
        for text in options.inputs:
            if not expand_user(text).is_dir():
                raise Failed(f"{LABELS_NEEDED}; {text} is not a folder", 2)
    images = [] if labelled else expand_images(options.inputs)
    check_output_folder(options.out, options.inputs, (), model_inputs(options))
    out_dir = output_folder(options.out)
    model = load_model_for(options)
    chosen = method_options(options, model.spec, options.methods, model)
    labels = None
    if labelled:
        from vitexplorer.core.evaluate.faithfulness import labelled_images

        try:
            pairs = labelled_images(options.inputs, model.spec.class_names)
        except ValueError as exc:
            raise Failed(f"{LABELS_NEEDED}; {exc}", 2) from exc
        images, labels = [p for p, _ in pairs], [label for _, label in pairs]
    return images, labels, out_dir, model, chosen


def _methods(options: argparse.Namespace) -> list[str]:
    """The methods --method names, each once in the order given; rollout without any."""
    from vitexplorer.core.explain.methods.rollout import ROLLOUT

    return list(dict.fromkeys(options.method)) or [ROLLOUT.name]


def _warn(source: str | Path, message: str) -> None:
    error(f"warning: {Path(source).name}: {message}")


def run_faithfulness(options: argparse.Namespace) -> int:
    """0 when every image was tested, 1 when some were skipped or none gave a meaningful curve,
    130 when stopped by Ctrl-C."""
    if options.target_class is not None:
        raise Failed(
            "--target-class does not apply: the perturbation test explains the class the model "
            "predicts for each untouched image",
            2,
        )
    options.methods = _methods(options)
    if len(options.methods) > 1:
        raise Failed(
            f"faithfulness tests one method per run and --method was given "
            f"{len(options.methods)} times ({', '.join(options.methods)}); run it once per "
            f"method, with a --out of its own",
            2,
        )
    options.method = options.methods[0]
    protocol = options.protocol
    images, labels, out_dir, model, chosen = _prepare(options, labelled=protocol == "chefer2021")

    from vitexplorer.core.evaluate.faithfulness import FaithfulnessProgress, faithfulness
    from vitexplorer.core.explain.analysis import failure_message
    from vitexplorer.core.explain.maps import method_explainer

    feed = Feed.from_aspect(options.aspect)
    explain = method_explainer(options.method, chosen, feed)
    progress = CountProgress("faithfulness: images", len(images))
    cancel = CtrlCCancels(SimpleNamespace(note=error), unit="image")
    result = None
    try:
        with cancel:
            for event in faithfulness(
                model,
                images,
                explain,
                options.steps,
                lambda: cancel.requested,
                protocol=protocol,
                labels=labels,
                feed=feed,
            ):
                if isinstance(event, FaithfulnessProgress):
                    if event.done:
                        progress(event.done)
                else:
                    result = event
    except (RuntimeError, ValueError) as exc:
        raise Failed(failure_message(exc), 2) from exc
    finally:
        progress.close()
    assert result is not None
    for _source, reason in result.skipped:  # the reason names the file
        error(f"skipped {reason}")
    if not result.images:
        raise Failed("no image could be tested", 1 if not result.cancelled else 130)
    warnings = _faithfulness_warnings(result)
    for warning in warnings:
        error(f"warning: {warning}")
    _write_faithfulness(out_dir, model, options, chosen, result, warnings)
    if result.counted:
        areas = (
            f"area under the positive curve {result.positive_auc:.4f} (lower is better), "
            f"under the negative curve {result.negative_auc:.4f} (higher is better)"
        )
    else:
        areas = "no image gave a meaningful curve, the areas are undefined (null)"
    counted = len(result.counted)
    shown = f"{counted} of {len(result.images)}" if counted < len(result.images) else f"{counted}"
    whole = ", whole images on their own grids" if feed.whole else ""
    print(
        f"{shown} image(s), {options.method}, protocol {protocol}{whole}: {areas} "
        f"-> {out_dir / 'faithfulness.csv'}",
        flush=True,
    )
    if result.cancelled:
        return 130
    return 1 if result.skipped or not result.counted else 0


def _faithfulness_warnings(result: Any) -> list[str]:
    """One line per reason images were left out of the means, naming them (a few at most)."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for source, note in result.excluded:
        by_reason[note].append(Path(source).name)
    warnings = []
    for note, names in by_reason.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        warnings.append(
            f"{len(names)} image(s) left out of the means, their curves mean nothing ({shown}): "
            f"{note}"
        )
    if result.images and not result.counted:
        warnings.append("no image is left: the areas under the curves are undefined (null)")
    return warnings


def _write_faithfulness(
    out_dir: Path,
    model: Any,
    options: argparse.Namespace,
    chosen: Any,
    result: Any,
    warnings: list[str],
) -> None:
    from vitexplorer.core.evaluate.faithfulness import PROTOCOL_FACTS
    from vitexplorer.core.explain.method import get
    from vitexplorer.core.explain.provenance import method_card, strict_json

    protocol = result.protocol
    labelled = protocol == "chefer2021"
    fractions = [float(f) for f in result.fractions]
    header = (
        ["image", "label", "label_name", "predicted"]
        if labelled
        else ["image", "target", "target_name"]
    )
    header += ["positive_auc", "negative_auc"]
    header += [f"positive_{round(100 * f)}" for f in fractions]
    header += [f"negative_{round(100 * f)}" for f in fractions]
    header += ["protocol", "note"]
    keep = result.feed.whole
    if keep:  # each image's own grid, so a row can be made again
        header += ["grid_rows", "grid_cols"]
    names = model.spec.class_names
    value = (lambda v: str(int(v))) if labelled else (lambda v: f"{v:.6f}")
    rows = [",".join(header)]
    for item in result.images:
        cells = [_csv(item.source), str(item.target), _csv(names[item.target])]
        cells += [str(item.predicted)] if labelled else []
        cells += [_cell(item.positive_auc), _cell(item.negative_auc)]
        cells += [value(p) for p in item.positive] + [value(n) for n in item.negative]
        cells += [protocol, _csv(item.note or "")]
        if keep:
            cells += [str(item.grid[0]), str(item.grid[1])]
        rows.append(",".join(cells))
    facts: dict[str, Any] = {
        "check": "faithfulness (perturbation test, Chefer et al. 2021)",
        "protocol": protocol,
        **PROTOCOL_FACTS[protocol],
        "fractions": fractions,
        "images": len(result.images),
        "images_counted": len(result.counted),
        "positive_auc": _finite(result.positive_auc),
        "negative_auc": _finite(result.negative_auc),
        "positive_curve": [_finite(float(v)) for v in result.positive_curve],
        "negative_curve": [_finite(float(v)) for v in result.negative_curve],
    }
    if keep:  # how each input was made, so its curves can be made again (as analyze's cards)
        facts["input"] = {
            "aspect": "keep",
            "images": [
                {"image": item.source, "grid": list(item.grid), "input_size": list(item.input_size)}
                for item in result.images
            ],
        }
    if labelled:
        facts["accuracy_untouched"] = facts["positive_curve"][0]
        preprocessed = (
            "Each image is taken whole at its own aspect ratio (--aspect keep), on a patch grid "
            "of about the model's patch count"
            if keep
            else "The images are preprocessed as the model's own (resize, centre crop)"
        )
        facts["comparing_with_the_paper"] = (
            "the areas have the fraction removed (0 to 0.9) on x and the accuracy (0 to 1) on "
            f"y; the paper's tables print them in percent (x 100). {preprocessed}; the paper "
            "resized ImageNet's validation images to 224 x 224"
        )
    if get(options.method).class_specific:
        facts["explained_class"] = "the class predicted for each untouched image"
    card = method_card(
        model,
        options.method,
        chosen.as_dict(options.method),
        extra={
            **facts,
            "warnings": warnings,
            "excluded": [{"image": s, "reason": r} for s, r in result.excluded],
            "skipped": [{"image": s, "reason": r} for s, r in result.skipped],
            "cancelled": result.cancelled,
            "table": "faithfulness.csv",
        },
    )
    mode = file_mode()
    files = FileSet()  # one set: the card last, naming the table (core/files.py)
    table = files.add(
        out_dir / "faithfulness.csv", lambda f: f.write(("\n".join(rows) + "\n").encode("utf-8"))
    )
    files.card(
        out_dir / "faithfulness.json",
        [table],
        lambda listing: strict_json({**card, "files": listing})[0],
    )
    try:
        files.write(mode)
    except OSError as exc:
        raise Failed(f"cannot write to {out_dir}: {exc.strerror or exc}", 2) from exc


def _csv(text: str) -> str:
    """A CSV cell: quoted when it holds a comma, a quote or a line break."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _cell(value: float) -> str:
    """A number for the CSV; empty when it is undefined (NaN)."""
    return f"{value:.6f}" if math.isfinite(value) else ""


def _json(data: dict[str, Any]) -> bytes:
    from vitexplorer.core.explain.provenance import strict_json

    return strict_json(data)[0]
