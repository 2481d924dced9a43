"""One method card per map, the same from the command line and from the app.

:func:`map_card` writes what :func:`~vitexplorer.core.explain.provenance.method_card` writes
(the model, the preprocessing, the image, the software) for one map of the catalogue: the
method's own options (0-based in the code, written from 1), the class a class-specific method
explains, the figure's title and what makes the map mean nothing. ``vitexplorer analyze``,
``compare`` and the app's File > Export all call it, so the same map gets the same card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.method import MethodOptions, get

if TYPE_CHECKING:
    import numpy as np

    from vitexplorer.core.explain.analysis import ImageAnalysis


def output_warnings(analysis: ImageAnalysis) -> list[str]:
    """What makes this image's predictions mean nothing (a constant or non-finite output)."""
    from vitexplorer.core.explain.analysis import constant_output, undefined_prediction

    if not analysis.spec.has_classifier:
        return []  # an image encoder: no predictions to judge
    reason = constant_output(analysis.logits)
    if reason is None:
        return []
    undefined = undefined_prediction(analysis.logits, analysis.probabilities)
    if undefined:
        reason = f"{undefined}; {reason}; they are written as null"
    return [reason]


def card_options(method: str, options: MethodOptions) -> dict[str, Any]:
    """The options ``method`` read, as the code holds them (0-based); a method read from the
    CLS token on the command line names the token when the app followed another one."""
    parameters = options.as_dict(method)
    if get(method).only_cls and options.token != 0:
        parameters["token"] = options.token
    return parameters


def target_facts(
    method: str, options: MethodOptions, analysis: ImageAnalysis
) -> dict[str, Any] | None:
    """The class a class-specific method explains: its index, name, probability and whether it
    is the predicted one; None for other methods or a model without a classifier."""
    if not get(method).class_specific or not analysis.predictions:
        return None
    predicted = analysis.predictions[0].index
    target = options.target_for(predicted)
    return {
        "index": target,
        "name": analysis.spec.class_names[target],
        "probability": float(analysis.probabilities[target]),
        "predicted": target == predicted,
    }


def map_facts(
    method: str,
    options: MethodOptions,
    analysis: ImageAnalysis,
    heat: np.ndarray,
    input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's entries about the map itself: ``input`` (how the input was made, when given),
    ``target`` (class-specific methods), ``warnings`` and ``title``."""
    from vitexplorer.core.explain.analysis import flat_map

    facts: dict[str, Any] = {}
    if input is not None:
        facts["input"] = input
    target = target_facts(method, options, analysis)
    if target is not None:
        facts["target"] = target
    flat = flat_map(heat, f"the {method} map")
    facts["warnings"] = output_warnings(analysis) + ([flat] if flat else [])
    parameters = card_options(method, options)
    facts["title"] = get(method).make_title(parameters, analysis.spec, target)
    return facts


def map_card(
    model: Any,
    method: str,
    options: MethodOptions,
    analysis: ImageAnalysis,
    heat: np.ndarray,
    image: Any = None,
    input: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The method card of ``method``'s map ``heat`` for the image of ``analysis``: ``model`` a
    ``LoadedModel`` or anything with its ``spec``, ``weights_file`` and ``device``; ``extra``
    adds entries (the app's subtitle)."""
    from vitexplorer.core.explain.provenance import method_card

    facts = map_facts(method, options, analysis, heat, input)
    return method_card(
        model, method, card_options(method, options), image, {**facts, **(extra or {})}
    )


GRID_OF_PIXELS = "the sum of the pixel map over each patch"
"""What the grid map of a method that attributes to pixels is (a card's ``map.meaning``)."""


def pixel_map_facts(method: str, file: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """A card's ``pixels`` entry for the pixel map of ``method`` (a method whose description
    says ``pixels``): its file, its (height, width) shape, what its axes and values are; the
    grid map beside it is :data:`GRID_OF_PIXELS`."""
    height, width = (int(size) for size in shape)
    return {
        "file": file,
        "shape": [height, width],
        "dtype": "float32",
        "axes": [
            f"axis 0: pixel rows 1..{height} of the model's input",
            f"axis 1: pixel columns 1..{width}",
        ],
        "meaning": f"the {method} attribution of each pixel of the model's input (the "
        f"preprocessed {height}x{width} image it saw); the grid map is its sum over each patch",
    }


def card_method_options(card: dict[str, Any]) -> MethodOptions:
    """The options a method card records (``parameters``, layers, heads and tokens from 1),
    as the code holds them (0-based): what :func:`replay_map` runs the method with."""
    from vitexplorer.core.render.numbering import NUMBERED_PARAMETERS

    given = dict(card.get("parameters") or {})
    for key in NUMBERED_PARAMETERS:
        value = given.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            given[key] = value - 1  # a negative layer counts from the end, as written
    known = set(MethodOptions.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"the card's parameters {', '.join(unknown)} are no method's options")
    return MethodOptions(**given)


def replay_map(card: dict[str, Any], model: Any, image: Any = None) -> np.ndarray:
    """The map a method card describes, made again from what the card records: the method,
    its options, the image (``image``, a PIL image, else the card's ``image`` file) and how the
    input was made (``input``: the whole image on its own grid, else the model's crop).
    ``model`` is the ``LoadedModel`` the card names (its architecture is checked)."""
    from vitexplorer.core.explain.maps import explanation_map
    from vitexplorer.core.models.feed import CROP, WHOLE
    from vitexplorer.core.models.preprocessing import preprocess

    method = str(card["method"])
    named = card.get("model", {}).get("architecture")
    if named is not None and named != model.spec.name:
        raise ValueError(f"the card describes a map of {named}, not of {model.spec.name}")
    if image is None:
        from vitexplorer.core.io.images import load_image

        if not card.get("image"):
            raise ValueError("the card names no image file; give the image")
        image = load_image(card["image"])
    made = card.get("input") or {}
    feed = WHOLE if made.get("aspect") == "keep" else CROP
    batch = preprocess(image, model.spec, feed).unsqueeze(0).to(model.device)
    grid = (int(made["grid"][0]), int(made["grid"][1])) if made.get("grid") else None
    options = card_method_options(card)
    return explanation_map(method, options, model=model, batch=batch, grid=grid)
