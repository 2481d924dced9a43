"""vitexplorer for notebooks and scripts: load a model, analyse an image, explain it.

>>> import vitexplorer
>>> model = vitexplorer.load_model("demo")
>>> analysis = model.analyze(vitexplorer.sample_image("robin.jpg"))
>>> analysis.predictions[0].name
'bird'
>>> rollout = vitexplorer.explain(analysis, "rollout")
>>> rollout.map.shape, rollout.card["method"]
((8, 8), 'rollout')

Everything here wraps the core the command line and the app use (the same loaders, the same
captured forward pass, the same methods and method cards), so a number here is the number
``vitexplorer analyze`` writes. What the command line refuses in one line is refused here with
that line as the message of a :class:`VitexplorerError`, before any work starts. People's
numbering holds: layers, heads and tokens count from 1 (token 1 is the first prefix token, CLS in
most models); arrays keep numpy's 0-based axes; classes are indices into the logits (from 0), as
``--target-class`` takes them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from vitexplorer.core.explain.analysis import ImageAnalysis, Prediction, failure_message
from vitexplorer.core.explain.method import OPTION, MethodOptions, check_method, get, method_names
from vitexplorer.core.io.image_inputs import image_from
from vitexplorer.core.io.images import ImageLoadError
from vitexplorer.core.models import loading as models
from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.download import WeightsUnavailableError
from vitexplorer.core.models.feed import WHOLE, Feed
from vitexplorer.core.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from vitexplorer.core.render.numbering import index_of

METHODS: tuple[str, ...] = method_names()  # the method catalogue's names, in its order

__all__ = [
    "METHODS",
    "Analysis",
    "Explanation",
    "Model",
    "Prediction",
    "VitexplorerError",
    "explain",
    "load_model",
    "sample_image",
    "wrap",
]

ImageInput = Union[str, "os.PathLike[str]", bytes, Image.Image, np.ndarray]
"""An image: a file's path, its encoded bytes, a PIL image, or a numpy array (height, width),
(height, width, 3) or (height, width, 4) of uint8 0..255 or floats 0..1."""


SAMPLE_IMAGES: tuple[str, ...] = (
    "sample.png",
    "robin.jpg",
    "border-collie.jpg",
    "container-ship.jpg",
    "sports-car.jpg",
)  # vitexplorer/resources: see its README for what each shows and its licence


WRAPPED_NOTE = "a module wrapped with vitexplorer.wrap: its parameters are in memory, no file"


class VitexplorerError(ValueError):
    """A model, image or setting that vitexplorer refuses; the message is one line that says
    what went wrong and what to do, as the command line prints it."""


def _refuse(message: str) -> VitexplorerError:
    return VitexplorerError(" ".join(message.split()))


# --- the model ----------------------------------------------------------------------------------


class Model:
    """A model ready to analyse images: what :func:`load_model` and :func:`wrap` return."""

    def __init__(self, loaded: models.LoadedModel) -> None:
        self.loaded = loaded

    @property
    def module(self) -> nn.Module:
        """The torch module (in eval mode, on :attr:`device`)."""
        return self.loaded.module

    @property
    def spec(self) -> ModelSpec:
        """Everything vitexplorer knows of the model besides its parameters."""
        return self.loaded.spec

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def num_layers(self) -> int:
        return self.spec.num_layers

    @property
    def num_heads(self) -> int:
        return self.spec.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        """Patch rows and columns of the model's own input size."""
        return self.spec.grid

    def __repr__(self) -> str:
        spec = self.spec
        return (
            f"<vitexplorer.Model {spec.display_name!r}: {spec.num_layers} layers, "
            f"{spec.num_heads} heads, {spec.num_classes} classes, on {self.device}>"
        )

    def analyze(self, image: ImageInput, *, aspect: str = "crop") -> Analysis:
        """One captured forward pass of ``image``: the logits, probabilities, top predictions
        and every layer's and head's attention. The image is centre-cropped as the model's
        preprocessing does (``aspect="crop"``), or with ``aspect="keep"`` analysed whole at its
        own aspect ratio (a rectangular patch grid): the command line's ``--aspect`` words."""
        from vitexplorer.core.explain.analysis import analyze_image
        from vitexplorer.core.models.preprocessing import preprocess

        try:
            picture, source = image_from(image)
        except ImageLoadError as exc:
            raise _refuse(str(exc)) from None
        try:
            feed = Feed.from_aspect(aspect)
        except ValueError as exc:
            raise _refuse(str(exc)) from None
        if feed.whole and self.spec.family == "custom":
            from vitexplorer.core.explain.analysis import input_key

            if input_key(picture, self.spec, WHOLE) != self.spec.grid:
                raise _refuse(
                    f"a wrapped {self.spec.display_name} runs at its own input size only; "
                    'analyse the image with aspect="crop"'
                )
        try:
            result = analyze_image(self.loaded, picture, feed)
            # what the model saw, kept for relevance's backward pass (the decoded image may be
            # 100 megapixels; this is the model's input size)
            seen = preprocess(picture, self.spec, feed)
        except (RuntimeError, ValueError, MemoryError) as exc:
            where = Path(source).name if source else "the image"
            raise _refuse(f"{where}: {failure_message(exc)}") from None
        return Analysis(self, result, seen, source, feed)


def load_model(
    name_or_path: str | os.PathLike[str],
    weights: str | os.PathLike[str] = "default",
    device: str | torch.device = "auto",
    *,
    allow_download: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Model:
    """A model by the names the command line takes: a torchvision ViT (``vit_b_16``...),
    ``small_vit``, ``demo`` (the small ViT trained on CIFAR-10 that ships with vitexplorer,
    offline), ``timm:NAME``, ``hf:FOLDER_OR_HUB_NAME`` or the path of a vitexplorer checkpoint.

    ``weights`` is ``default`` (the family's pretrained weights, downloaded once when missing
    unless ``allow_download`` is False; ``progress(done, total)`` is called with the bytes as
    they arrive), ``none`` (random) or a weights file's path. ``device``
    is ``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. What
    cannot be loaded raises :class:`VitexplorerError` with the command line's line; the notes a
    model carries (random weights, a missing preprocessing config) are Python warnings."""
    from vitexplorer.core.models.download import DownloadCancelled

    name, chosen = _text("the model", name_or_path), _text("weights", weights)
    if not isinstance(device, (str, torch.device)):
        raise _refuse(f"device must be a text such as 'auto', 'cpu' or 'cuda', not {device!r}")
    try:
        models.check_model_source(name, chosen)  # cheap refusals before any heavy work
        loaded = models.load_model(
            name, chosen, device, allow_download=allow_download, progress=progress
        )
    except (WeightsUnavailableError, DownloadCancelled, WeightsFileError, ValueError) as exc:
        raise _refuse(str(exc)) from None
    except OSError as exc:  # e.g. the torch hub cache is not writable
        raise _refuse(f"cannot load the model: {exc}") from None
    except (RuntimeError, MemoryError) as exc:  # e.g. no memory left on the GPU for it
        raise _refuse(f"cannot load the model: {failure_message(exc)}") from None
    for note in loaded.spec.notes:
        warnings.warn(note, stacklevel=2)
    return Model(loaded)


def _text(what: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _refuse(f"{what} is named by a text or a path, not {type(value).__name__}")
    return value


def sample_image(name: str = "sample.png") -> Path:
    """The path of a sample image that ships with vitexplorer: ``sample.png`` (a tabby cat),
    ``robin.jpg``, ``border-collie.jpg``, ``container-ship.jpg`` or ``sports-car.jpg``."""
    from importlib.resources import files

    samples = SAMPLE_IMAGES
    if name not in samples:
        raise _refuse(f"no sample image {name!r}; choose one of {', '.join(samples)}")
    return Path(str(files("vitexplorer.resources") / name))


# --- what an analysis and an explanation hold ---------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Analysis:
    """One image through one model: :meth:`Model.analyze`'s result, for :func:`explain`."""

    model: Model
    result: ImageAnalysis  # the core's analysis, as the app and the command line hold it
    input: torch.Tensor  # (3, height, width) float32 on the CPU: the preprocessed image
    source: str | None  # its path, when it came from a file
    feed: Feed  # how the image was fed: its centre crop or whole

    def __repr__(self) -> str:
        where = Path(self.source).name if self.source else "an image"
        top = self.result.predictions[0] if self.result.predictions else None
        said = f"{top.name} {top.probability:.1%}" if top else "no classifier"
        layers, heads, tokens, _ = self.result.attention.shape
        return (
            f"<vitexplorer.Analysis of {where} by {self.model.name!r}: {said}; attention "
            f"{layers} layers x {heads} heads x {tokens} tokens>"
        )

    @property
    def spec(self) -> ModelSpec:
        """The model's spec, with the analysed grid (rectangular with ``aspect="keep"``)."""
        return self.result.spec

    @property
    def logits(self) -> np.ndarray:
        """(classes,) float32."""
        return self.result.logits

    @property
    def probabilities(self) -> np.ndarray:
        """(classes,) float32, the softmax of the logits."""
        return self.result.probabilities

    @property
    def predictions(self) -> list[Prediction]:
        """The five most probable classes (index, name, probability), most probable first;
        empty for a model without a classifier."""
        return list(self.result.predictions)

    @property
    def attention(self) -> np.ndarray:
        """Every map, (layers, heads, tokens, tokens) float32, each row summing to 1: axis 2
        is the query token, axis 3 the key; the prefix tokens come first, then the patches row
        by row. Axes are 0-based: ``attention[0]`` is layer 1."""
        return self.result.attention

    @property
    def grid(self) -> tuple[int, int]:
        """Patch rows and columns."""
        return self.result.spec.grid

    @property
    def num_prefix_tokens(self) -> int:
        return self.result.spec.num_prefix_tokens

    @property
    def prefix_tokens(self) -> tuple[str, ...]:
        """The prefix tokens' names, in order: "CLS", "distillation", "register 1"..."""
        return self.result.spec.prefix_names()

    @property
    def display(self) -> np.ndarray:
        """(height, width, 3) uint8: the crop the model saw."""
        return self.result.display


@dataclass(frozen=True, eq=False, repr=False)
class Explanation:
    """A map over the patch grid and its method card (what ``vitexplorer analyze`` writes in
    ``<image>.<method>.json``, less the ``map``/``picture``/``files`` entries of its files)."""

    method: str
    map: np.ndarray  # (rows, cols) float32
    card: dict[str, Any]

    @property
    def title(self) -> str:
        """The figure's title: the method, layer, head and token, numbered from 1."""
        return str(self.card.get("title", self.method))

    def __repr__(self) -> str:
        return f"<vitexplorer.Explanation {self.title!r}: a {self.map.shape} map>"


def explain(analysis: Analysis, method: str, **options: Any) -> Explanation:
    """``method``'s map for an analysed image, with its method card (the card ``vitexplorer
    analyze`` writes for the same map).

    Methods are the catalogue's (:data:`METHODS`; ``vitexplorer analyze --help`` describes
    each), and their options are given as people count them, as the command line's are:

    - ``attention``: ``layer`` from 1 (-1, the default, is the last), ``head`` from 1 (default:
      the mean of the heads), ``token`` from 1 (default 1: the first prefix token, CLS);
    - ``rollout`` (Abnar and Zuidema 2020): ``token``, ``head_fusion`` (mean, max or min),
      ``discard_ratio`` (0 to below 1), ``start_layer`` from 1 (the first layer multiplied in);
    - class-specific methods (``relevance``, Chefer et al. 2021, and the others that need a
      backward pass): ``target_class``, a class index from 0 or a class name (default: the
      predicted class).

    An option the method does not read, or a number outside the model, is refused in one line.
    """
    from vitexplorer.core.explain.card import map_card
    from vitexplorer.core.explain.maps import explanation_map

    if not isinstance(analysis, Analysis):
        raise _refuse(f"explain takes an Analysis (model.analyze(image)), not {analysis!r:.60}")
    try:
        check_method(method)
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    chosen = _method_options(analysis, method, options)
    model, result = analysis.model.loaded, analysis.result
    batch = analysis.input.unsqueeze(0).to(model.device) if get(method).needs_model else None
    try:
        heat = explanation_map(method, chosen, analysis=result, model=model, batch=batch)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise _refuse(f"{method}: {failure_message(exc)}") from None
    made = {"aspect": "keep", "grid": list(analysis.spec.grid)} if analysis.feed.whole else None
    card = map_card(model, method, chosen, result, heat, analysis.source, made)
    if (
        analysis.spec.family == "custom"
    ):  # the card's note speaks of files; a wrapped module has none
        card["model"]["weights"]["note"] = WRAPPED_NOTE
    return Explanation(method, heat, card)


def _method_options(analysis: Analysis, method: str, given: dict[str, Any]) -> MethodOptions:
    """The options people gave (counted from 1 where people count so), as the code holds them
    (0-based), checked against the model."""
    spec = analysis.spec
    reads = get(method).options
    values: dict[str, Any] = {}
    try:
        for key, value in given.items():
            if key not in reads:
                raise ValueError(
                    f"{method} reads {', '.join(reads) or 'no options'}; "
                    f"{key} is not one of its options"
                )
            if value is None:
                continue
            option = OPTION[key]
            if option.kind == "class":
                values[key] = _class_index(value, spec.class_names)
                continue
            if option.counted_from_1:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"{key} must be a whole number, not {value!r}")
                count = {"layer": spec.num_layers, "head": spec.num_heads}.get(
                    option.kind, spec.num_tokens
                )
                noun = "token" if option.kind == "token" else option.kind
                hint = "leave head out for the mean of the heads" if option.kind == "head" else ""
                values[key] = index_of(
                    int(value), key, count, noun, from_end=option.from_end, hint=hint
                )
                continue
            values[key] = value
        if "layer" in reads:
            values.setdefault("layer", spec.num_layers - 1)  # the card names the last layer
        chosen = MethodOptions(**values)
        chosen.check(method, spec)
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    return chosen


def _class_index(target: object, class_names: tuple[str, ...]) -> int:
    """A class given as an index (from 0) or a name (case does not matter)."""
    if isinstance(target, str):
        folded = [name.casefold() for name in class_names]
        if target.strip().casefold() in folded:
            return folded.index(target.strip().casefold())
        raise ValueError(
            f"target_class {target!r} is not one of the model's {len(class_names)} class "
            f"names; give its index instead"
        )
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"target_class must be a class index or name, not {target!r}")
    if not 0 <= target < len(class_names):
        raise ValueError(f"target class {target} is outside 0..{len(class_names) - 1}")
    return int(target)


# --- one's own module ---------------------------------------------------------------------------


def wrap(
    module: nn.Module,
    attention: Sequence[str | nn.Module],
    *,
    patch_size: int,
    image_size: int,
    num_prefix: int = 1,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    name: str = "",
    device: str | torch.device = "auto",
) -> Model:
    """One's own ``nn.Module`` ViT as a :class:`Model`, so that :meth:`Model.analyze` and
    :func:`explain` work on it.

    ``attention`` names each layer's self-attention module, first layer first: its name in
    ``module.named_modules()`` or the module itself. Supported: a timm-like ``Attention``
    (``qkv`` and ``proj`` modules, an int ``num_heads``, optionally ``scale``, ``q_norm``,
    ``k_norm``) computing ``softmax(q k^T * scale) v``, and ``torch.nn.MultiheadAttention`` as
    self-attention. ``num_prefix`` tokens (CLS first) come before the patches; the module takes
    (batch, 3, ``image_size``, ``image_size``) images normalised with ``mean`` and ``std`` and
    returns (batch, classes) logits. One probe pass checks, before anything else, that each
    named module's output is unchanged when its softmax is captured, so the maps are the
    module's own; what does not fit is refused in one line. The module is put in eval mode and
    moved to ``device``."""
    from vitexplorer.core.models.families.custom import CustomAdapter
    from vitexplorer.core.models.families.custom_wrap import wrap_module

    try:
        target = models.resolve_device(device) if isinstance(device, str) else device
        wrapped, spec = wrap_module(
            module,
            attention,
            patch_size=patch_size,
            image_size=image_size,
            num_prefix=num_prefix,
            class_names=class_names,
            mean=mean,
            std=std,
            name=name,
            device=target,
        )
    except ValueError as exc:  # UnsupportedModel is one
        raise _refuse(str(exc)) from None
    except (RuntimeError, MemoryError) as exc:
        raise _refuse(f"the probe pass failed: {failure_message(exc)}") from None
    return Model(models.LoadedModel(wrapped, spec, target, known_adapter=CustomAdapter(wrapped)))
