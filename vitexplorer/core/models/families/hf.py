"""Hugging Face transformers' ViTs: ViT, DeiT (with its distillation token), DINOv2 (with or
without registers) and CLIP's image tower, from a ``save_pretrained`` folder or the local hub
cache, named ``hf:FOLDER_OR_HUB_NAME``; the family's class (:class:`HFFamily`, at the end).
Remote code is never loaded.

The model and its adapter live in :mod:`~vitexplorer.core.models.families.hf_model`; configs and
preprocessing in :mod:`~vitexplorer.core.models.families.hf_config`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models import skeleton as no_init  # with_weights: looked up at each call
from vitexplorer.core.models.building import BuildPlan
from vitexplorer.core.models.download import CancelCheck, ProgressCallback, WeightsUnavailableError
from vitexplorer.core.models.families.family import Family, UnsupportedModel
from vitexplorer.core.models.families.hf_config import (
    DEFAULT_PREP,
    EXTRA,
    Preprocessing,
    architecture_config,
    build_model,
    check_config,
    choose_class,
    model_class,
    preprocessing,
)
from vitexplorer.core.models.families.hf_files import (
    HFFolderError,
    cached_processor,
    check_files,
    download_config,
)
from vitexplorer.core.models.families.hf_model import (
    KINDS,
    HFAdapter,
    HFClassifier,
)
from vitexplorer.core.models.families.hub import probe
from vitexplorer.core.models.families.registry import family_named
from vitexplorer.core.models.spec import RANDOM, ModelSpec
from vitexplorer.core.models.vit import SmallViTConfig

_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# --- where a model comes from ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    text: str  # what followed "hf:"
    folder: Path | None  # a save_pretrained folder, or None for a hub name

    @property
    def short(self) -> str:
        return self.folder.name if self.folder is not None else self.text


def parse_source(name: str) -> Source:
    """The folder or hub name in ``hf:FOLDER_OR_HUB_NAME``; a ValueError of one line when it
    is neither."""
    text = name.split(":", 1)[1] if ":" in name else name
    if not text.strip():
        raise ValueError("hf: needs a folder or a hub name, e.g. hf:google/vit-base-patch16-224")
    path = expand_user(text)
    if path.is_dir():
        if not os.path.lexists(path / "config.json"):  # what else it is: said when checked
            raise ValueError(f"{text} has no config.json: it is not a save_pretrained folder")
        return Source(text, path.resolve())
    if path.exists():
        raise ValueError(
            f"hf:{text} is a file; hf: takes a save_pretrained folder or a hub name (give a "
            f"weights file with --weights)"
        )
    if _HUB_NAME.fullmatch(text) and ".." not in text:
        return Source(text, None)
    raise ValueError(f"folder not found: {text}")


@contextmanager
def _quiet(show_progress: bool = False) -> Iterator[None]:
    """transformers' load reports and progress bars, and the hub client's retry warnings, off
    while it runs (errors still raise)."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    hub_verbosity = hub_logging.get_verbosity()  # the hub client's retry warnings, offline
    logging.set_verbosity_error()
    hub_logging.set_verbosity_error()
    if not show_progress:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        hub_logging.set_verbosity(hub_verbosity)
        if bars:
            logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _library_reason(exc: BaseException) -> str:
    """A library's first line, without PyTorch's advice to load a pickle unsafely."""
    text = str(exc)
    if "weights_only" in text:
        return "a pickle that holds more than tensors, which is never loaded"
    return _first_line(exc)


def _read_config(
    source: Source, allow_download: bool, processor: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any], bool]:
    """The config (trusted code only), the image processor's settings (``processor`` when
    they were read and checked already) and whether the files had to be downloaded."""
    from transformers import AutoConfig

    where = str(source.folder or source.text)
    downloaded = False
    with _quiet():
        try:
            config = AutoConfig.from_pretrained(
                where, trust_remote_code=False, local_files_only=True
            )
        except Exception as exc:  # a library's error, whatever its class
            if isinstance(exc, MemoryError):
                raise
            if source.folder is not None or not isinstance(exc, OSError):
                raise UnsupportedModel(
                    f"hf:{source.text}: config.json cannot be used ({_first_line(exc)}); use "
                    f"the config.json that save_pretrained wrote"
                ) from exc
            if not allow_download:
                raise WeightsUnavailableError(
                    f"hf:{source.text} is not in the local Hugging Face cache (and not a folder); "
                    f"give a save_pretrained folder, or download it first"
                ) from exc
            config, downloaded = None, True
    if config is None:
        why = probe(source.text, "config.json")  # offline: said at once, not after retries
        if why is not None:
            raise WeightsUnavailableError(
                f"no network: the Hugging Face hub cannot be reached for hf:{source.text} "
                f"({why}), and it is not in the local cache; give a save_pretrained folder"
            )
        with _quiet(show_progress=True):
            try:
                download_config(source.text)  # alone first: checked before transformers reads it
                config = AutoConfig.from_pretrained(where, trust_remote_code=False)
            except ValueError as exc:
                if isinstance(exc, (HFFolderError, UnsupportedModel)):  # its file named
                    raise
                raise UnsupportedModel(
                    f"hf:{source.text}: config.json: {_first_line(exc)}"
                ) from exc
            except Exception as exc:  # the hub client's errors, whatever their class
                if isinstance(exc, MemoryError):
                    raise
                raise WeightsUnavailableError(
                    f"hf:{source.text} is not a folder, not in the local Hugging Face cache and "
                    f"could not be downloaded: {_first_line(exc)}"
                ) from exc
    if processor is None:
        processor = _processor_settings(source, not downloaded)
    return config, processor, downloaded


def _processor_settings(source: Source, local_only: bool) -> dict[str, Any]:
    if source.folder is not None:
        path: Path | None = source.folder / "preprocessor_config.json"
    else:
        from transformers.utils import cached_file

        with _quiet():
            try:
                found = cached_file(
                    source.text,
                    "preprocessor_config.json",
                    local_files_only=local_only,
                    _raise_exceptions_for_missing_entries=False,
                )
            except OSError:
                found = None
        path = Path(found) if found else None
    if path is None:
        return {}
    return cached_processor(path, source.text)


# --- loading -------------------------------------------------------------------------------------


def _config_dict(config: Any) -> dict[str, Any]:
    data = config.to_dict()
    data.setdefault("architectures", getattr(config, "architectures", None))
    return data


def _vision_config(config: Any) -> Any:
    """A whole CLIP model's config: its image tower's, with the projection's width (which the
    whole model's config holds)."""
    if config.model_type != "clip":
        return config
    vision = config.vision_config
    vision.projection_dim = config.projection_dim
    return vision


def _config_side(config: Any) -> int:
    """The config's image side (the size its position embeddings were learned at)."""
    size = config.image_size
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise UnsupportedModel(f"its config's image size {list(size)} is not square")
        size = size[0]
    return size


def _class_names(config: Any, num_classes: int) -> tuple[str, ...]:
    labels = getattr(config, "id2label", None) or {}
    names = []
    for i in range(num_classes):
        name = labels.get(i, labels.get(str(i)))
        if not isinstance(name, str) or name == f"LABEL_{i}":  # transformers' placeholder
            name = f"class {i}"
        names.append(name[:1000])
    return tuple(names)


def make_spec(
    module: HFClassifier,
    name: str,
    label: str,
    prep: Preprocessing,
    class_names: tuple[str, ...],
) -> ModelSpec:
    """The spec of a wrapped HF model; its config records what rebuilds it from a checkpoint."""
    adapter = HFAdapter(module)
    config = module.config
    source = name.split(":", 1)[1]
    short = source if _HUB_NAME.fullmatch(source) else Path(source).name
    return ModelSpec(
        name=name,
        display_name=f"{module.architecture} ({short})",
        weights=label,
        image_size=prep.image_size,
        resize_size=prep.resize_size,
        patch_size=config.patch_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        class_names=class_names,
        num_prefix_tokens=adapter.num_prefix_tokens,
        mean=prep.mean,
        std=prep.std,
        interpolation=prep.interpolation,
        crop_mode=prep.crop_mode,
        notes=prep.notes,
        config={
            "class": module.architecture,
            "image_size": prep.image_size,
            "num_classes": len(class_names),
            "hf": architecture_config(config),
        },
        family="hf",
        prefix_kinds=adapter.prefix_kinds,
        has_classifier=adapter.get_classifier() is not None,
    )


def _num_classes(module: HFClassifier) -> int:
    head = HFAdapter(module).get_classifier()
    return head.out_features if head is not None else 0


def _from_state_dict(
    cls: type[Any], config: Any, extra: dict[str, Any], path: Path, source: str
) -> nn.Module:
    """The model with a plain state dict in HF's key layout for ``config``: checked against
    the model on the meta device first, then built without initialisation and given the file's
    tensors (``no_init.with_weights``); a file in an older transformers layout (``encoder.layer``,
    ``attention.attention.query``) goes through transformers' own key conversion (its
    ``from_pretrained``, which builds on the meta device itself), and loads only if every
    parameter is then accounted for."""
    from vitexplorer.core.models.checkpoint import (
        WeightsFileError,
        check_fits,
        file_label,
        read_weights,
        shapes_of,
    )
    from vitexplorer.core.models.families.layouts import misfit_message

    state, meta = read_weights(path)
    if meta is not None:
        raise WeightsFileError(
            f"{file_label(path)} is a vitexplorer checkpoint: open it as the model "
            f"(--model {path}), not as weights for hf:{source}"
        )
    if "add_pooling_layer" in extra:  # built without the pooler, which nothing here reads
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    with torch.device("meta"):
        skeleton = cls(config, **extra)
    try:
        check_fits(skeleton, state, f"a {cls.__name__} of this config")
    except WeightsFileError as exc:
        misfit = WeightsFileError(misfit_message(file_label(path), str(exc), shapes_of(state)))
        with _quiet():
            try:
                model, info = cls.from_pretrained(
                    None, config=config, state_dict=state, output_loading_info=True, **extra
                )
            except (OSError, ValueError, RuntimeError, KeyError, TypeError):
                raise misfit from None
        if any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")):
            raise misfit from None
        return model
    return no_init.with_weights(lambda: cls(config, **extra), state)


def _in_file(source: Source, file: str, exc: BaseException) -> str:
    """A refusal of a folder's config or image processor, naming the file and what to do (the
    checkpoint checks' "hf." before a field is dropped: the file has the field at its top)."""
    text = re.sub(r"(?<![\w/.])hf\.(?=\w)", "", str(exc))
    if ";" not in text:
        text += (
            "; fix it, or use the config.json that save_pretrained wrote"
            if file == "config.json"
            else "; fix it, or remove the file to use the family's usual preprocessing"
        )
    return f"hf:{source.text}: {file}: {text}"


def _spec_config(architecture: str, config: Any, image_size: int) -> dict[str, Any]:
    classes = int(getattr(config, "num_labels", 0) or 0) if KINDS[architecture].classifier else 0
    return {
        "class": architecture,
        "image_size": image_size,
        "num_classes": classes,
        "hf": architecture_config(config),
    }


def _from_pretrained(
    cls: type[Any],
    source: Source,
    config: Any,
    extra: dict[str, Any],
    allow_download: bool,
) -> tuple[nn.Module, Path | None]:
    """The model with the folder's (or the hub cache's) weights; every parameter must be there."""
    from vitexplorer.core.models.checkpoint import WeightsFileError

    where = str(source.folder or source.text)
    with _quiet():
        try:
            model, info = cls.from_pretrained(
                where,
                config=config,
                trust_remote_code=False,
                local_files_only=source.folder is not None or not allow_download,
                output_loading_info=True,
                dtype=torch.float32,
                **extra,
            )
        except Exception as exc:  # a library's error, whatever its class
            if isinstance(exc, MemoryError):
                raise
            if source.folder is None and isinstance(exc, OSError):
                raise WeightsUnavailableError(
                    f"the weights of hf:{source.text} are not in the local Hugging Face cache: "
                    f"{_first_line(exc)}"
                ) from exc
            raise WeightsFileError(
                f"cannot load the weights of hf:{source.text}: {_library_reason(exc)}; replace "
                f"them with the files that save_pretrained wrote"
            ) from exc
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        parts = [f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else []
        parts += [f"{len(mismatched)} of another shape"] if mismatched else []
        raise WeightsFileError(
            f"the weights of hf:{source.text} do not fit its {cls.__name__} config: "
            + "; ".join(parts)
        )
    weights_file = None
    if source.folder is not None:
        for file in ("model.safetensors", "pytorch_model.bin"):
            if (source.folder / file).is_file():
                weights_file = source.folder / file
                break
    return model, weights_file


class HFFamily(Family):
    """Hugging Face transformers' ViTs as ``hf:FOLDER_OR_HUB_NAME``: "default" is the folder's
    (or the hub cache's) own weights, "none" random from its config, or a state dict file."""

    info = family_named("hf")
    adapter_type = HFAdapter

    def load(
        self,
        name: str,
        weights: str,
        *,
        allow_download: bool = True,
        progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        shape: SmallViTConfig | None = None,
    ) -> tuple[nn.Module, ModelSpec, Path | None]:
        """``hf:FOLDER_OR_HUB_NAME`` with its own weights (``default``), random weights from its
        config (``none``), or a state dict in HF's key layout for that config (a path)."""
        del progress, cancelled, shape  # transformers downloads with its own progress bar
        source = parse_source(name)
        checked = check_files(source.folder, source.text, weights == "default")
        config, processor, _ = _read_config(source, allow_download, checked)
        file = "config.json"
        try:
            architecture = choose_class(_config_dict(config))
            config = _vision_config(config)
            kind = KINDS[architecture]
            side = _config_side(config)
            file = "preprocessor_config.json" if processor else file
            prep = preprocessing(kind.model_type, side, processor)
            file = "config.json"
            if kind.classifier and not getattr(config, "num_labels", 0):
                raise UnsupportedModel(f"it gives the {architecture} no labels (num_labels 0)")
            check_config(name, _spec_config(architecture, config, prep.image_size))
        except ValueError as exc:  # UnsupportedModel included: said with the file it comes from
            raise UnsupportedModel(_in_file(source, file, exc)) from None
        cls = model_class(architecture)
        extra = EXTRA.get(architecture, {})
        weights_file: Path | None = None
        if weights == "none":
            try:
                model, label = cls(config, **extra), RANDOM
            except (
                ValueError,
                TypeError,
                KeyError,
                AttributeError,
            ) as exc:  # a field it cannot use
                raise UnsupportedModel(_in_file(source, "config.json", exc)) from None
        elif weights == "default":
            model, weights_file = _from_pretrained(cls, source, config, extra, allow_download)
            label = f"Hugging Face weights ({source.short})"
        else:
            path = Path(weights)
            model = _from_state_dict(cls, config, extra, path, source.text)
            weights_file, label = path, f"file {path.name}"
        wrapper = HFClassifier(model.float(), architecture, prep.image_size).eval()
        names = _class_names(config, _num_classes(wrapper))
        spec = make_spec(wrapper, name, label, prep, names)
        return wrapper, spec.randomised(warn=True) if weights == "none" else spec, weights_file

    def check_config(self, arch: str, config: dict[str, Any]) -> tuple[int, int]:
        """The image size and class count of a checkpoint's ``config`` (see hf_config)."""
        return check_config(arch, config)

    def check_source(self, name: str, weights: str = "default") -> None:
        """Refuse cheaply what :meth:`load` would refuse: a missing folder, a file of it that no
        library should open (see :mod:`hf_files`), a config field of the wrong type or size, an
        unsupported architecture, a weights path that is not a file. No weights are read and
        nothing is built."""
        from vitexplorer.core.models.checkpoint import check_weights_path

        source = parse_source(name)
        check_files(source.folder, source.text, weights == "default", deep=False)
        if weights not in ("default", "none"):
            check_weights_path(weights)

    def checkpoint_plan(self, arch: str, meta: dict[str, Any], label: str) -> BuildPlan:
        """How to rebuild an hf: model that vitexplorer saved (fine-tuned or not) from its checked
        metadata: the wrapper's own state dict, head included."""
        config = meta["config"]
        architecture, hf = config["class"], config["hf"]
        image_size, num_classes = check_config(arch, config)
        defaults = DEFAULT_PREP[KINDS[architecture].model_type]
        prep = Preprocessing(
            image_size,
            meta.get("resize_size", image_size),
            tuple(meta.get("mean", defaults[0])),
            tuple(meta.get("std", defaults[1])),
            meta.get("interpolation", defaults[2]),
            meta.get("crop_mode", "center"),
        )
        names = tuple(meta.get("class_names") or (f"class {i}" for i in range(num_classes)))

        def build() -> nn.Module:
            return build_model(architecture, hf, num_classes, image_size)

        def spec(module: nn.Module) -> ModelSpec:
            assert isinstance(module, HFClassifier)
            return make_spec(module, arch, label, prep, names)

        return BuildPlan(build, architecture, spec, from_metadata=True)
