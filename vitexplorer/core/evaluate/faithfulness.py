"""The perturbation test of Chefer et al. (2021): remove the most relevant (positive test) or the
least relevant (negative test) part of the image in steps of 10% and follow what the model
still gets right. A faithful map makes the positive curve fall fast (small area) and the
negative curve fall slowly (large area). Two protocols (:data:`PROTOCOLS`): ``mean-patch``
removes whole patches, sets them to the mean colour and follows the predicted class's
probability, image by image; ``chefer2021`` is the paper's own: pixels of the map upsampled to
the input are set to black and the top-1 accuracy against each image's label is followed, as
its published tables are.

Both take an explainer, ``(model, batch) -> (rows, cols) map`` (see
:func:`~vitexplorer.core.explain.maps.method_explainer`), so they check any method alike. A map
that ranks no patch above another, or a model whose output is the same for every class, has nothing
to check: the steps and images concerned carry a note instead of a number that means nothing.

Either check also works on an image at its own aspect ratio (``feed=WHOLE``): the batch is then
a rectangle, the maps have its grid (rows != cols), patches and pixels are removed on that grid
and every forward is the family's any-size one (position embeddings resized to the grid).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitexplorer.core.explain.analysis import constant_output, failure_message, flat_map
from vitexplorer.core.io.folders import escaping_link, image_paths, subfolders
from vitexplorer.core.io.images import ImageLoadError, load_image
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.capture import model_forward
from vitexplorer.core.models.feed import CROP, Feed
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.preprocessing import input_grid, preprocess

Explainer = Callable[[LoadedModel, torch.Tensor], np.ndarray]


CancelCheck = Callable[[], bool]


def perturbation_fractions(steps: int = 10) -> np.ndarray:
    """0, 1/steps, ..., 1: exactly 0.0, 0.1, ..., 1.0 for ten steps."""
    if steps < 1:
        raise ValueError(f"the perturbation test needs at least one step, not {steps}")
    return np.arange(steps + 1) / steps


def removal_counts(num_patches: int, steps: int = 10) -> np.ndarray:
    """How many patches each step removes: ``k / steps`` of them, rounded half up (integers)."""
    k = np.arange(steps + 1)
    return (2 * k * num_patches + steps) // (2 * steps)


def perturbed_copies(
    batch: torch.Tensor, relevance: np.ndarray, positive: bool, steps: int = 10
) -> torch.Tensor:
    """(steps + 1, 3, H, W): copy k has the ``removal_counts[k]`` most relevant (``positive``)
    or least relevant patches set to 0, the dataset's mean colour in the normalised input.

    The patch grid is ``relevance.shape`` (rows, cols), row-major, and need not be square; ties
    go to the lower patch index.
    """
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(f"one image at a time, a (1, 3, H, W) batch; got {tuple(batch.shape)}")
    rows, cols = relevance.shape
    height, width = batch.shape[-2:]
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} image does not split into a {rows}x{cols} grid")
    scores = np.asarray(relevance, dtype=np.float64).ravel()
    order = np.argsort(-scores if positive else scores, kind="stable")
    rank = np.empty(scores.size, dtype=np.int64)
    rank[order] = np.arange(scores.size)  # 0 = removed first
    counts = removal_counts(scores.size, steps)
    removed = torch.from_numpy(rank[None, :] < counts[:, None]).reshape(-1, rows, cols)
    pixels = removed.repeat_interleave(height // rows, 1).repeat_interleave(width // cols, 2)
    keep = (~pixels).to(device=batch.device, dtype=batch.dtype)[:, None]
    return batch * keep


def area_under(fractions: np.ndarray, values: np.ndarray) -> float:
    """The area under a curve by the trapezoid rule."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError("an area needs two equally long curves of at least two points")
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1])).sum() / 2.0)


@torch.inference_mode()
def _forward(
    model: LoadedModel, images: torch.Tensor, any_size: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and class probabilities of a batch, (images, classes) float32 each; with
    ``any_size`` through the family's any-size forward (images at their own aspect ratio)."""
    runs = model.adapter if any_size else model.module  # the any-size forward is the adapter's
    logits = model_forward(runs, images.to(model.device), any_size).float()
    return logits.cpu().numpy(), logits.softmax(-1).cpu().numpy()


def _class_probabilities(
    model: LoadedModel, images: torch.Tensor, any_size: bool = False
) -> np.ndarray:
    return _forward(model, images, any_size)[1]


def batch_grid(model: LoadedModel, batch: torch.Tensor, feed: Feed) -> tuple[int, int]:
    """The patch grid of a preprocessed batch: the model's own, or with ``feed=WHOLE`` the grid
    its size splits into (see :func:`~vitexplorer.core.models.preprocessing.input_grid`)."""
    if not feed.whole:
        return model.spec.grid
    return input_grid(model.spec, *batch.shape[-2:])


def perturbation_curve(
    model: LoadedModel,
    batch: torch.Tensor,
    relevance: np.ndarray,
    target: int,
    positive: bool,
    steps: int = 10,
    feed: Feed = CROP,
) -> tuple[np.ndarray, np.ndarray]:
    """(fractions, probabilities of ``target``) as patches are removed in order of
    ``relevance`` (rows, cols): most relevant first when ``positive``, least relevant otherwise.
    All the perturbed copies go through the model in one forward pass; with ``feed=WHOLE``
    (``batch`` an image at its own aspect ratio) the any-size one when its grid is not the
    model's."""
    fractions = perturbation_fractions(steps)
    copies = perturbed_copies(batch, relevance, positive, steps)
    any_size = batch_grid(model, batch, feed) != model.spec.grid
    return fractions, _class_probabilities(model, copies, any_size)[:, target]


PROTOCOLS: tuple[str, ...] = ("mean-patch", "chefer2021")


PROTOCOL_FACTS: dict[str, dict[str, str]] = {
    "mean-patch": {
        "removes": "whole patches, in the order of the map over the patch grid",
        "removed_to": "the dataset's mean colour (0 after normalisation)",
        "measures": "the probability of the class predicted for the untouched image, per image",
        "range": "0% to 100% of the patches",
    },
    "chefer2021": {
        "removes": "pixels, in the order of the map upsampled bilinearly to the input size",
        "removed_to": "black (0 before normalisation, (0 - mean) / std after it)",
        "measures": "top-1 accuracy against each image's label (the folder it is in)",
        "range": "0% up to, not including, 100% of the pixels (0% to 90% in their ten steps)",
    },
}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return protocol


def chefer_fractions(steps: int = 10) -> np.ndarray:
    """0, 1/steps, ..., (steps - 1)/steps: 0% to 90% in steps of 10% for ten steps, the
    fractions of pixels Chefer et al. (2021) remove (never all of them)."""
    if steps < 2:
        raise ValueError(f"the chefer2021 protocol needs at least two steps, not {steps}")
    return perturbation_fractions(steps)[:-1]


def black_input(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(3,) float32: a black pixel (0 in every channel before normalisation) as the model sees
    it after normalisation, ``(0 - mean) / std``; not 0, which is the mean colour."""
    return -torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)


def upsampled_map(relevance: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) float64: the map over the patch grid upsampled bilinearly (half-pixel
    centres, ``align_corners=False``), as Chefer et al. upsample theirs before removing pixels."""
    heat = torch.as_tensor(np.asarray(relevance, dtype=np.float64))[None, None]
    up = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


def pixel_removal_counts(num_pixels: int, steps: int = 10) -> np.ndarray:
    """How many pixels each step of :func:`chefer_fractions` removes: ``k / steps`` of them,
    rounded down as the paper's ``int(base_size * step)``."""
    return (np.arange(steps) * num_pixels) // steps


def pixel_removed_copies(
    batch: torch.Tensor,
    relevance: np.ndarray,
    positive: bool,
    black: torch.Tensor,
    steps: int = 10,
) -> torch.Tensor:
    """(steps, 3, H, W): copy k of the normalised (1, 3, H, W) ``batch`` with the
    ``pixel_removal_counts[k]`` most relevant (``positive``) or least relevant pixels of the
    upsampled map set to ``black`` (3,), the normalised black of :func:`black_input`. Ties go
    to the lower pixel index (row-major)."""
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(f"one image at a time, a (1, 3, H, W) batch; got {tuple(batch.shape)}")
    height, width = batch.shape[-2:]
    scores = upsampled_map(relevance, height, width).ravel()
    order = np.argsort(-scores if positive else scores, kind="stable")
    rank = np.empty(scores.size, dtype=np.int64)
    rank[order] = np.arange(scores.size)  # 0 = removed first
    counts = pixel_removal_counts(scores.size, steps)
    removed = torch.from_numpy(rank[None, :] < counts[:, None]).reshape(-1, 1, height, width)
    fill = black.to(device=batch.device, dtype=batch.dtype)[None, :, None, None]
    return torch.where(removed.to(batch.device), fill, batch.expand(steps, -1, -1, -1))


def class_of_folder(name: str, class_names: Sequence[str]) -> int | None:
    """The class a folder named ``name`` holds: one of ``class_names`` (case does not matter),
    or an index into them; None when it is neither."""
    folded = name.strip().casefold()
    for index, class_name in enumerate(class_names):
        if class_name.casefold() == folded:
            return index
    if folded.isdigit() and int(folded) < len(class_names):
        return int(folded)
    return None


def labelled_images(
    folders: Sequence[str | Path], class_names: Sequence[str]
) -> list[tuple[Path, int]]:
    """(image, label) for every image file under the class subfolders of ``folders``, each
    subfolder named after one of ``class_names`` or its index. ValueError, saying what is
    wrong, for anything else: a file given, no subfolders, a subfolder that names no class,
    images outside the subfolders (their label is unknown), a folder that cannot be listed, or
    no image at all. Which files are images: :mod:`vitexplorer.core.io.folders`."""
    n = len(class_names)
    found: list[tuple[Path, int]] = []
    for folder in (expand_user(f) for f in folders):
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        links: list[str] = []  # a class folder linked to / would walk the whole disk
        try:
            classes = subfolders(folder, links)
            _refuse_escaping(links, folder, folders_only=True)
            loose = image_paths(folder, links=links)
        except OSError as exc:
            raise ValueError(f"cannot list the folder {folder}: {exc.strerror or exc}") from exc
        if loose:
            raise ValueError(
                f"{folder} holds {len(loose)} image(s) outside class subfolders "
                f"({Path(loose[0]).name}), whose label is unknown"
            )
        if not classes:
            raise ValueError(f"{folder} has no class subfolders")
        for sub in classes:
            label = class_of_folder(sub.name, class_names)
            if label is None:
                raise ValueError(
                    f"the subfolder {sub.name!r} of {folder} is neither one of the model's {n} "
                    f"class names nor an index from 0 to {n - 1}"
                )
            links = []
            try:
                paths = image_paths(sub, recursive=True, links=links)
            except OSError as exc:
                raise ValueError(f"cannot list the folder {sub}: {exc.strerror or exc}") from exc
            _refuse_escaping(links, folder)
            found += [(Path(path), label) for path in paths]
    if not found:
        raise ValueError(
            f"no image files in the class subfolders of {', '.join(map(str, folders))}"
        )
    return found


def _refuse_escaping(links: list[str], root: Path, folders_only: bool = False) -> None:
    """A ValueError for the first of ``links`` that loops or leads outside the folder ``root``
    (:func:`~vitexplorer.core.io.folders.escaping_link`), as training refuses them."""
    problem = escaping_link(links, os.path.realpath(root), folders_only)
    if problem is not None:
        raise ValueError(problem)


@dataclass(frozen=True)
class ImageFaithfulness:
    source: str  # the path, or "image i" for an image given in memory
    target: int  # the class followed: predicted (mean-patch) or the label (chefer2021)
    positive: np.ndarray  # the curve with the most relevant part removed first
    negative: np.ndarray  # the curve with the least relevant part removed first
    positive_auc: float  # lower is better; NaN when ``note`` says why there is none
    negative_auc: float  # higher is better
    predicted: int | None = None  # the class predicted for the untouched image
    note: str | None = None  # why this image's curves mean nothing (a constant output, a flat map)
    grid: tuple[int, int] | None = None  # the patch grid it was perturbed on (rows, cols)
    input_size: tuple[int, int] | None = None  # the preprocessed input (height, width) in pixels


@dataclass(frozen=True)
class FaithfulnessProgress:
    done: int
    total: int


@dataclass
class FaithfulnessResult:
    """The curves of every image tested. Images with a ``note`` (a model whose output is the
    same for every class, a map that ranks nothing) are kept but left out of the means.

    With ``chefer2021`` each curve is 1 or 0 (right or wrong) per step, so the mean curve is
    the top-1 accuracy and the mean of the areas is the area under it (the trapezoid rule is
    linear): the number the paper's tables give, there in percent."""

    fractions: np.ndarray
    images: list[ImageFaithfulness] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    cancelled: bool = False
    protocol: str = "mean-patch"
    feed: Feed = CROP  # each image whole at its own aspect ratio, on its own grid

    @property
    def counted(self) -> list[ImageFaithfulness]:
        """The images the means are taken over: those without a note."""
        return [i for i in self.images if i.note is None]

    @property
    def excluded(self) -> list[tuple[str, str]]:
        """(source, note) of the images left out of the means."""
        return [(i.source, i.note) for i in self.images if i.note is not None]

    def _mean(self, values: list) -> np.ndarray | float:
        return np.mean(values, axis=0) if values else float("nan")

    @property
    def positive_auc(self) -> float:
        """The mean over the counted images; NaN when there are none."""
        return float(self._mean([i.positive_auc for i in self.counted]))

    @property
    def negative_auc(self) -> float:
        return float(self._mean([i.negative_auc for i in self.counted]))

    @property
    def positive_curve(self) -> np.ndarray:
        """The mean curve over the counted images (all NaN when there are none)."""
        curves = [i.positive for i in self.counted]
        return np.mean(curves, axis=0) if curves else np.full(self.fractions.shape, np.nan)

    @property
    def negative_curve(self) -> np.ndarray:
        curves = [i.negative for i in self.counted]
        return np.mean(curves, axis=0) if curves else np.full(self.fractions.shape, np.nan)


def image_faithfulness(
    model: LoadedModel,
    batch: torch.Tensor,
    explain: Explainer,
    source: str,
    steps: int = 10,
    protocol: str = "mean-patch",
    label: int | None = None,
    feed: Feed = CROP,
) -> ImageFaithfulness:
    """Both perturbation curves of one preprocessed image, in one forward pass of all the
    perturbed copies (the first copy of each curve is the untouched image). With
    ``feed=WHOLE`` the image was preprocessed at its own aspect ratio: the map, the patches
    removed and the upsampled pixel map have the grid and size of ``batch``, and the copies
    run through the any-size forward when that grid is not the model's.

    ``mean-patch``: the probability of the class predicted for the untouched image, whole
    patches set to the mean colour, ``steps + 1`` points from 0% to 100%. ``chefer2021``: 1 when
    the top-1 class equals ``label``, else 0, pixels set to black, ``steps`` points from 0% to
    90%. When the untouched image's logits are all equal (or not finite) or the map ranks no
    patch above another, the areas are NaN and ``note`` says why."""
    check_protocol(protocol)
    if protocol == "chefer2021" and label is None:
        raise ValueError("the chefer2021 protocol measures accuracy: it needs the image's label")
    relevance = np.asarray(explain(model, batch))
    grid = batch_grid(model, batch, feed)
    if relevance.shape != grid:
        whose = "the input's" if feed.whole else "the model's"
        raise ValueError(f"the map is {relevance.shape}, not {whose} grid {grid}")
    any_size = grid != model.spec.grid
    if protocol == "mean-patch":
        fractions = perturbation_fractions(steps)
        copies = [perturbed_copies(batch, relevance, positive, steps) for positive in (True, False)]
    else:
        fractions = chefer_fractions(steps)
        black = black_input(model.spec.mean, model.spec.std)
        copies = [
            pixel_removed_copies(batch, relevance, positive, black, steps)
            for positive in (True, False)
        ]
    logits, probabilities = _forward(model, torch.cat(copies), any_size)
    points = len(fractions)
    predicted = int(np.argmax(probabilities[0]))
    if protocol == "mean-patch":
        target = predicted
        values = probabilities[:, target].astype(np.float64)
    else:
        assert label is not None  # chefer2021 needs one: refused above without
        target = int(label)
        values = (np.argmax(logits, axis=1) == target).astype(np.float64)
    positive, negative = values[:points], values[points:]
    note = constant_output(logits[0]) or flat_map(relevance)
    nan = float("nan")
    return ImageFaithfulness(
        source=source,
        target=target,
        positive=positive,
        negative=negative,
        positive_auc=nan if note else area_under(fractions, positive),
        negative_auc=nan if note else area_under(fractions, negative),
        predicted=predicted,
        note=note,
        grid=(int(grid[0]), int(grid[1])),
        input_size=(int(batch.shape[-2]), int(batch.shape[-1])),
    )


def faithfulness(
    model: LoadedModel,
    images: Sequence[Image.Image | str | Path],
    explain: Explainer,
    steps: int = 10,
    cancelled: CancelCheck | None = None,
    protocol: str = "mean-patch",
    labels: Sequence[int] | None = None,
    feed: Feed = CROP,
) -> Iterator[FaithfulnessProgress | FaithfulnessResult]:
    """The perturbation test over ``images`` (PIL images or paths), by ``protocol``
    (``chefer2021`` needs ``labels``, one per image).

    Yields :class:`FaithfulnessProgress` before the first image and after each one, then one
    :class:`FaithfulnessResult` with each image's curves and AUCs and their means. Images that
    cannot be read are skipped and listed with the reason. ``cancelled`` is checked between
    images; a cancelled run still ends with the result of the images done.

    With ``feed=WHOLE`` each image is tested whole at its own aspect ratio, on its own grid
    (the explainer must make maps of that grid: ``method_explainer(..., feed=WHOLE)``);
    an image the model cannot take at its size is skipped with the reason, one line, as
    ``analyze`` reports it, instead of ending the run.
    """
    check_protocol(protocol)
    if protocol == "chefer2021" and (labels is None or len(labels) != len(images)):
        raise ValueError("the chefer2021 protocol needs one label per image")
    fractions = (
        perturbation_fractions(steps) if protocol == "mean-patch" else chefer_fractions(steps)
    )
    stop = cancelled or (lambda: False)
    result = FaithfulnessResult(fractions=fractions, protocol=protocol, feed=feed)
    total = len(images)
    yield FaithfulnessProgress(0, total)
    for index, item in enumerate(images):
        if stop():
            result.cancelled = True
            break
        if isinstance(item, Image.Image):
            source, image = f"image {index + 1}", item  # counted from 1, as people count
        else:
            source = str(item)
            try:
                image = load_image(item)
            except ImageLoadError as exc:
                result.skipped.append((source, str(exc)))
                yield FaithfulnessProgress(index + 1, total)
                continue
        batch = preprocess(image, model.spec, feed).unsqueeze(0).to(model.device)
        label = None if labels is None else labels[index]
        try:
            tested = image_faithfulness(model, batch, explain, source, steps, protocol, label, feed)
        except (RuntimeError, ValueError) as exc:
            if not feed.whole:
                raise  # the model's own input failing fails every image: the run ends
            name = Path(source).name if isinstance(item, (str, Path)) else source
            result.skipped.append((source, f"{name}: {failure_message(exc)}"))
        else:
            result.images.append(tested)
        yield FaithfulnessProgress(index + 1, total)
    yield result
