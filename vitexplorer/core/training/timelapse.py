"""Attention through training: a time-lapse of a few probe images, one frame per epoch.

A training run (from scratch or a fine-tune) keeps a handful of probe images. Once before the first
step (epoch 0) and after every epoch it captures, for each probe, what the model then does with
it: the predicted class and its probability, the first prefix token's (CLS's) attention row in
every layer and head, the CLS row of the rollout (heads averaged, nothing discarded, from the first
layer: the explorer's default rollout) and every head's mean attention distance, entropy and
prefix share (:func:`vitexplorer.core.explain.head_stats.head_statistics`). All of it is what a
fresh capture of the probe with that epoch's weights gives (a test holds them equal).

A frame costs one forward pass of the probes. The frozen part of a fine-tuned model cannot change,
so it runs once, for the first frame: its layers' share of every figure and its output at the cut
are kept, and each later frame runs only the trainable part (for a head-only fine-tune, the head).

The time-lapse travels in the checkpoint beside the weights: float16 tensors named
``timelapse.*`` (uint8 for the probe images), with a small description under the metadata's
``"timelapse"`` key. :func:`vitexplorer.core.models.checkpoint.read_weights` leaves them out of
the model's weights; :func:`read_timelapse` reads them back. The frames and the maps they show,
the method catalogue's: :mod:`vitexplorer.core.training.timelapse_frames`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitexplorer.core.explain.head_stats import HeadStatistics, head_statistics, statistics_csv
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.explain.rollout import rollout_layers, rollout_matrix, rollout_row
from vitexplorer.core.models.capture import AttentionSink, capturing_attention, images_per_pass
from vitexplorer.core.models.checkpoint import TIMELAPSE_KEY as META_KEY
from vitexplorer.core.models.checkpoint import TIMELAPSE_PREFIX as PREFIX
from vitexplorer.core.training.config import MAX_PROBES
from vitexplorer.core.training.timelapse_check import check_arrays, check_description, check_model
from vitexplorer.core.training.timelapse_frames import (
    Frame,
    recorded_maps,
)

VERSION = 1
RECORDED_WITH = MethodOptions()  # the options of the maps a frame keeps whole (the defaults)


class TimeLapseError(ValueError):
    """A time-lapse that cannot be read: one line, naming the file and what is wrong."""


OPTIONAL_ARRAYS = ("runner_up",)  # absent from time-lapses saved by older versions
FRAME_ARRAYS = tuple(f.name for f in fields(Frame) if f.name not in ("epoch", *OPTIONAL_ARRAYS))
_INTEGER_ARRAYS = ("predicted",)


@dataclass
class TimeLapse:
    """The probes and one :class:`Frame` per captured epoch, in order."""

    grid: tuple[int, int]
    patch_size: int
    num_prefix: int
    num_classes: int
    sources: list[str]  # where each probe came from: a path, or "test #i"
    images: np.ndarray  # (P, h, w, 3) uint8: the probes as the model's input was made from them
    labels: np.ndarray  # (P,) int64, the true class, -1 where unknown
    frames: list[Frame] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights the checkpoint holds

    @property
    def epochs(self) -> list[int]:
        return [frame.epoch for frame in self.frames]

    def stacked(self, name: str) -> np.ndarray:
        """One of FRAME_ARRAYS over the frames: (F, ...)."""
        return np.stack([getattr(frame, name) for frame in self.frames])

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the checkpoint stores, float16 (the probe images uint8, classes int32)."""
        out = {
            PREFIX + "images": torch.from_numpy(np.ascontiguousarray(self.images, np.uint8)),
            PREFIX + "labels": torch.from_numpy(self.labels.astype(np.int32)),
        }
        for name in FRAME_ARRAYS:
            dtype = np.int32 if name in _INTEGER_ARRAYS else np.float16
            out[PREFIX + name] = torch.from_numpy(self.stacked(name).astype(dtype))
        for name in OPTIONAL_ARRAYS:
            if all(getattr(frame, name) is not None for frame in self.frames):
                out[PREFIX + name] = torch.from_numpy(self.stacked(name).astype(np.float16))
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "epochs": self.epochs,
            "sources": list(self.sources),
            "grid": list(self.grid),
            "patch_size": self.patch_size,
            "num_prefix": self.num_prefix,
            "num_classes": self.num_classes,
            "best_epoch": self.best_epoch,
            **recorded_maps(),  # each map kept whole: how it was made
        }


def timelapse_bytes(spec: Any, config: Any) -> int:
    """An upper estimate of the bytes a run's time-lapse adds to its checkpoint (float16)."""
    probes = len(config.probe_files) or config.probes
    if not probes:
        return 0
    rows, cols = spec.grid
    patches = rows * cols
    per_probe = spec.num_layers * spec.num_heads * (patches + 3) + patches + 5
    image = 3 * spec.image_size**2
    return probes * ((config.epochs + 1) * per_probe * 2 + image) + 64 * 1024


def heads_csv(timelapse: TimeLapse) -> str:
    """Every head's mean attention distance (pixels), entropy (nats) and prefix share at every
    captured epoch, averaged over the probes: the columns of
    :func:`~vitexplorer.core.explain.head_stats.statistics_csv` (whose ``images`` are the probes)
    after the epoch; layers and heads numbered from 1."""
    lines: list[str] = []
    for frame in timelapse.frames:
        means = [getattr(frame, n).mean(axis=0) for n in ("distance", "entropy", "prefix_share")]
        table = statistics_csv(HeadStatistics(*means), len(timelapse.sources)).splitlines()
        lines += [] if lines else [f"epoch,{table[0]}"]
        lines += [f"{frame.epoch},{row}" for row in table[1:]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The probes


@dataclass
class ProbeSet:
    """The probe images as stored for training: uint8 (P, 3, h, w), labels (-1: unknown)."""

    images: torch.Tensor
    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.sources)


def class_balanced_order(labels: np.ndarray, num_classes: int, size: int) -> list[int]:
    """Up to ``size`` indices of ``labels`` taken from each class in turn (the first image of
    every class, then the second...), so every class shows up."""
    per_class = [np.flatnonzero(labels == c).tolist() for c in range(num_classes)]
    order: list[int] = []
    depth = 0
    while len(order) < size and any(depth < len(members) for members in per_class):
        order += [members[depth] for members in per_class if depth < len(members)]
        depth += 1
    return order[:size]


def default_probes(
    images: torch.Tensor, labels: torch.Tensor, sources: Sequence[str], num_classes: int, count: int
) -> ProbeSet:
    """``count`` images, class-balanced and fixed (the first of each class in turn)."""
    order = class_balanced_order(labels.numpy(), num_classes, count)
    return ProbeSet(
        images[torch.as_tensor(order, dtype=torch.long)].clone(),
        labels.numpy()[order].astype(np.int64),
        [sources[i] for i in order],
    )


def probe_files(
    paths: Sequence[str | Path], size: int, interpolation: str
) -> tuple[ProbeSet | None, list[str]]:
    """The user's probe images, decoded and fitted as the training images are; and a line for
    each file that could not be read (the others are kept). None when none could be."""
    from vitexplorer.core.io.images import ImageLoadError, load_image
    from vitexplorer.core.training.datasets import fit_image, stack_images

    arrays, sources, problems = [], [], []
    for path in paths:
        try:
            image = np.asarray(load_image(path), dtype=np.uint8)
            arrays.append(fit_image(image, size, interpolation))
            sources.append(str(path))
        except ImageLoadError as exc:
            problems.append(f"probe image not used: {exc}")
    if not arrays:
        return None, problems
    stacked = stack_images(arrays, [-1] * len(arrays), sources, size, interpolation)
    return ProbeSet(stacked.images, np.full(len(arrays), -1, np.int64), sources), problems


# ---------------------------------------------------------------------------------------------
# Capturing frames during training


@dataclass(frozen=True)
class _Layers:
    """A run of consecutive layers' share of one probe's figures."""

    cls: np.ndarray  # (layers, H, G)
    distance: np.ndarray  # (layers, H)
    entropy: np.ndarray
    prefix_share: np.ndarray
    rollout: np.ndarray  # (layers, N, N): rollout_layers' matrices (frozen: their product)

    @classmethod
    def of(cls, maps: np.ndarray, grid: tuple[int, int], prefix: int, patch: int) -> _Layers:
        stats = head_statistics(maps, grid, prefix, patch)
        return cls(
            maps[:, :, 0, prefix:].copy(),
            stats.distance,
            stats.entropy,
            stats.prefix_share,
            rollout_layers(  # the catalogue's default options: a recorded map's
                maps, RECORDED_WITH.head_fusion, RECORDED_WITH.discard_ratio, 0, prefix
            ),
        )


def _joined(parts: Sequence[_Layers | None], name: str) -> np.ndarray:
    return np.concatenate([getattr(p, name) for p in parts if p is not None])


class ProbeRecorder:
    """Captures :class:`Frame` s of ``probes`` for a model trained through ``split`` (a
    :class:`~vitexplorer.core.training.finetune_model.SplitViT`), whose frozen part never changes.

    ``to_input`` turns the probes' uint8 images into the model's input on its device. Capture
    runs in float32 without autocast, in eval mode, as the explorer's capture does.
    """

    def __init__(
        self,
        split: Any,
        spec: Any,
        probes: ProbeSet,
        to_input: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.split = split
        self.grid, self.prefix, self.patch = spec.grid, spec.num_prefix_tokens, spec.patch_size
        self.heads = spec.num_heads
        self.probes = probes
        self.to_input = to_input
        self.timelapse = TimeLapse(
            grid=tuple(spec.grid),
            patch_size=spec.patch_size,
            num_prefix=spec.num_prefix_tokens,
            num_classes=len(spec.class_names),
            sources=list(probes.sources),
            images=probes.images.permute(0, 2, 3, 1).numpy().copy(),
            labels=probes.labels.copy(),
        )
        self._cut_outputs: list[torch.Tensor] | None = None  # the frozen part's, per chunk
        self._frozen: list[_Layers | None] = []  # per probe

    def _layers(self, maps: torch.Tensor) -> list[_Layers]:
        array = maps.float().cpu().numpy()
        return [_Layers.of(m, self.grid, self.prefix, self.patch) for m in array]

    def _captured(
        self, run: Callable[[], torch.Tensor], layers: int
    ) -> tuple[torch.Tensor, list[_Layers] | None]:
        """``run()``'s output and, when ``layers`` attention layers run in it, their maps."""
        if not layers:
            return run(), None
        with capturing_attention(self.split.module, AttentionSink(layers)) as sink:
            out = run()
        return out, self._layers(sink.result())

    def _run_frozen_part(self) -> None:
        self._cut_outputs = []
        cut = self.split.cut
        tokens = self.grid[0] * self.grid[1] + self.prefix
        # ViT-B/16: 11 probes at once, B/32: all
        chunk = images_per_pass(len(self.split.blocks), self.heads, tokens)
        for start in range(0, len(self.probes), chunk):
            x = self.to_input(self.probes.images[start : start + chunk])
            out, parts = self._captured(partial(self.split.frozen, x), cut)
            self._cut_outputs.append(out)
            if parts is None:
                self._frozen += [None] * len(x)
                continue
            # the frozen layers' rollout kept as their one product (N, N), not a matrix per
            # layer: 7.5 MB a probe for ViT-H/14 at 518 px, not 240 MB
            self._frozen += [replace(p, rollout=rollout_matrix(p.rollout)[None]) for p in parts]

    @torch.inference_mode()
    def capture(self, epoch: int) -> Frame:
        """The frame of the model's present weights, appended to :attr:`timelapse`."""
        if self._cut_outputs is None:
            self._run_frozen_part()
        assert self._cut_outputs is not None
        trained = len(self.split.blocks) - self.split.cut
        logits: list[torch.Tensor] = []
        trainable: list[_Layers | None] = []
        for out in self._cut_outputs:
            result, parts = self._captured(partial(self.split.trainable, out), trained)
            logits.append(result.float().cpu())
            trainable += parts if parts is not None else [None] * len(out)
        probabilities = torch.cat(logits).softmax(-1)
        best = probabilities.max(-1)
        top = probabilities.topk(min(2, probabilities.shape[-1]), dim=-1).values
        both = [(f, t) for f, t in zip(self._frozen, trainable, strict=True)]
        frame = Frame(
            epoch=epoch,
            predicted=best.indices.numpy().astype(np.int64),
            probability=best.values.numpy().astype(np.float32),
            cls_attention=np.stack([_joined(p, "cls") for p in both]),
            rollout=np.stack([self._rollout(f, t) for f, t in both]),
            distance=np.stack([_joined(p, "distance") for p in both]),
            entropy=np.stack([_joined(p, "entropy") for p in both]),
            prefix_share=np.stack([_joined(p, "prefix_share") for p in both]),
            runner_up=top[:, -1].numpy().astype(np.float32),
        )
        self.timelapse.frames.append(frame)
        return frame

    def _rollout(self, frozen: _Layers | None, trained: _Layers | None) -> np.ndarray:
        """The CLS row of the rollout over all layers: rollout_row's top-down chain through the
        trainable layers, then through the frozen layers' product (rollout_map's number to
        float32 rounding: a test holds them within 2e-5)."""
        layers = [m for part in (frozen, trained) if part is not None for m in part.rollout]
        return np.ascontiguousarray(rollout_row(layers, 0)[self.prefix :], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Reading it back


def read_timelapse(path: str | Path, spec: Any = None) -> TimeLapse | None:
    """The time-lapse saved in the checkpoint at ``path``, or None when it holds none. A
    time-lapse that does not hold together, or (given the model's ``spec``) was not recorded
    with that model, is a :class:`TimeLapseError` (the model in the same file loads all the
    same); a path that is no readable checkpoint, a ``WeightsFileError``."""
    from safetensors import SafetensorError, safe_open

    from vitexplorer.core.models.checkpoint import (
        check_weights_path,
        file_label,
        is_safetensors_file,
        read_safetensors_header,
    )

    path = check_weights_path(path)  # a folder, a pipe or nothing: WeightsFileError, one line
    if not is_safetensors_file(path):
        return None  # a .pth state dict carries no time-lapse
    shapes, meta = read_safetensors_header(path, weights=False)
    if meta is None or META_KEY not in meta:
        return None
    name = file_label(path)
    names = [k for k in shapes if k.startswith(PREFIX)]
    try:
        with safe_open(str(path), "pt") as handle:
            tensors = {k[len(PREFIX) :]: handle.get_tensor(k) for k in names}
    except (OSError, SafetensorError, ValueError) as exc:
        raise TimeLapseError(f"the time-lapse in {name} cannot be read: {exc}") from exc
    try:
        timelapse = timelapse_from(tensors, meta[META_KEY])
    except (TypeError, ValueError, KeyError) as exc:
        raise TimeLapseError(f"the time-lapse in {name} is damaged: {exc}") from None
    if spec is not None:
        check_against(timelapse, spec, path)
    return timelapse


def check_against(timelapse: TimeLapse, spec: Any, path: str | Path) -> None:
    """A :class:`TimeLapseError` naming ``path`` when ``timelapse`` (read from that checkpoint)
    was not recorded with the model that ``spec`` describes: its classes, patch grid, layers,
    heads and input size (:func:`~vitexplorer.core.training.timelapse_check.check_model`)."""
    from vitexplorer.core.models.checkpoint import file_label

    try:
        check_model(timelapse, spec)
    except ValueError as exc:
        raise TimeLapseError(
            f"the time-lapse in {file_label(Path(path))} is damaged: {exc}"
        ) from None


def timelapse_from(tensors: dict[str, torch.Tensor], meta: object) -> TimeLapse:
    """A :class:`TimeLapse` from its tensors (names without the prefix) and description; a
    ValueError saying what does not hold together
    (:mod:`vitexplorer.core.training.timelapse_check`)."""
    about = check_description(meta, VERSION, MAX_PROBES)
    arrays = check_arrays(tensors, about, FRAME_ARRAYS, OPTIONAL_ARRAYS)
    timelapse = TimeLapse(
        grid=about.grid,
        patch_size=about.patch_size,
        num_prefix=about.num_prefix,
        num_classes=about.num_classes,
        sources=about.sources,
        images=arrays["images"],
        labels=arrays["labels"].astype(np.int64),
        best_epoch=about.best_epoch,
    )
    for i, epoch in enumerate(about.epochs):
        values = {k: arrays[k][i].astype(np.float32) for k in FRAME_ARRAYS}
        values.update({k: arrays[k][i].astype(np.float32) for k in OPTIONAL_ARRAYS if k in arrays})
        values["predicted"] = arrays["predicted"][i].astype(np.int64)
        timelapse.frames.append(Frame(epoch=epoch, **values))
    return timelapse
