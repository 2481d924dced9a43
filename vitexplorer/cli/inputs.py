"""The files that ``train`` and ``finetune`` read, checked before any work: each refusal one
line naming the option, the file, the cause (missing, a folder, a FIFO, a device, permission
denied, a dangling link, a loop) and what to give instead."""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path

from vitexplorer.cli.common import Failed
from vitexplorer.core.io.paths import expand_user, node_kind


def check_input_file(label: str, path: str | os.PathLike[str], what: str) -> Path:
    """``path`` (``~`` expanded) when it is a regular file (or a link to one) that can be opened
    for reading; else a :class:`Failed` (2) naming ``label`` (the option), the file, the cause
    and what to give instead (``what``: "an image file"...). Checked before any work, so that a
    missing file is not found out after a download or a training run."""
    path = expand_user(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and os.path.islink(path):
            cause = f"is a link to {os.readlink(path)}, which does not exist"
        elif isinstance(exc, FileNotFoundError):
            cause = "does not exist"
        elif getattr(exc, "errno", None) == errno.ELOOP:
            cause = "is a link loop (it leads back to itself)"
        elif isinstance(exc, PermissionError):
            cause = "cannot be reached: permission denied on a folder on its way"
        else:
            cause = f"cannot be read: {exc.strerror or exc}"
        raise Failed(f"{label} {path} {cause}; give {what}", 2) from exc
    if stat.S_ISDIR(mode):
        raise Failed(f"{label} {path} is a folder; give {what}", 2)
    if not stat.S_ISREG(mode):
        raise Failed(f"{label} {path} is {node_kind(mode)}, not a regular file; give {what}", 2)
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError as exc:
        raise Failed(
            f"{label} {path}: permission denied (the file exists but cannot be read); make it "
            f"readable or give another file",
            2,
        ) from exc
    except OSError as exc:
        raise Failed(
            f"{label} {path} cannot be read: {exc.strerror or exc}; give {what}", 2
        ) from exc
    return path


def _node_kind(path: Path) -> str:
    """What ``path`` is, in words: "a file", a node's kind (:func:`node_kind`), "a link that
    leads nowhere"."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a link that leads nowhere (dangling or a loop)"
    if stat.S_ISREG(mode):
        return "a file"
    return node_kind(mode)


def check_training_inputs(options: argparse.Namespace) -> None:
    """Every path option of ``train`` and ``finetune`` that names something to read, checked
    before any work: ``--data`` (a folder, a pixel CSV or cifar10), ``--data-root`` (a folder
    when it exists), each ``--probe-image`` (decoded too), ``--test-csv``, a ``--weights`` file and
    a checkpoint ``--model``; each refusal one line naming the option, the file, the cause and
    what to do."""
    from vitexplorer.core.training.pixel_csv import is_pixel_csv

    data_help = "a folder of class subfolders, a pixel CSV file, or cifar10"
    if options.data == "cifar10":
        root = options.data_root
        if root is not None and os.path.lexists(expand_user(root)):
            if not expand_user(root).is_dir():
                raise Failed(
                    f"--data-root {expand_user(root)} is {_node_kind(expand_user(root))}, not a "
                    f"folder; give the folder where CIFAR-10 is (or will be) kept",
                    2,
                )
    elif not is_pixel_csv(options.data):  # a pixel CSV's reader names its own faults
        data = expand_user(options.data)
        try:
            mode = os.stat(data).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:  # a link loop, a folder on the way that cannot be entered
            check_input_file("--data", data, data_help)
            raise Failed(f"--data {data} cannot be read: {exc.strerror or exc}", 2) from exc
        if mode is None and os.path.islink(data):
            check_input_file("--data", data, data_help)  # says where the link leads
        if mode is None:
            raise Failed(f"--data {data} does not exist; give {data_help}", 2)
        if stat.S_ISDIR(mode) and data.suffix.lower() == ".csv":
            raise Failed(
                f"--data {data} is a folder named like a CSV file; give the pixel CSV file, or "
                f"rename the folder if it holds class subfolders",
                2,
            )
        if not stat.S_ISDIR(mode):
            check_input_file("--data", data, data_help)
    from vitexplorer.core.io.images import ImageLoadError, load_image

    for probe in options.probe_files:
        path = check_input_file("--probe-image", probe, "an image file (or leave it out)")
        try:  # decoded now (a few small images), not found unreadable after training started
            load_image(path)
        except ImageLoadError as exc:
            raise Failed(f"--probe-image: {exc}; give an image file (or leave it out)", 2) from exc
    weights = getattr(options, "weights", "default")
    if weights not in ("default", "none"):
        check_input_file(
            "--weights", weights, "a weights file (.pth or .safetensors), default or none"
        )
    model = getattr(options, "model", "")
    named_file = model.endswith((".safetensors", ".pth", ".pt", ".bin"))  # models.is_weights_path
    if named_file or (os.sep in model and not model.startswith(("hf:", "timm:"))):
        check_input_file("--model", model, "a checkpoint file (.safetensors) or a model's name")
    if getattr(options, "test_csv", None) is not None:
        check_input_file("--test-csv", options.test_csv, "an unlabelled pixel CSV file")
