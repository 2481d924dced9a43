"""``vitexplorer analyze``: attention maps and predictions for images, without a window."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from vitexplorer.cli.common import (
    DIVERGING,
    PROG,
    add_aspect_argument,
    add_model_arguments,
    check_output_folder,
    check_stem_outputs,
    colour_table,
    error,
    expand_images,
    load_model_for,
    model_inputs,
    output_folder,
    positive_int,
    terminal_text,
    unique_stems,
)
from vitexplorer.cli.methods import (  # compare imports them from here
    add_method_options,
    method_options,
)
from vitexplorer.core.explain.card import output_warnings
from vitexplorer.core.explain.methods.attention import ATTENTION  # torch-free
from vitexplorer.core.io.files import FileSet, file_mode
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.feed import CROP, Feed

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.explain.analysis import ImageAnalysis


class MethodMap(NamedTuple):
    """One method's map of one image: the grid map, its method card and, for a method that
    attributes to the input's pixels (``Method.pixels``), the (height, width) pixel map whose
    sum over each patch the grid map is."""

    heat: np.ndarray
    card: dict[str, Any]
    pixels: np.ndarray | None = None


def analyze_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} analyze",
        description="Run a ViT on each image and write, per image, into DIR: <stem>.attention.npy "
        "(float32, layers x heads x tokens x tokens), <stem>.json (model facts, what the array's "
        "axes hold, the top-5 predictions and every file of the image with its size; written "
        "last) and <stem>.cls.png (the last layer's CLS "
        "attention, mean over heads, over the crop the model saw). Each --method adds "
        "<stem>.<method>.npy (the CLS token's map over the patch grid, float32, grid rows x grid "
        "columns), <stem>.<method>.png (that map over the crop) and <stem>.<method>.json (a "
        "method card: model, weights file hash, preprocessing, method and parameters, so the map "
        "can be made again). A method that attributes to the input's pixels (see "
        f"'{PROG} methods') adds <stem>.<method>.pixels.npy (float32, the model's input height "
        "x width) and its <stem>.<method>.npy is that map summed over each patch; the card "
        "says which is which. With --method attention, <stem>.attention.npy is that map and the "
        "whole capture is written as <stem>.attention_all.npy. The PNGs are figures at least "
        "448 px across (each patch a sharp block), titled with the method, layer, head and "
        "token, with a labelled colour bar. Layers, heads, tokens, patch rows and columns are "
        "numbered from 1, in the options and in every file; the .npy arrays keep numpy's "
        "0-based axes (index 0 of the layer axis is layer 1).",
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders whose image files (in subfolders too) are all analysed",
    )
    add_model_arguments(parser)
    add_aspect_argument(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="images per forward pass (default: as many as 256 MB of attention maps allow, at "
        "most 8: ViT-B/16 8, ViT-L/16 4); 1 runs each image alone, as the app does. A batch is "
        "faster; its maps and probabilities equal each image's own pass to float rounding",
    )
    add_method_options(parser)
    return parser


def run_analyze(options: argparse.Namespace) -> int:
    """``vitexplorer analyze``: 0 when every image was written, 1 when some failed.

    Images go through the model in batches
    (:func:`~vitexplorer.core.explain.analysis.batch_size_for`, or ``--batch-size``) of neighbours
    that share a patch grid; an image that cannot be read ends the batch before it, so every line
    still comes in the order of the images."""
    sources, empty = image_sources(options.images)
    check_output_folder(options.out, options.images, (), model_inputs(options))
    check_stem_outputs(options.out, sources)
    out_dir = output_folder(options.out)
    model = load_model_for(options)
    methods = list(dict.fromkeys(options.method))  # each once, in the order given
    chosen = method_options(options, model.spec, methods, model)

    from vitexplorer.core.explain.analysis import batch_size_for, input_key
    from vitexplorer.core.io.images import ImageLoadError, load_image

    feed = Feed.from_aspect(options.aspect)
    run = BatchRun(model, out_dir, methods, chosen, feed)
    from vitexplorer.core.io.images import _display_name

    for folder in empty:  # one line each, and the other inputs go on
        error(f"{_display_name(Path(folder))}: the folder holds no images")
        run.failures += 1
    batch: list[tuple[str, str, Any]] = []  # (source, stem, image) waiting for the model
    limit, key = 1, None
    try:
        for source, stem in zip(sources, unique_stems(sources), strict=True):
            try:
                image = load_image(source)
            except ImageLoadError as exc:
                run.finish(batch)
                batch = []
                error(str(exc))
                run.failures += 1
                continue
            image_key = input_key(image, model.spec, feed)
            if batch and (image_key != key or len(batch) >= limit):
                run.finish(batch)
                batch = []
            if not batch:
                key = image_key
                limit = options.batch_size or batch_size_for(
                    model.spec, key if feed.whole else None
                )
            batch.append((source, stem, image))
        run.finish(batch)
    finally:
        run.writers.shutdown(cancel_futures=True)  # files half way are never seen (atomic)
    return 1 if run.failures else 0


def image_sources(inputs: list[str]) -> tuple[list[str], list[str]]:
    """The images to analyse and the folders that hold none: each folder's image files
    (:func:`expand_images`, the scanner that ``stats`` and the app use), the other inputs as
    given, so that a file that cannot be read is reported and the others go on. A folder
    without images is one line among the others' results; refused outright only when nothing
    else was given."""
    sources: list[str] = []
    empty: list[str] = []
    for text in inputs:
        path = expand_user(text)
        if not path.is_dir():
            sources.append(text)
        elif found := expand_images([text], allow_empty=True):
            sources += [str(image) for image in found]
        else:
            empty.append(text)
    if empty and not sources:
        expand_images(empty[:1])  # the one-line refusal of an input with nothing to analyse
    return sources, empty


class BatchRun:
    """What ``analyze`` does with a batch of read images: one forward pass (each image alone
    when the batch fails, so each gets its own result or message); each image's methods, in
    this thread (they may run the model); the images' files written by as many threads as
    there are cores (drawing, compressing and writing release the GIL: ViT-B/16's files take
    23 ms an image on 2 cores against 39 ms in one thread); then, image by image, in order,
    its warnings and its line."""

    def __init__(
        self, model: Any, out_dir: Path, methods: list[str], chosen: Any, feed: Feed
    ) -> None:
        self.model, self.out_dir, self.methods, self.chosen = model, out_dir, methods, chosen
        self.feed = feed
        self.lut = colour_table()
        self.mode = file_mode()
        self.failures = 0
        workers = max(1, min(os.cpu_count() or 1, 8))
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="vitexplorer-write")

    def finish(self, batch: list[tuple[str, str, Any]]) -> None:
        from vitexplorer.core.explain.analysis import analyze_images, failure_message

        if not batch:
            return
        images = [image for _, _, image in batch]
        try:
            analyses: list[Any] = analyze_images(self.model, images, self.feed)
        except (RuntimeError, ValueError) as exc:  # e.g. the GPU ran out of memory
            if len(batch) > 1:
                for item in batch:  # one at a time: what fits still gets written
                    self.finish([item])
                return
            error(f"{Path(batch[0][0]).name}: {failure_message(exc)}")
            self.failures += 1
            return
        done = [
            self.explain(*item, analysis) for item, analysis in zip(batch, analyses, strict=True)
        ]
        for (source, stem, _), (outcome, written) in zip(batch, done, strict=True):
            if isinstance(outcome, str):  # the methods failed
                error(f"{Path(source).name}: {outcome}")
                self.failures += 1
                continue
            analysis, maps = outcome
            for warning in image_warnings(analysis, maps):
                error(f"warning: {Path(source).name}: {warning}")
            try:
                written.result()
            except OSError as exc:
                out_dir = self.out_dir
                error(f"{Path(source).name}: cannot write to {out_dir}: {exc.strerror or exc}")
                self.failures += 1
                continue
            print(terminal_text(f"{stem}: {top_line(analysis)}"), flush=True)

    def explain(self, source: str, stem: str, image: Any, analysis: ImageAnalysis) -> Any:
        """(analysis, maps) and the future of the image's files, or (why the methods failed,
        None)."""
        from vitexplorer.core.explain.analysis import failure_message

        try:
            maps = explain_methods(
                self.model, image, source, analysis, self.methods, self.chosen, self.feed
            )
        except (RuntimeError, ValueError) as exc:
            return failure_message(exc), None
        return (analysis, maps), self.writers.submit(self.write, source, stem, analysis, maps)

    def write(self, source: str, stem: str, analysis: ImageAnalysis, maps: dict) -> None:
        """The image's files as one set: the method cards, then ``<stem>.json`` (naming every
        file of the image) written after all the data (:func:`~vitexplorer.core.io.files.
        write_set`)."""
        out_dir, lut, mode = self.out_dir, self.lut, self.mode
        files = FileSet()
        for method, (heat, card, pixels) in maps.items():
            write_method_outputs(
                out_dir, stem, analysis, method, heat, card, lut, into=files, pixels=pixels
            )
        name = full_name(stem, self.methods)
        write_outputs(out_dir, stem, source, analysis, lut, mode, name, files)
        files.write(mode)


def image_warnings(analysis: ImageAnalysis, maps: dict[str, MethodMap]) -> list[str]:
    """Every warning of one image, for stderr: its output's, then each method card's own."""
    warnings = output_warnings(analysis)
    for entry in maps.values():
        warnings += [w for w in entry.card.get("warnings", []) if w not in warnings]
    return warnings


def top_line(analysis: ImageAnalysis) -> str:
    """The top prediction for people: its name and probability, or why there is none; a model
    with random weights says so (:func:`random_weights`), as its files do."""
    return _top_words(analysis) + (" (random weights)" if random_weights(analysis.spec) else "")


def _top_words(analysis: ImageAnalysis) -> str:
    import math

    if not analysis.spec.has_classifier or not analysis.predictions:
        return "no classifier (an image encoder): the attention maps are written"
    top = analysis.predictions[0]
    if not math.isfinite(top.probability):  # no class is named: none is predicted
        from vitexplorer.core.explain.analysis import undefined_prediction

        return undefined_prediction(analysis.logits, analysis.probabilities) or "no prediction"
    if output_warnings(analysis):
        return f"{top.name} {top.probability:.1%} (every class the same: no prediction)"
    return f"{top.name} {top.probability:.1%}"


def random_weights(spec: Any) -> bool:
    """Whether the model's weights are a random initialisation (``--weights none``, the small
    ViT's default), as its spec says."""
    return bool(spec.random_weights)


def write_outputs(
    out_dir: Path,
    stem: str,
    source: str | os.PathLike[str],
    analysis: ImageAnalysis,
    lut: np.ndarray,
    mode: int = 0o644,
    attention_name: str | None = None,
    into: FileSet | None = None,
) -> list[Path]:
    """Write ``<stem>.attention.npy`` (or ``attention_name``), ``<stem>.cls.png`` and then
    ``<stem>.json``, as one set (the card last, its ``files`` naming each file it describes with
    its size in bytes); returns them. ``into`` adds them to a set written later instead, the
    card naming every file already in it too. The JSON is strict: a probability that is not
    finite is null, and ``warnings`` says why (a model whose output is the same for every class,
    or not finite, gets one). It says what the array's axes hold (layers, heads and tokens from
    1 at index 0) and where the map lies in the PNG, a figure of at least 448 px with a title
    and a colour bar."""
    import numpy as np

    from vitexplorer.core.explain.tokens import attention_map
    from vitexplorer.core.render.figure import map_title, render_figure, save_png
    from vitexplorer.core.render.numbering import NUMBERING, attention_axes
    from vitexplorer.core.render.scales import uniform_mark

    spec = analysis.spec
    facts = {
        **spec.describe(),
        "image": str(source),
        "predictions": [
            {"index": p.index, "name": p.name, "probability": p.probability}
            for p in analysis.predictions
        ],
        "forward_seconds": analysis.seconds,  # its share of its batch's pass
        "forward_batch": analysis.batch,
        "warnings": output_warnings(analysis),
        "numbering": NUMBERING,
    }
    last_layer = spec.num_layers - 1
    cls_options = {"layer": last_layer, "head": None, "token": 0}
    cls_map = attention_map(
        analysis.attention,
        layer=last_layer,
        head=None,
        token=0,
        grid=spec.grid,
        num_prefix=spec.num_prefix_tokens,
    )
    title = map_title(ATTENTION.name, cls_options, spec)  # the CLS figure is raw attention
    uniform = uniform_mark(ATTENTION.name, spec.num_tokens)  # the row is over every token
    figure = render_figure(
        analysis.display, cls_map, lut, title, subtitle(spec, source), uniform=uniform
    )
    attention = np.ascontiguousarray(analysis.attention, dtype=np.float32)
    paths = [
        out_dir / (attention_name or f"{stem}.attention.npy"),
        out_dir / f"{stem}.json",
        out_dir / f"{stem}.cls.png",
    ]
    facts["attention_file"] = paths[0].name
    facts["attention_axes"] = attention_axes(
        spec.num_layers, spec.num_heads, spec.num_tokens, spec.num_prefix_tokens
    )
    facts["picture"] = {"title": title, **figure.facts(paths[2].name)}
    files = FileSet() if into is None else into
    named = [path for path, _ in files.files] + [card.path for card in files.cards]
    files.add(paths[0], lambda f: np.save(f, attention, allow_pickle=False))
    files.add(paths[2], lambda f: save_png(figure.image, f))
    files.card(paths[1], [paths[0], paths[2], *named], lambda listing: _card(facts, listing))
    if into is None:
        files.write(mode)
    return paths


def _card(facts: dict[str, Any], listing: list[dict[str, Any]]) -> bytes:
    """A card's strict JSON, with ``files``: the name and size of each file it describes."""
    from vitexplorer.core.explain.provenance import strict_json

    return strict_json({**facts, "files": listing})[0]


def subtitle(spec: Any, source: str | os.PathLike[str]) -> str:
    """The line under a PNG's title: the model (and its random weights, when they are) and the
    image."""
    model = f"{spec.display_name}, random weights" if random_weights(spec) else spec.display_name
    return f"{model} · {Path(source).name}"


def full_name(stem: str, methods: list[str]) -> str:
    """The file of the whole capture: ``<stem>.attention.npy``, unless ``--method attention``
    claims that name for its map over the patch grid; then ``<stem>.attention_all.npy``."""
    claimed = ATTENTION.name in methods
    return f"{stem}.attention_all.npy" if claimed else f"{stem}.attention.npy"


def explain_methods(
    model: Any,
    image: Any,
    source: str | os.PathLike[str],
    analysis: ImageAnalysis,
    methods: list[str],
    options: Any,
    feed: Feed = CROP,
) -> dict[str, MethodMap]:
    """Each method's CLS map for one image, with its method card (and its pixel map, for a
    method that attributes to pixels: an attribution method's one pass gives both). A card's
    ``warnings`` say what makes the map mean nothing: the model's output (the same for every
    class, or not finite) and a map that ranks no patch above another (zero or one value
    everywhere); its ``title`` is the PNG's (method, layer, head and token, from 1)."""
    from vitexplorer.core.explain.attribution import Attributor
    from vitexplorer.core.explain.card import map_card
    from vitexplorer.core.explain.maps import attribute, explanation_map
    from vitexplorer.core.explain.method import get
    from vitexplorer.core.models.preprocessing import preprocess

    results = {}
    spec = analysis.spec
    for method in methods:
        described = get(method)
        batch = None
        if described.needs_model:
            batch = preprocess(image, model.spec, feed).unsqueeze(0).to(model.device)
        pixels = None
        if batch is not None and isinstance(described.compute, Attributor):
            found = attribute(method, model, batch, options, grid=spec.grid)
            heat = found.maps[0]
            if described.pixels and found.pixels is not None:
                pixels = _pixel_map(method, found.pixels[0], tuple(batch.shape[-2:]))
        else:
            heat = explanation_map(method, options, analysis=analysis, model=model, batch=batch)
        # how the input was made, so the map can be made again
        made = {"aspect": "keep", "grid": list(spec.grid)} if feed.whole else None
        card = map_card(model, method, options, analysis, heat, source, made)
        results[method] = MethodMap(heat, card, pixels)
    return results


def _pixel_map(method: str, pixels: Any, size: tuple[int, ...]) -> np.ndarray:
    """A method's pixel map of one image, (height, width) float32, checked to be the input's."""
    import numpy as np

    found = np.ascontiguousarray(pixels, dtype=np.float32)
    if found.shape != tuple(int(n) for n in size):
        raise ValueError(
            f"the {method} method gave a {'x'.join(map(str, found.shape))} pixel map for a "
            f"{'x'.join(map(str, size))} input"
        )
    return found


def write_method_outputs(
    out_dir: Path,
    stem: str,
    analysis: ImageAnalysis,
    method: str,
    heat: np.ndarray,
    card: dict[str, Any],
    lut: np.ndarray,
    mode: int = 0o644,
    *,
    name: str | None = None,
    levels: tuple[float, float] | None = None,
    axes: list[str] | None = None,
    uniform: bool = True,
    into: FileSet | None = None,
    pixels: np.ndarray | None = None,
) -> list[Path]:
    """Write ``<stem>.<method>.npy`` (the map as computed), ``.png`` (a figure: the map over
    the crop, at least 448 px, with the card's ``title`` and a colour bar) and ``.json`` (the
    method card, strict JSON: what is not finite is null; written last, its ``files`` naming
    the two others with their sizes); returns them. ``into`` adds them to a set written later
    instead. ``name`` replaces
    ``<method>`` in the file names, ``levels`` the map's own colour scale, ``axes`` what the
    map's axes hold (default: patch rows and columns), and a card's ``subtitle`` the line
    under the title (default: the model and the image). The colour bar of a map whose rows
    are distributions (attention, rollout) marks the uniform level 1/N, N the tokens of
    ``analysis``, and the card's ``picture`` records it as ``uniform_level``; ``uniform``
    False leaves it off (a map that is no such row: a difference of two). ``pixels``, the
    pixel map of a method that attributes to pixels, adds ``<stem>.<method>.pixels.npy``
    (float32, the input's height x width) to the files, and the card says which map is which:
    ``pixels`` describes it and ``map.meaning`` says the grid map is its sum over each patch.
    A signed method's map (integrated gradients, the LRP methods, occlusion) on its own scale is
    drawn on the diverging table :data:`DIVERGING` from -m to m, m its largest magnitude, and
    its card's ``picture`` names that colour map."""
    import numpy as np

    from vitexplorer.core.render.colour_tables import SIGNED_COLOUR_MAP
    from vitexplorer.core.render.figure import render_figure, save_png
    from vitexplorer.core.render.numbering import map_axes
    from vitexplorer.core.render.scales import is_signed, symmetric_range, uniform_mark

    heat = np.ascontiguousarray(heat, dtype=np.float32)
    title = card.get("title") or method
    under = card.get("subtitle") or subtitle(analysis.spec, card["image"])
    mark = uniform_mark(method, analysis.spec.num_tokens) if uniform else None
    signed = levels is None and is_signed(method)  # its own scale, symmetric around zero
    if signed:
        lut, levels = colour_table(DIVERGING), symmetric_range(heat)
    figure = render_figure(analysis.display, heat, lut, title, under, levels=levels, uniform=mark)
    paths = [out_dir / f"{stem}.{name or method}.{ext}" for ext in ("npy", "png", "json")]
    card = {
        **card,
        "map": {
            "file": paths[0].name,
            "shape": list(heat.shape),
            "dtype": "float32",
            "axes": axes or map_axes(*heat.shape),
        },
        "picture": figure.facts(paths[1].name),
    }
    if signed:
        card["picture"]["colour_map"] = SIGNED_COLOUR_MAP
    described = paths[:2]
    files = FileSet() if into is None else into
    if pixels is not None:
        from vitexplorer.core.explain.card import GRID_OF_PIXELS, pixel_map_facts

        pixel_map = np.ascontiguousarray(pixels, dtype=np.float32)
        pixel_path = out_dir / f"{stem}.{name or method}.pixels.npy"
        card["map"]["meaning"] = GRID_OF_PIXELS
        card["pixels"] = pixel_map_facts(method, pixel_path.name, pixel_map.shape)
        files.add(pixel_path, lambda f: np.save(f, pixel_map, allow_pickle=False))
        described = [*described, pixel_path]
    files.add(paths[0], lambda f: np.save(f, heat, allow_pickle=False))
    files.add(paths[1], lambda f: save_png(figure.image, f))
    files.card(paths[2], described, lambda listing: _card(card, listing))
    if into is None:
        files.write(mode)
    return paths
