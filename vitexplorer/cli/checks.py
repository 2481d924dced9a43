"""``vitexplorer sanity`` and ``vitexplorer faithfulness``: checks of the explanation methods.

``sanity`` is the cascading randomisation of Adebayo et al. (2018): the model's parameters are
re-initialised from the top down and the map is compared with the original after each step.
``faithfulness`` is the perturbation test of Chefer et al. (2021): the most (or least) relevant
patches are removed in steps and the predicted class's probability is followed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vitexplorer.cli.analyze import add_method_options, method_options
from vitexplorer.cli.common import (
    PROG,
    CountProgress,
    CtrlCCancels,
    Failed,
    add_model_arguments,
    error,
    expand_images,
    file_mode,
    load_model_for,
    output_folder,
    positive_int,
    unique_stems,
    write_atomic,
)


def _common_arguments(parser: argparse.ArgumentParser, inputs_help: str) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help=inputs_help)
    add_model_arguments(parser)
    add_method_options(parser, repeatable=False)


def sanity_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} sanity",
        description="The sanity check of Adebayo et al. (2018) for one explanation method: "
        "re-initialise the model's parameters from the top down (the head, then the last "
        "encoder block, ... down to the patch embedding; on a copy) and after each step compare "
        "the method's CLS map with the original by Spearman rank correlation. A map that stays "
        "the same when the weights it claims to explain are destroyed explains nothing. Writes, "
        "per image, <stem>.sanity.csv (step, spearman), <stem>.sanity.npy (the map after each "
        "step, steps x rows x columns) and <stem>.sanity.json (a method card with the steps).",
    )
    _common_arguments(parser, "image files, or folders of them")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the re-initialisation (default: 0)"
    )
    return parser


def faithfulness_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} faithfulness",
        description="The perturbation test of Chefer et al. (2021) for one explanation method, "
        "over images: remove the most relevant patches (positive test) or the least relevant "
        "(negative test) in steps, each time setting their pixels to the dataset's mean colour, "
        "and follow the probability of the class predicted for the untouched image. A faithful "
        "map gives a small area under the positive curve and a large one under the negative "
        "curve. Writes faithfulness.csv (one row per image: AUCs and both curves) and "
        "faithfulness.json (a method card with the means). Ctrl-C stops after the current "
        "image and still writes the images done.",
    )
    _common_arguments(parser, "image files, or folders whose image files (in subfolders too)")
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=10,
        metavar="N",
        help="removal steps from 0%% to 100%% of the patches (default: 10, steps of 10%%)",
    )
    return parser


def _prepare(options: argparse.Namespace) -> tuple[list[Path], Path, Any, Any]:
    images = expand_images(options.inputs)
    out_dir = output_folder(options.out)
    model = load_model_for(options)
    chosen = method_options(options, model.spec, [options.method])
    return images, out_dir, model, chosen


def run_sanity(options: argparse.Namespace) -> int:
    """0 when every image was checked, 1 when some failed."""
    images, out_dir, model, chosen = _prepare(options)

    import numpy as np

    from vitexplorer.core.analysis import failure_message
    from vitexplorer.core.checks import sanity_check
    from vitexplorer.core.data import ImageLoadError, load_image, preprocess
    from vitexplorer.core.methods import method_explainer
    from vitexplorer.core.provenance import method_card

    explain = method_explainer(options.method, chosen)
    mode = file_mode()
    failures = 0
    for path, stem in zip(images, unique_stems(images), strict=True):
        try:
            batch = preprocess(load_image(path), model.spec).unsqueeze(0).to(model.device)
            steps = list(sanity_check(model, batch, explain, seed=options.seed))
        except ImageLoadError as exc:
            error(str(exc))
            failures += 1
            continue
        except (RuntimeError, ValueError) as exc:
            error(f"{path.name}: {failure_message(exc)}")
            failures += 1
            continue
        rows = ["step,randomised,spearman"]
        randomised: list[str] = []
        for step in steps:
            if step.name != "original":
                randomised.append(step.name)
            rows.append(f'{step.name},"{" + ".join(randomised)}",{step.correlation:.6f}')
        maps = np.stack([step.map for step in steps]).astype(np.float32)
        card = method_card(
            model,
            options.method,
            chosen.as_dict(options.method),
            path,
            {
                "check": "sanity (cascading randomisation, Adebayo et al. 2018)",
                "seed": options.seed,
                "steps": [{"step": s.name, "spearman": _finite(s.correlation)} for s in steps],
                "maps": {"file": f"{stem}.sanity.npy", "shape": list(maps.shape)},
            },
        )
        try:
            write_atomic(
                out_dir / f"{stem}.sanity.csv",
                lambda f, rows=rows: f.write(("\n".join(rows) + "\n").encode("utf-8")),
                mode,
            )
            write_atomic(
                out_dir / f"{stem}.sanity.npy",
                lambda f, maps=maps: np.save(f, maps, allow_pickle=False),
                mode,
            )
            write_atomic(out_dir / f"{stem}.sanity.json", lambda f, c=card: f.write(_json(c)), mode)
        except OSError as exc:
            raise Failed(f"cannot write to {out_dir}: {exc.strerror or exc}", 2) from exc
        summary = ", ".join(f"{s.name} {s.correlation:+.2f}" for s in steps[1:])
        print(f"{stem}: Spearman with the original map after randomising: {summary}", flush=True)
    return 1 if failures else 0


def run_faithfulness(options: argparse.Namespace) -> int:
    """0 when every image was tested, 1 when some were skipped, 130 when stopped by Ctrl-C."""
    if options.target_class is not None:
        raise Failed(
            "--target-class does not apply: the perturbation test follows the class the model "
            "predicts for each untouched image",
            2,
        )
    images, out_dir, model, chosen = _prepare(options)

    from vitexplorer.core.analysis import failure_message
    from vitexplorer.core.checks import FaithfulnessProgress, faithfulness
    from vitexplorer.core.methods import method_explainer

    explain = method_explainer(options.method, chosen)
    progress = CountProgress("faithfulness: images", len(images))
    cancel = CtrlCCancels(SimpleNamespace(note=error), unit="image")
    result = None
    try:
        with cancel:
            for event in faithfulness(
                model, images, explain, options.steps, lambda: cancel.requested
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
    for source, reason in result.skipped:
        error(f"skipped {source}: {reason}")
    if not result.images:
        raise Failed("no image could be tested", 1 if not result.cancelled else 130)
    _write_faithfulness(out_dir, model, options, chosen, result)
    print(
        f"{len(result.images)} image(s), {options.method}: area under the positive curve "
        f"{result.positive_auc:.4f} (lower is better), under the negative curve "
        f"{result.negative_auc:.4f} (higher is better) -> {out_dir / 'faithfulness.csv'}",
        flush=True,
    )
    if result.cancelled:
        return 130
    return 1 if result.skipped else 0


def _write_faithfulness(
    out_dir: Path, model: Any, options: argparse.Namespace, chosen: Any, result: Any
) -> None:
    from vitexplorer.core.provenance import method_card

    fractions = [float(f) for f in result.fractions]
    header = ["image", "target", "target_name", "positive_auc", "negative_auc"]
    header += [f"positive_{round(100 * f)}" for f in fractions]
    header += [f"negative_{round(100 * f)}" for f in fractions]
    names = model.spec.class_names
    rows = [",".join(header)]
    for item in result.images:
        cells = [_csv(item.source), str(item.target), _csv(names[item.target])]
        cells += [f"{item.positive_auc:.6f}", f"{item.negative_auc:.6f}"]
        cells += [f"{p:.6f}" for p in item.positive] + [f"{n:.6f}" for n in item.negative]
        rows.append(",".join(cells))
    card = method_card(
        model,
        options.method,
        chosen.as_dict(options.method),
        extra={
            "check": "faithfulness (perturbation test, Chefer et al. 2021)",
            "removed_to": "the dataset mean colour (0 after normalisation)",
            "fractions": fractions,
            "images": len(result.images),
            "positive_auc": _finite(result.positive_auc),
            "negative_auc": _finite(result.negative_auc),
            "skipped": [{"image": s, "reason": r} for s, r in result.skipped],
            "cancelled": result.cancelled,
            "table": "faithfulness.csv",
        },
    )
    mode = file_mode()
    try:
        write_atomic(
            out_dir / "faithfulness.csv",
            lambda f: f.write(("\n".join(rows) + "\n").encode("utf-8")),
            mode,
        )
        write_atomic(out_dir / "faithfulness.json", lambda f: f.write(_json(card)), mode)
    except OSError as exc:
        raise Failed(f"cannot write to {out_dir}: {exc.strerror or exc}", 2) from exc


def _csv(text: str) -> str:
    """A CSV cell: quoted when it holds a comma, a quote or a line break."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")
