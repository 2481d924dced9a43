"""``vitexplorer sanity``: the cascading randomisation of Adebayo et al. (2018) for one or more
explanation methods. The model's parameters are re-initialised from the top down (on a copy) and
each method's map is compared with the original after each step. A correlation that is undefined
(a map that ranks no patch above another) is null in the JSON and empty in the CSV, with a
warning."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from vitexplorer.cli.checks import (
    _cell,
    _common_arguments,
    _finite,
    _json,
    _methods,
    _prepare,
    _warn,
)
from vitexplorer.cli.common import PROG, Failed, error, terminal_text, unique_stems
from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.core.models.feed import Feed


def sanity_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} sanity",
        description="The sanity check of Adebayo et al. (2018) for one explanation method: "
        "re-initialise the model's parameters from the top down (the head, then the last "
        "encoder block, ... down to the patch embedding; on a copy) and after each step compare "
        "the method's CLS map with the original by Spearman rank correlation. A map that stays "
        "the same when the weights it claims to explain are destroyed explains nothing. Writes, "
        "per image, <stem>.sanity.csv (step, spearman), <stem>.sanity.npy (the map after each "
        "step, steps x rows x columns: the image's own grid with --aspect keep) and "
        "<stem>.sanity.json (a method card with the steps; with --aspect keep, the input's "
        "grid and size too). "
        "Relevance explains one class at every step: --target-class, else the class the "
        "original model predicts. A correlation that is undefined (a map that is zero or one "
        "value everywhere) is left empty in the CSV and null in the card, with a warning.",
    )
    _common_arguments(
        parser,
        "image files, or folders of them",
        "the method whose maps are tested; repeat for several, each checked in turn, each "
        "line naming it, and each method's files then named <stem>.<method>.sanity.* "
        "(default: rollout)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the re-initialisation (default: 0)"
    )
    return parser


def run_sanity(options: argparse.Namespace) -> int:
    """0 when every image was checked with every method, 1 when some failed."""
    options.methods = _methods(options)
    images, _, out_dir, model, chosen = _prepare(options)

    from vitexplorer.core.explain.analysis import failure_message
    from vitexplorer.core.explain.maps import image_logits
    from vitexplorer.core.io.images import ImageLoadError, load_image
    from vitexplorer.core.models.preprocessing import input_grid, preprocess

    feed = Feed.from_aspect(options.aspect)
    several = len(options.methods) > 1
    failures = 0
    for path, stem in zip(images, unique_stems(images), strict=True):
        try:
            batch = preprocess(load_image(path), model.spec, feed).unsqueeze(0).to(model.device)
            # the whole image at its own aspect ratio: its own grid, the any-size forward
            grid = input_grid(model.spec, *batch.shape[-2:]) if feed.whole else model.spec.grid
            logits = image_logits(model, batch, grid != model.spec.grid)
        except ImageLoadError as exc:
            error(str(exc))
            failures += 1
            continue
        except (RuntimeError, ValueError) as exc:
            error(f"{path.name}: {failure_message(exc)}")
            failures += 1
            continue
        for method in options.methods:
            name = f"{stem}.{method}.sanity" if several else f"{stem}.sanity"
            check = SanityRun(model, options, chosen, method, feed)
            try:
                check.run(path, batch, grid, logits)
            except (RuntimeError, ValueError) as exc:
                shown = f"{path.name}: {method}" if several else path.name
                error(f"{shown}: {failure_message(exc)}")
                failures += 1
                continue
            check.write(out_dir, name, path)
            print(terminal_text(check.line(stem, grid)), flush=True)
    return 1 if failures else 0


class SanityRun:
    """One method's sanity check of one image: its steps, warnings, files and line."""

    def __init__(
        self, model: Any, options: argparse.Namespace, chosen: Any, method: str, feed: Feed
    ) -> None:
        self.model, self.options, self.chosen, self.method = model, options, chosen, method
        self.feed = feed
        self.steps: list[Any] = []
        self.held: Any = None
        self.output: str | None = None
        self.facts: dict[str, Any] = {}

    def run(self, path: Path, batch: Any, grid: tuple[int, int], logits: Any) -> None:
        from vitexplorer.core.evaluate.sanity import sanity_check
        from vitexplorer.core.explain.analysis import constant_output
        from vitexplorer.core.explain.maps import hold_target, method_explainer

        # relevance explains the same class at every step, or a change of class would be
        # mixed into the change of weights
        self.held = hold_target(self.method, self.chosen, logits)
        explain = method_explainer(self.method, self.held, self.feed)
        self.steps = list(sanity_check(self.model, batch, explain, seed=self.options.seed))
        self.output = constant_output(logits)
        if self.feed.whole:  # how the input was made, so the maps can be made again (as analyze's)
            self.facts["input"] = _input_facts(grid, batch.shape[-2:])

    def write(self, out_dir: Path, name: str, path: Path) -> None:
        """``<name>.csv``, ``.npy`` and ``.json``; the warnings on stderr."""
        import numpy as np

        from vitexplorer.core.explain.provenance import method_card
        from vitexplorer.core.render.numbering import map_axes

        method, steps = self.method, self.steps
        warnings = _sanity_warnings(steps, self.output)
        for warning in warnings:
            _warn(path, f"{method}: {warning}" if len(self.options.methods) > 1 else warning)
        rows = ["step,randomised,spearman"]
        randomised: list[str] = []
        for step in steps:
            if step.name != "original":
                randomised.append(step.name)
            rows.append(f'{step.name},"{" + ".join(randomised)}",{_cell(step.correlation)}')
        maps = np.stack([step.map for step in steps]).astype(np.float32)
        facts: dict[str, Any] = {
            "check": "sanity (cascading randomisation, Adebayo et al. 2018)",
            "seed": self.options.seed,
            "target_class": _held_class(method, self.chosen, self.held, self.model),
            "steps": [_step_facts(s) for s in steps],
            **self.facts,
        }
        facts["maps"] = {
            "file": f"{name}.npy",
            "shape": list(maps.shape),
            "axes": map_axes(
                maps.shape[1], maps.shape[2], leading=f"steps: {', '.join(s.name for s in steps)}"
            ),
        }
        facts["warnings"] = warnings
        card = method_card(self.model, method, self.held.as_dict(method), path, facts)
        table = ("\n".join(rows) + "\n").encode("utf-8")
        mode = file_mode()
        files = FileSet()  # one set: the card last, naming the table and maps (core/files.py)
        data = [
            files.add(out_dir / f"{name}.csv", lambda f: f.write(table)),
            files.add(out_dir / f"{name}.npy", lambda f: np.save(f, maps, allow_pickle=False)),
        ]
        files.card(
            out_dir / f"{name}.json", data, lambda listing: _json({**card, "files": listing})
        )
        try:
            files.write(mode)
        except OSError as exc:
            raise Failed(
                f"cannot write to {out_dir}: {exc.strerror or exc}; this image's files were not "
                f"written (free some space or choose another --out)",
                2,
            ) from exc

    def line(self, stem: str, grid: tuple[int, int]) -> str:
        """What stdout says: the image, the method and each step's correlation."""
        steps = self.steps
        summary = ", ".join(
            f"{s.name} {s.correlation:+.2f}"
            if math.isfinite(s.correlation)
            else f"{s.name} undefined"
            for s in steps[1:]
        )
        if steps[0].note:
            summary = "undefined at every step, the original map ranks no patch above another"
        shown = f"{stem} (whole image, {grid[0]}x{grid[1]} patches)" if self.feed.whole else stem
        return (
            f"{shown}: Spearman of the {self.method} map with the original after "
            f"randomising: {summary}"
        )


def _sanity_warnings(steps: list[Any], output: str | None) -> list[str]:
    """One line each: a constant output, a flat original map, flat maps after some steps."""
    warnings = [f"the original model's output: {output}"] if output else []
    if steps[0].note:
        warnings.append(
            f"{steps[0].note}, so every Spearman correlation is undefined (null in the card, "
            f"empty in the CSV)"
        )
        return warnings
    flat = [s.name for s in steps[1:] if s.note]
    if flat:
        warnings.append(
            f"the map ranks no patch above another after randomising {', '.join(flat)}: "
            f"those correlations are undefined (null in the card, empty in the CSV)"
        )
    return warnings


def _input_facts(grid: tuple[int, int], size: Any) -> dict[str, Any]:
    """How an image at its own aspect ratio was made: the card's ``input``, as analyze's."""
    return {
        "aspect": "keep",
        "grid": [int(grid[0]), int(grid[1])],
        "input_size": [int(size[0]), int(size[1])],
    }


def _step_facts(step: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"step": step.name, "spearman": _finite(step.correlation)}
    if step.note:
        facts["note"] = step.note
    return facts


def _held_class(method: str, chosen: Any, held: Any, model: Any) -> dict[str, Any] | None:
    """The class relevance explained at every step, and where it came from; None for the
    class-agnostic methods."""
    from vitexplorer.core.explain.method import get

    if not get(method).class_specific:
        return None
    index = held.target_class
    return {
        "index": index,
        "name": model.spec.class_names[index],
        "from": "--target-class"
        if chosen.target_class is not None
        else "the original model's prediction",
        "held": "the same class is explained at every step",
    }
