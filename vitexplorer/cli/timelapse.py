"""``vitexplorer timelapse CHECKPOINT --out DIR``: the time-lapse a training run saved in its
checkpoint, written out per probe image: an animated GIF, a PNG per epoch, and the maps as
``.npy`` with a method card; plus the per-head statistics of every epoch as CSV."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from vitexplorer.cli.common import (
    PROG,
    Failed,
    check_output_folder,
    colour_table,
    output_folder,
    terminal_text,
    unique_stems,
)
from vitexplorer.core.io.all_or_none import AllOrNone
from vitexplorer.core.io.paths import expand_user

FORMATS = ("gif", "png", "npy")
MAPS = ("rollout", "attention")
SCALES = ("epochs", "frame")
GIF_MS = 700  # each epoch's frame, in milliseconds


def timelapse_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} timelapse",
        description="Write out the time-lapse that 'train' or 'finetune' (or the app) saved in a "
        "checkpoint: for each probe image, the map of every captured epoch (0 is before the "
        "first step) as an animated GIF, a PNG per epoch, and a .npy of shape (epochs, rows, "
        "columns) with a .json method card; and timelapse-heads.csv, every head's mean attention "
        "distance, entropy and prefix share at every epoch, averaged over the probes. Exit "
        "status: 0 written, 2 a problem with the checkpoint or the options.",
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint saved with a time-lapse")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--map",
        choices=MAPS,
        default="rollout",
        help="rollout: the CLS token's rollout (heads averaged, nothing discarded); attention: "
        "the CLS token's attention in --layer and --head (default: %(default)s)",
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=-1,
        metavar="L",
        help="attention: the layer, from 1; -1 is the last (default: -1)",
    )
    parser.add_argument(
        "--head",
        type=int,
        default=None,
        metavar="H",
        help="attention: the head, from 1 (default: the mean of the heads)",
    )
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="epochs",
        help="epochs: one colour scale for a probe's every frame, from its lowest to its highest "
        "value over the epochs, so that colours compare between frames; frame: each frame on "
        "its own range, which shows more structure in each but makes a near-uniform map look "
        "as structured as a trained one (default: %(default)s)",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=FORMATS,
        help="what to write; repeat for more (default: all three)",
    )
    return parser


DAMAGED_ADVICE = "the model itself loads; train again to record a new time-lapse"


def run_timelapse(options: argparse.Namespace) -> int:
    """0 when every file was written; 2 (one line, nothing written) for a checkpoint without a
    usable time-lapse, impossible options or an output folder that cannot take the files."""
    from vitexplorer.core.models.checkpoint import WeightsFileError
    from vitexplorer.core.render.numbering import index_of
    from vitexplorer.core.training.timelapse import TimeLapseError, check_against, read_timelapse

    path = expand_user(options.checkpoint)
    try:
        timelapse = read_timelapse(path)
    except WeightsFileError as exc:
        raise Failed(str(exc), 2) from exc
    except TimeLapseError as exc:
        raise Failed(f"{exc}; {DAMAGED_ADVICE}", 2) from exc
    except OSError as exc:
        raise Failed(f"cannot read {path}: {exc.strerror or exc}", 2) from exc
    if timelapse is None:
        raise Failed(
            f"{path.name} holds no time-lapse: it was saved without probes (--probes 0) or by an "
            f"older vitexplorer; train again to record one",
            2,
        )
    model = _load(path)
    try:
        check_against(timelapse, model.spec, path)
    except TimeLapseError as exc:
        raise Failed(f"{exc}; {DAMAGED_ADVICE}", 2) from exc
    layers, heads = timelapse.frames[0].distance.shape[1:]
    layer = head = None
    if options.map == "attention":
        try:
            layer = index_of(options.layer, "--layer", layers, "layer", from_end=True)
            if options.head is not None:
                head = index_of(options.head, "--head", heads, "head")
        except ValueError as exc:
            raise Failed(str(exc), 2) from exc
    formats = tuple(dict.fromkeys(options.formats or FORMATS))
    names = output_names(timelapse, options.map, formats)
    check_output_folder(options.out, [], names, [("the checkpoint", path)])
    made = missing_folders(expand_user(options.out))
    out = output_folder(options.out)
    try:
        written = write_timelapse(
            out, timelapse, model, options.map, layer, head, formats, path, options.scale
        )
    except BaseException as exc:  # a failed write, Ctrl-C: the set left nothing behind
        for folder in made:  # made by this run, and left empty by the failed set
            with contextlib.suppress(OSError):
                folder.rmdir()
        if not isinstance(exc, OSError):
            raise
        raise Failed(
            f"cannot write to {out}: {exc.strerror or exc}; nothing was written (free some "
            f"space or choose another --out)",
            2,
        ) from exc
    for item in written:
        print(terminal_text(str(item)))
    return 0


def output_names(timelapse: Any, kind: str, formats: tuple[str, ...]) -> list[str]:
    """The names :func:`write_timelapse` writes in its folder (a probe's PNGs: its folder)."""
    suffixes = {"gif": (".gif",), "png": ("",), "npy": (".npy", ".json")}
    names = [
        f"{stem}.{kind}{suffix}"
        for stem in _stems(timelapse)
        for format in formats
        for suffix in suffixes[format]
    ]
    return [*names, "timelapse-heads.csv"]


def missing_folders(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, the innermost first."""
    missing = []
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def _stems(timelapse: Any) -> list[str]:
    return [f"probe-{i + 1:02d}-{s}" for i, s in enumerate(unique_stems(timelapse.sources))]


def _load(path: Path) -> Any:
    """The checkpoint's model (its class names, preprocessing and provenance for the cards)."""
    from vitexplorer.core.explain.analysis import failure_message
    from vitexplorer.core.models.loading import load_model

    try:
        return load_model(str(path), device="cpu")
    except (ValueError, RuntimeError, OSError) as exc:
        raise Failed(f"cannot load the model in {path.name}: {failure_message(exc)}", 2) from exc


def write_timelapse(
    out: Path,
    timelapse: Any,
    model: Any,
    kind: str,
    layer: int | None,
    head: int | None,
    formats: tuple[str, ...],
    checkpoint: Path,
    scale: str = "epochs",
) -> list[Path]:
    """Write the chosen formats for every probe and the per-head CSV, as one set (all or none:
    :class:`~vitexplorer.core.io.all_or_none.AllOrNone`); the paths written. ``scale`` "epochs"
    draws a probe's frames on one colour scale (their range over the epochs), "frame" each on its
    own; either way the bar marks the uniform level 1/N. OSError when the set cannot be written."""
    from functools import partial

    from vitexplorer.core.render.figure import save_png
    from vitexplorer.core.render.scales import uniform_label, uniform_level
    from vitexplorer.core.training.timelapse import epoch_levels, heads_csv, probe_maps, row_tokens

    if scale not in SCALES:
        raise ValueError(f"unknown colour scale {scale!r}; use {' or '.join(SCALES)}")
    lut = colour_table()
    tokens = row_tokens(timelapse)
    uniform = (uniform_level(tokens), uniform_label(tokens))
    written: list[Path] = []
    with AllOrNone() as files:
        for probe, stem in enumerate(_stems(timelapse)):
            maps = probe_maps(timelapse, probe, kind, layer, head)
            levels = epoch_levels(maps) if scale == "epochs" else None
            shown = timelapse.frames if {"gif", "png"} & set(formats) else []
            method = (kind, layer, head)
            figures = [
                _figure(timelapse, model, probe, frame, maps[i], method, lut, levels, uniform)
                for i, frame in enumerate(shown)
            ]
            if "gif" in formats:
                written.append(_write_gif(files, out / f"{stem}.{kind}.gif", figures))
            if "png" in formats:
                folder = files.folder(out / f"{stem}.{kind}")
                for frame, figure in zip(timelapse.frames, figures, strict=True):
                    path = folder / f"epoch-{frame.epoch:03d}.png"
                    files.write(path, partial(save_png, figure))
                written.append(folder)
            if "npy" in formats:
                written += _write_npy(files, out, stem, maps, timelapse, model, probe, kind,
                                      layer, head, checkpoint, scale)  # fmt: skip
        text = heads_csv(timelapse).encode()
        written.append(files.write(out / "timelapse-heads.csv", lambda f: f.write(text)))
    return written


def _title(timelapse: Any, model: Any, probe: int, frame: Any) -> str:
    names = model.spec.class_names
    last = timelapse.frames[-1].epoch
    words = f"epoch {frame.epoch} of {last}"
    if frame.epoch == 0:
        words += " (before training)"
    if timelapse.best_epoch == frame.epoch:
        words += " (kept)"
    predicted = names[int(frame.predicted[probe])]
    label = int(timelapse.labels[probe])
    if frame.tied(probe, timelapse.num_classes):  # a tie is no prediction, never right
        words += f": undecided, a tie at {frame.probability[probe]:.0%}"
    else:
        words += f": {predicted} {frame.probability[probe]:.0%}"
    if label >= 0:
        words += f" (true: {names[label]})"
    return words


def _method_words(kind: str, layer: int | None, head: int | None, model: Any) -> str:
    from vitexplorer.core.render.figure import map_title
    from vitexplorer.core.training.timelapse import ROLLOUT_METHOD

    if kind == "rollout":
        return ROLLOUT_METHOD
    return map_title("attention", {"layer": layer, "head": head, "token": 0}, model.spec)


def _figure(
    timelapse: Any,
    model: Any,
    probe: int,
    frame: Any,
    heat: Any,
    method: tuple[str, int | None, int | None],
    lut: Any,
    levels: tuple[float, float] | None = None,
    uniform: tuple[float, str] | None = None,
) -> Any:
    """One frame's figure: the map over the probe on ``levels`` (None: its own range), the
    uniform level marked on the bar, the epoch and prediction as its title."""
    from vitexplorer.core.render.figure import render_figure

    title = _title(timelapse, model, probe, frame)
    subtitle = f"{_method_words(*method, model)} · {timelapse.sources[probe]}"
    image = timelapse.images[probe]
    return render_figure(image, heat, lut, title, subtitle, levels=levels, uniform=uniform).image


def _write_gif(files: AllOrNone, path: Path, figures: list[Any]) -> Path:
    """The figures as one looping GIF, each padded to the largest (the colour bar's labels make
    their widths differ)."""
    from PIL import Image

    from vitexplorer.core.render.figure import BACKGROUND

    width = max(f.width for f in figures)
    height = max(f.height for f in figures)
    frames = []
    for figure in figures:
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        canvas.paste(figure, (0, 0))
        frames.append(canvas)
    files.write(
        path,
        lambda f: frames[0].save(
            f, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_MS, loop=0
        ),
    )
    return path


def _write_npy(
    files: AllOrNone,
    out: Path,
    stem: str,
    maps: Any,
    timelapse: Any,
    model: Any,
    probe: int,
    kind: str,
    layer: int | None,
    head: int | None,
    checkpoint: Path,
    scale: str = "epochs",
) -> list[Path]:
    import numpy as np

    from vitexplorer.core.explain.provenance import method_card, strict_json
    from vitexplorer.core.render.numbering import map_axes

    npy, card_path = out / f"{stem}.{kind}.npy", out / f"{stem}.{kind}.json"
    names = model.spec.class_names
    parameters: dict[str, Any] = {"token": 0}
    if kind == "rollout":
        parameters.update(head_fusion="mean", discard_ratio=0.0, start_layer=0)
    else:
        parameters.update(layer=layer, head=head)
    label = int(timelapse.labels[probe])
    card = method_card(
        model,
        kind,
        parameters,
        image=timelapse.sources[probe],
        extra={
            "title": _method_words(kind, layer, head, model),
            "timelapse": {
                "checkpoint": str(checkpoint),
                "epochs": timelapse.epochs,
                "best_epoch": timelapse.best_epoch,
                "true_class": names[label] if label >= 0 else None,
                "predicted": [names[int(f.predicted[probe])] for f in timelapse.frames],
                "probability": [round(float(f.probability[probe]), 4) for f in timelapse.frames],
                # a tie (within TIE_TOLERANCE) is no prediction: never right nor wrong
                "tie": [f.tied(probe, timelapse.num_classes) for f in timelapse.frames],
                "captured": "during training, before the first step (epoch 0) and after every "
                "epoch, with that epoch's weights, in float32; stored in the checkpoint as "
                "float16, which is what this map holds (as float32)",
                "note": "the model in the checkpoint holds the weights of "
                + (
                    f"epoch {timelapse.best_epoch}"
                    if timelapse.best_epoch is not None
                    else "the last epoch"
                ),
            },
            "map": {
                "file": npy.name,
                "shape": list(maps.shape),
                "dtype": "float32",
                "axes": map_axes(maps.shape[1], maps.shape[2], leading="epoch"),
            },
            "command": f"{PROG} timelapse {checkpoint} --out DIR --map {kind}"
            + ("" if layer is None else f" --layer {layer + 1}")
            + ("" if head is None else f" --head {head + 1}")
            + ("" if scale == "epochs" else f" --scale {scale}"),
        },
    )
    text = strict_json(card)[0]
    array = np.ascontiguousarray(maps, dtype=np.float32)
    files.write(npy, lambda f: np.save(f, array, allow_pickle=False))
    files.write(card_path, lambda f: f.write(text))
    return [npy, card_path]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_timelapse(timelapse_parser().parse_args()))
