"""Datasets for fine-tuning: folders, CIFAR-10 in its official format, balanced seeded subsets."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets import CIFAR10

from tests.conftest import write_colour_dataset
from vitexplorer.core.training import datasets
from vitexplorer.core.training.datasets import (
    DatasetError,
    load_subsets,
    open_dataset,
    plan_subsets,
    to_model_input,
)

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]  # fmt: skip


def _subsets(splits, per_class=6, test_per_class=3, seed=0, **kwargs):
    return load_subsets(
        splits, per_class=per_class, test_per_class=test_per_class, val_fraction=0.2, seed=seed,
        image_size=kwargs.pop("image_size", 32), **kwargs,
    )  # fmt: skip


def test_folder_subsets_are_balanced_disjoint_and_reproducible(colour_dataset: Path) -> None:
    splits = open_dataset(colour_dataset)
    assert splits.class_names == ("blue", "green", "red") and splits.test is None
    subsets = _subsets(splits)
    # 6 per class: 2 held out for validation (ceil 20%), 4 to train; 3 test images per class
    assert torch.bincount(subsets.train.labels).tolist() == [4, 4, 4]
    assert torch.bincount(subsets.val.labels).tolist() == [2, 2, 2]
    assert torch.bincount(subsets.test.labels).tolist() == [3, 3, 3]
    train, val, test = (set(s.sources) for s in (subsets.train, subsets.val, subsets.test))
    assert not (train & val or train & test or val & test)
    for subset in (subsets.train, subsets.test):  # each label is the image's class folder
        for source, label in zip(subset.sources, subset.labels.tolist(), strict=True):
            assert Path(source).parent.name == splits.class_names[label]
    again = _subsets(open_dataset(colour_dataset))
    assert again.train.sources == subsets.train.sources
    assert again.test.sources == subsets.test.sources
    assert torch.equal(again.train.images, subsets.train.images)
    other = _subsets(splits, seed=1)
    assert other.train.sources != subsets.train.sources


def test_a_larger_subset_keeps_the_images_of_a_smaller_one(colour_dataset: Path) -> None:
    """Each class has its own seeded order, so asking for more adds images, never swaps them."""
    splits = open_dataset(colour_dataset)
    small, large = plan_subsets(splits, 4, 2, seed=3)[0], plan_subsets(splits, 9, 2, seed=3)[0]
    for a, b in zip(small.candidates, large.candidates, strict=True):
        assert a[:4].tolist() == b[:4].tolist()


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    write_colour_dataset(tmp_path / "d" / "train", 8)
    write_colour_dataset(tmp_path / "d" / "test", 5)
    splits = open_dataset(tmp_path / "d")
    assert splits.test is not None and len(splits.test) == 15
    subsets = _subsets(splits, per_class=5, test_per_class=5)
    assert all("/test/" in s for s in subsets.test.sources)
    assert all("/train/" in s for s in subsets.train.sources + subsets.val.sources)


def test_stored_images_keep_cifar_size_and_batch_resize_matches_pil(colour_dataset: Path) -> None:
    subsets = _subsets(open_dataset(colour_dataset), image_size=48)
    assert subsets.train.images.shape[1:] == (3, 16, 16)  # resized later, on the device
    assert subsets.train.images.dtype == torch.uint8
    batch = subsets.train.images[:4]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ours = to_model_input(batch, 48, mean, std)
    for image, row in zip(batch, ours, strict=True):
        pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((48, 48), Image.BILINEAR)
        expected = TF.normalize(TF.to_tensor(pil), list(mean), list(std))
        # the same bilinear filter; PIL rounds to uint8 in between: within one grey level
        assert (row - expected).abs().max() < 1 / 255 / min(std)


def test_large_and_mixed_images_are_resized_once_to_the_input(tmp_path: Path) -> None:
    write_colour_dataset(tmp_path / "mixed", 3, classes=("red", "blue"), size=16)
    big = Image.fromarray(np.full((90, 60, 3), 200, np.uint8))
    big.save(tmp_path / "mixed" / "red" / "000.png")  # every image is used: 2 train, 1 test
    subsets = _subsets(open_dataset(tmp_path / "mixed"), per_class=2, test_per_class=1)
    assert subsets.train.images.shape[1:] == (3, 32, 32)
    assert subsets.test.images.shape[1:] == (3, 32, 32)


def test_unreadable_training_images_are_replaced_and_reported(colour_dataset: Path) -> None:
    splits = open_dataset(colour_dataset)
    plan = plan_subsets(splits, 6, 3, seed=0)[0]
    broken = splits.train.paths[plan.candidates[1][0]]  # the first pick of class "green"
    Path(broken).write_bytes(b"not a png")
    subsets = _subsets(open_dataset(colour_dataset))
    assert torch.bincount(subsets.train.labels).tolist() == [4, 4, 4]
    assert broken not in subsets.train.sources + subsets.val.sources
    assert len(subsets.skipped) == 1 and Path(broken).name in subsets.skipped[0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "not found"),
        (lambda root: (root.mkdir(), (root / "only").mkdir()), "at least two"),
        (
            lambda root: (write_colour_dataset(root, 3), (root / "empty").mkdir()),
            "no images in the class folder.*empty",
        ),
        (lambda root: (root.parent.mkdir(exist_ok=True), root.write_text("x")), "is a file"),
    ],  # fmt: skip
)
def test_bad_folders_are_clear_errors(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_asking_for_more_images_than_a_class_has_says_how_many_there_are(tmp_path: Path) -> None:
    write_colour_dataset(tmp_path / "d", 10)
    splits = open_dataset(tmp_path / "d")
    with pytest.raises(DatasetError, match=r"8 training and 3 test images.*blue has 10"):
        plan_subsets(splits, per_class=8, test_per_class=3, seed=0)  # the test comes out first
    write_colour_dataset(tmp_path / "split" / "train", 10)
    write_colour_dataset(tmp_path / "split" / "test", 2)
    with pytest.raises(DatasetError, match=r"test images .*blue has 2.*at most 2 test images"):
        plan_subsets(open_dataset(tmp_path / "split"), per_class=8, test_per_class=3, seed=0)


def test_too_many_unreadable_images_is_a_clear_error(tmp_path: Path) -> None:
    write_colour_dataset(tmp_path / "d", 6)
    for path in (tmp_path / "d" / "red").iterdir():
        path.write_bytes(b"")
    with pytest.raises(DatasetError, match="red has only 0 readable"):
        _subsets(open_dataset(tmp_path / "d"), per_class=3, test_per_class=2)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 in torchvision's format


def _write_cifar(root: Path, per_batch: int = 20, test: int = 30) -> np.ndarray:
    """Small files in the official cifar-10-batches-py format; returns the test images."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict:
        labels = [i % 10 for i in range(n)]
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        return {"data": data, "labels": labels}

    for name, _ in CIFAR10.train_list:
        (folder / name).write_bytes(pickle.dumps(batch(per_batch)))
    test_batch = batch(test)
    (folder / "test_batch").write_bytes(pickle.dumps(test_batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}))
    return test_batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.fixture
def no_md5(monkeypatch) -> None:
    """Test files cannot match CIFAR-10's official md5 sums."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)


def test_cifar10_through_torchvision(tmp_path: Path, no_md5) -> None:
    test_images = _write_cifar(tmp_path)
    splits = open_dataset("cifar10", root=tmp_path)
    assert splits.class_names == tuple(CIFAR_NAMES) and splits.name == "CIFAR-10"
    assert len(splits.train) == 100 and len(splits.test) == 30
    subsets = _subsets(splits, per_class=10, test_per_class=3)
    assert torch.bincount(subsets.train.labels).tolist() == [8] * 10
    assert subsets.test.images.shape == (30, 3, 32, 32)
    index = int(subsets.test.sources[0].split("#")[1])
    assert subsets.test.sources[0] == f"test #{index}"
    assert np.array_equal(subsets.test.images[0].permute(1, 2, 0).numpy(), test_images[index])
    # the same data found from its folder, and from the batches folder itself
    assert open_dataset(tmp_path).class_names == tuple(CIFAR_NAMES)
    assert len(open_dataset(tmp_path / CIFAR10.base_folder).test) == 30


def test_missing_cifar10_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not in .*download it"):
        open_dataset("cifar10", root=tmp_path)


def test_corrupt_cifar10_says_to_download_again(tmp_path: Path) -> None:
    _write_cifar(tmp_path)  # md5 sums do not match the official ones: torchvision refuses
    with pytest.raises(DatasetError, match="corrupt.*download it again"):
        open_dataset("cifar10", root=tmp_path)


def test_cifar10_download_with_progress(tmp_path: Path, monkeypatch, no_md5) -> None:
    source = tmp_path / "source"
    _write_cifar(source)
    archive = tmp_path / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    seen: list[tuple[int, int]] = []
    root = tmp_path / "cache"
    splits = open_dataset("cifar10", root=root, download=True, progress=lambda *p: seen.append(p))
    assert len(splits.train) == 100
    assert seen and seen[-1][0] == archive.stat().st_size


def test_cifar10_download_without_network_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match="could not download CIFAR-10.*Without a network"):
        open_dataset("cifar10", root=root, download=True)
    assert list(root.iterdir()) == []


def test_corrupt_download_is_refused(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "fake.tar.gz"
    archive.write_bytes(b"not what was promised")
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match="checksum"):
        datasets.download_cifar10(root)
    assert list(root.iterdir()) == []


def test_the_torch_free_cifar_folder_name_is_torchvisions() -> None:
    from vitexplorer.core.models.download import CIFAR10_FOLDER

    assert CIFAR10.base_folder == CIFAR10_FOLDER
