"""Labelled image datasets for fine-tuning: CIFAR-10 through torchvision, any folder of class
subfolders, or a pixel CSV (MNIST-style digits), and the class-balanced subsets drawn from them.

A subset is chosen with a fixed seed (each class shuffled by its own stream of that seed, so the
same seed gives the same images), decoded once in a few threads, and kept as one uint8 tensor:
CIFAR-sized images stay at their own size and are resized in whole batches on the device when the
model needs them (see :func:`to_model_input`); other images are resized once, here.
"""

from __future__ import annotations

import math
import os
import tarfile
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets import CIFAR10
from torchvision.transforms import InterpolationMode

from vitexplorer.core.io.folders import IMAGE_SUFFIXES, escaping_link, image_paths, subfolders
from vitexplorer.core.io.images import ImageLoadError, load_image
from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models.download import (
    CancelCheck,
    DownloadError,
    ProgressCallback,
    default_data_root,
    download_file,
)
from vitexplorer.core.models.preprocessing import _central_part
from vitexplorer.core.training.pixel_csv import PixelCSVError, is_pixel_csv, read_labelled_csv

CIFAR10_NAME = "cifar10"
SPLIT_NAMES = ("train", "test")
DECODE_THREADS = min(8, os.cpu_count() or 1)


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; the message says why and what to do."""


@dataclass
class LabelledImages:
    """One split: image ``i`` as (H, W, 3) uint8 and its label; from memory or from files."""

    labels: np.ndarray  # int64 (N,)
    arrays: np.ndarray | None = None  # (N, H, W, 3) uint8, for CIFAR-10
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[i]
        assert self.paths is not None
        return np.asarray(load_image(self.paths[i]), dtype=np.uint8)

    def source(self, i: int, split: str) -> str:
        """A path, or where in the split the image sits (CIFAR-10 has no files)."""
        return self.paths[i] if self.paths is not None else f"{split} #{i}"


@dataclass
class DatasetSplits:
    """A dataset's classes, its training images and its test images (None: the app splits)."""

    name: str
    root: str
    class_names: tuple[str, ...]
    train: LabelledImages
    test: LabelledImages | None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------------------------------
# Opening datasets


def has_cifar10(root: str | Path) -> bool:
    return (Path(root) / CIFAR10.base_folder).is_dir()


def cifar10_download_size() -> int:
    return 170_498_071


def download_cifar10(
    root: str | Path | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> Path:
    """Fetch CIFAR-10's python archive (md5-checked) into ``root`` and unpack it there."""
    root = Path(root or default_data_root())
    archive = root / CIFAR10.filename
    try:
        if not archive.is_file():
            download_file(
                CIFAR10.url,
                archive,
                size_hint=cifar10_download_size(),
                checksum=("md5", CIFAR10.tgz_md5),
                progress=progress,
                cancelled=cancelled,
            )
    except DownloadError as exc:
        if exc.kind == "network":
            raise DatasetError(
                f"could not download CIFAR-10 (170 MB) from {CIFAR10.url}: {exc}. Without a "
                f"network, copy {CIFAR10.filename} or its unpacked {CIFAR10.base_folder} folder "
                f"into {root}, or choose a folder of images sorted into class subfolders."
            ) from exc
        raise DatasetError(f"could not download CIFAR-10: {exc}") from exc
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _extract(tar, root)
    except (OSError, tarfile.TarError) as exc:
        archive.unlink(missing_ok=True)
        raise DatasetError(
            f"the CIFAR-10 archive could not be unpacked ({exc}); try again"
        ) from exc
    return root


def _extract(tar: tarfile.TarFile, root: Path) -> None:
    """Unpack without letting a member escape ``root`` (tarfile's "data" filter where the
    Python release has it)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(root, filter="data")
        return
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or root.resolve() not in target.parents:
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tar.extractall(root)


def open_dataset(
    source: str | Path,
    *,
    root: str | Path | None = None,
    download: bool = False,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> DatasetSplits:
    """``cifar10`` (kept under ``root``, downloaded if asked), a folder holding CIFAR-10's
    python batches, a folder of class subfolders, optionally split into train/ and test/, or a
    labelled pixel CSV (``label,pixel0,...``, see :mod:`vitexplorer.core.training.pixel_csv`),
    whose test images are set aside as for a folder without test/."""
    if str(source) == CIFAR10_NAME:
        root = Path(root or default_data_root())
        if not has_cifar10(root):
            if not download:
                raise DatasetError(
                    f"CIFAR-10 is not in {root}; download it (170 MB) or choose a folder"
                )
            download_cifar10(root, progress, cancelled)
        return _open_cifar10(root)
    path = expand_user(source)
    if is_pixel_csv(path):
        return _open_csv(path)
    if not path.exists():
        raise DatasetError(f"dataset folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(
            f"{path} is a file; choose a folder that holds one folder per class, or a pixel CSV "
            f"file (.csv, label,pixel0,pixel1,...)"
        )
    if path.name == CIFAR10.base_folder:
        return _open_cifar10(path.parent)
    if has_cifar10(path):
        return _open_cifar10(path)
    return _open_folder(path)


def _open_csv(path: Path) -> DatasetSplits:
    try:
        images, labels, names = read_labelled_csv(path)
    except PixelCSVError as exc:
        raise DatasetError(str(exc)) from exc
    train = LabelledImages(labels, arrays=images)
    return DatasetSplits(path.stem, str(path), names, train, None)


def _open_cifar10(root: Path) -> DatasetSplits:
    try:
        train = CIFAR10(str(root), train=True, download=False)
        test = CIFAR10(str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DatasetError(
            f"CIFAR-10 in {root / CIFAR10.base_folder} is incomplete or corrupt ({exc}); "
            f"delete that folder and download it again"
        ) from exc

    def split(ds: CIFAR10) -> LabelledImages:
        return LabelledImages(np.asarray(ds.targets, dtype=np.int64), arrays=ds.data)

    return DatasetSplits("CIFAR-10", str(root), tuple(train.classes), split(train), split(test))


def _scan(path: Path, class_names: list[str], root: str) -> LabelledImages:
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(class_names):
        links: list[str] = []
        try:  # sorted as text, not as paths: the order decides which images a seed picks
            files = sorted(image_paths(path / name, recursive=True, links=links))
        except FileNotFoundError:  # gone since it was listed: no images, said below
            files = []
        except OSError as exc:
            raise DatasetError(
                f"cannot list the class folder {path / name}: {exc.strerror or exc}; make it "
                f"readable (or remove it) and run again"
            ) from exc
        _refuse_links(links, root)
        if not files:
            empty.append(name)
        paths += files
        labels += [label] * len(files)
    if empty:
        raise DatasetError(
            f"{path}: no images in the class folder(s) {', '.join(empty)} (image files end in "
            f"{', '.join(IMAGE_SUFFIXES)}); add images or remove the empty folders"
        )
    return LabelledImages(np.asarray(labels, dtype=np.int64), paths=paths)


def _refuse_links(links: list[str], root: str, folders_only: bool = False) -> None:
    """A DatasetError for the first link that loops or leaves the dataset ``root``: a class
    folder linked to ``/`` would walk the whole disk, an image linked outside would put another
    file's pixels and path in the checkpoint
    (:func:`~vitexplorer.core.io.folders.escaping_link`)."""
    problem = escaping_link(links, root, folders_only)
    if problem is not None:
        raise DatasetError(problem)


def _class_folders(path: Path, root: str) -> list[Path]:
    """The class folders (or train/ and test/) in ``path``, each link among them checked."""
    links: list[str] = []
    found = subfolders(path, links)
    _refuse_links(links, root, folders_only=True)
    return found


def _open_folder(path: Path) -> DatasetSplits:
    root = os.path.realpath(path)
    folders = _class_folders(path, root)
    names = [f.name for f in folders]
    if {"train", "test"} <= set(names):
        try:
            train_classes = [f.name for f in _class_folders(path / "train", root)]
            test_classes = [f.name for f in _class_folders(path / "test", root)]
        except PermissionError as exc:
            raise DatasetError(
                f"cannot list {exc.filename}: permission denied; make it readable and run again"
            ) from exc
        if train_classes != test_classes:
            raise DatasetError(
                f"{path}: train/ and test/ hold different class folders "
                f"({', '.join(train_classes)} against {', '.join(test_classes)})"
            )
        classes = train_classes
        train = _scan(path / "train", classes, root)
        test = _scan(path / "test", classes, root)
    else:
        classes, train, test = names, None, None
    if len(classes) < 2:
        raise DatasetError(
            f"{path} does not look like a labelled dataset: it needs one subfolder per class "
            f"(at least two), each holding that class's images, optionally inside train/ and test/"
        )
    if train is None:
        train = _scan(path, classes, root)
    return DatasetSplits(path.name, str(path), tuple(classes), train, test)


# ---------------------------------------------------------------------------------------------
# Class-balanced subsets


def _class_order(labels: np.ndarray, label: int, seed: int) -> np.ndarray:
    """The indices of one class in a random order fixed by ``seed`` and the class alone."""
    members = np.flatnonzero(labels == label)
    return members[np.random.default_rng([seed, label]).permutation(len(members))]


@dataclass
class SubsetPlan:
    """Candidate indices per class, best first, and how many of each class to keep."""

    split: str
    candidates: list[np.ndarray]
    wanted: int
    strict: bool  # every class must reach ``wanted`` (training); else one image is enough


def plan_subsets(
    splits: DatasetSplits, per_class: int, test_per_class: int, seed: int
) -> tuple[SubsetPlan, SubsetPlan]:
    """Which images to try for the training pool and for the test subset.

    Without a test split, each class's test images are set aside first (from the end of its
    seeded order), and the training pool draws from the rest.
    """
    if per_class < 1 or test_per_class < 1:
        raise DatasetError("ask for at least one image per class for training and for testing")
    names = splits.class_names
    train_orders = [_class_order(splits.train.labels, c, seed) for c in range(len(names))]
    if splits.test is not None:
        test_orders = [_class_order(splits.test.labels, c, seed) for c in range(len(names))]
    else:
        wanted = per_class + test_per_class
        short = [(names[c], len(o)) for c, o in enumerate(train_orders) if len(o) < wanted]
        if short:
            listed = ", ".join(f"{name} has {n}" for name, n in short[:5])
            raise DatasetError(
                f"not enough images for {per_class} training and {test_per_class} test images "
                f"per class ({listed}): without train/ and test/ subfolders the test images come "
                f"out of the same class folders; ask for fewer images, or add some"
            )
        test_orders = [order[::-1][:test_per_class] for order in train_orders]
        train_orders = [order[: len(order) - test_per_class] for order in train_orders]
    _check_counts(names, train_orders, per_class, "training")
    _check_counts(names, test_orders, test_per_class, "test")
    return (
        SubsetPlan("train", train_orders, per_class, strict=True),
        SubsetPlan("test", test_orders, test_per_class, strict=False),
    )


def _check_counts(names: tuple[str, ...], orders: list[np.ndarray], wanted: int, what: str) -> None:
    short = [(names[c], len(order)) for c, order in enumerate(orders) if len(order) < wanted]
    if short:
        fewest = min(n for _, n in short)
        listed = ", ".join(f"{name} has {n}" for name, n in short[:5])
        raise DatasetError(
            f"not enough {what} images for {wanted} per class ({listed}); "
            f"ask for at most {fewest} {what} images per class, or add images"
        )


# ---------------------------------------------------------------------------------------------
# Loading a subset into memory


@dataclass
class ImageTensor:
    """Images as one uint8 tensor (N, 3, h, w), labels, and where each image came from."""

    images: torch.Tensor
    labels: torch.Tensor
    sources: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray | list[int]) -> ImageTensor:
        index = list(index)
        picked = torch.as_tensor(index, dtype=torch.long)
        return ImageTensor(
            self.images[picked], self.labels[picked], [self.sources[i] for i in index]
        )


@dataclass
class LoadedSubsets:
    train: ImageTensor
    val: ImageTensor
    test: ImageTensor
    skipped: list[str] = field(default_factory=list)  # "source: reason" of unreadable images


def fit_image(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """Keep a square image no bigger than the model's input as it is (it is resized on the
    device, in batches); anything else is resized here, short side first, then centre-cropped."""
    height, width = image.shape[:2]
    if height == width <= size:
        return image
    pil = _central_part(Image.fromarray(image))
    mode = InterpolationMode(interpolation)
    pil = TF.center_crop(TF.resize(pil, [size], interpolation=mode, antialias=True), [size])
    return np.asarray(pil, dtype=np.uint8)


def iter_load_subsets(
    splits: DatasetSplits,
    *,
    per_class: int,
    test_per_class: int,
    val_fraction: float,
    seed: int,
    image_size: int,
    interpolation: str = "bilinear",
    cancelled: CancelCheck | None = None,
) -> Generator[tuple[int, int], None, LoadedSubsets]:
    """Decode the chosen images, yielding (images done, total) as it goes; returns the subsets.

    An unreadable training image is replaced by the next image of its class in the seeded order
    (classes stay balanced); an unreadable test image is left out. Both are reported in
    ``skipped``.
    """
    train_plan, test_plan = plan_subsets(splits, per_class, test_per_class, seed)
    total = (per_class + test_per_class) * splits.num_classes
    done = [0]

    def counted(
        batches: Generator[int, None, _Decoded],
    ) -> Generator[tuple[int, int], None, _Decoded]:
        while True:
            try:
                done[0] += next(batches)
            except StopIteration as stop:
                return stop.value
            yield done[0], total

    skipped: list[str] = []
    names = splits.class_names
    args = (names, image_size, interpolation, skipped, cancelled)
    pool = yield from counted(_decode_plan(splits.train, train_plan, *args))
    test = yield from counted(_decode_plan(splits.test or splits.train, test_plan, *args))
    shapes = {a.shape[:2] for a in pool[0] + test[0]}
    size = next(iter(shapes))[0] if len(shapes) == 1 else image_size  # mixed: all to the input
    train_all = stack_images(*pool, size, interpolation)
    test_set = stack_images(*test, size, interpolation)
    val_index, train_index = _split_validation(train_all.labels.numpy(), val_fraction)
    return LoadedSubsets(train_all.take(train_index), train_all.take(val_index), test_set, skipped)


def load_subsets(splits: DatasetSplits, **kwargs) -> LoadedSubsets:
    """:func:`iter_load_subsets` run to the end."""
    loading = iter_load_subsets(splits, **kwargs)
    while True:
        try:
            next(loading)
        except StopIteration as stop:
            return stop.value


def _split_validation(labels: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """The first ``fraction`` of every class's (already shuffled) images is held out."""
    val: list[int] = []
    train: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        n_val = min(len(members) - 1, math.ceil(len(members) * fraction)) if fraction > 0 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(val), sorted(train)


_Decoded = tuple[list[np.ndarray], list[int], list[str]]  # images, labels, sources


def _decode_plan(
    images: LabelledImages,
    plan: SubsetPlan,
    names: tuple[str, ...],
    size: int,
    interpolation: str,
    skipped: list[str],
    cancelled: CancelCheck | None,
) -> Generator[int, None, _Decoded]:
    """Decode ``plan.wanted`` images of each class, in the plan's order, skipping bad files."""

    def decode(index: int) -> np.ndarray | str:
        try:
            return fit_image(images.image(index), size, interpolation)
        except ImageLoadError as exc:
            return str(exc)

    arrays: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    threads = 1 if images.arrays is not None else DECODE_THREADS
    with ThreadPoolExecutor(threads) as pool:
        for label, order in enumerate(plan.candidates):
            kept, position, order = 0, 0, order.tolist()
            while kept < plan.wanted and position < len(order):
                if cancelled is not None and cancelled():
                    raise DatasetCancelled("cancelled while loading images")
                batch = order[position : position + min(64, plan.wanted - kept)]
                position += len(batch)
                for index, result in zip(batch, pool.map(decode, batch), strict=True):
                    source = images.source(index, plan.split)
                    if isinstance(result, str):
                        skipped.append(result)
                        continue
                    arrays.append(result)
                    labels.append(label)
                    sources.append(source)
                    kept += 1
                yield len(batch)
            if kept < plan.wanted and (plan.strict or kept == 0):
                raise DatasetError(
                    f"class {names[label]} has only {kept} readable {plan.split} images of the "
                    f"{plan.wanted} asked for ({len(skipped)} unreadable, e.g. {skipped[-1]}); "
                    f"ask for fewer images per class or replace the unreadable files"
                )
    return arrays, labels, sources


class DatasetCancelled(RuntimeError):
    """Loading was cancelled."""


def stack_images(
    arrays: list[np.ndarray], labels: list[int], sources: list[str], size: int, interpolation: str
) -> ImageTensor:
    batch = [a if a.shape[:2] == (size, size) else _upscale(a, size, interpolation) for a in arrays]
    images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
    return ImageTensor(images, torch.as_tensor(labels, dtype=torch.long), sources)


def _upscale(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """A small square image to ``size`` (when a dataset mixes sizes)."""
    pil = Image.fromarray(image)
    mode = InterpolationMode(interpolation)
    resized = TF.resize(pil, [size, size], interpolation=mode, antialias=True)
    return np.asarray(resized, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Batches for the model


def to_model_input(
    images: torch.Tensor,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """uint8 (B, 3, h, w), on any device, to the model's normalised float input (B, 3, S, S).

    Normalising first is exact (interpolation weights sum to one, so they commute with a
    per-channel affine map) and touches the small image's pixels, not the resized one's."""
    x = TF.normalize(TF.convert_image_dtype(images, torch.float32), list(mean), list(std))
    if x.shape[-1] != size or x.shape[-2] != size:
        mode = InterpolationMode(interpolation)
        x = TF.resize(x, [size, size], interpolation=mode, antialias=True)
    return x
