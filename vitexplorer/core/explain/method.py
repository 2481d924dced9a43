"""The method catalogue's words: what an explanation method is, its options, and where to find one.

A method is one file under :mod:`vitexplorer.core.explain.methods` that describes itself with a
torch-free :class:`Method` and registers it (``register``, as timm's ``register_model``); its
computation is imported only when a map is asked for. Everything else is generated from these
descriptions: the command line's ``--method`` choices and option flags, the help window's texts,
the method bar's widgets, the titles of figures, the method cards, the worker's map jobs.

Every method reads its options from one :class:`MethodOptions`, held as the code indexes the
arrays (0-based); an :class:`Option` says whether people count it from 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vitexplorer.core.render.numbering import shown

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")  # as core.explain.rollout, torch-free
BASELINES: tuple[str, ...] = ("black", "mean", "blur")  # what replaces an input (IG, occlusion)
OCCLUDED: tuple[str, ...] = ("pixels", "token")  # what occlusion replaces of each patch
ATTENTION_RULES: tuple[str, ...] = ("cp", "attnlrp")  # AttnLRP's rule inside the attention


class MethodCancelled(Exception):
    """A person cancelled a method's computation (a :data:`Progress` raised it)."""


Progress = Callable[[int, int], None]
"""``progress(done, total)``: a method that takes several passes calls it after each (``total``
passes in all); it raises :class:`MethodCancelled` when the person cancelled."""


@dataclass(frozen=True)
class Option:
    """One setting of one or more methods: a field of :class:`MethodOptions`.

    ``kind`` decides the check, the command-line type and the method bar's widget: "layer"
    (an index, -1 the last), "head" (an index or None for the mean of the heads), "token",
    "choice" (one of ``choices``), "ratio" (a share from 0 to below 1), "class" (a class index
    or None for the predicted one), "count" (a whole number from ``low`` to ``high``), "real"
    (a finite number from ``low`` to ``high``). ``selected`` options are chosen in the view
    (the layer and head spin boxes, a clicked token), not in the method bar."""

    name: str
    kind: str
    default: Any
    label: str  # a few words: "start layer"
    help: str = ""  # the command line's help
    tip: str = ""  # the method bar's tooltip
    flag: str | None = None  # the command line's flag; None: not an option there
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    counted_from_1: bool = False  # people give and read it from 1 (the code holds 0-based)
    selected: bool = False
    affix: str = ""  # the bar widget's words: "from layer " (prefix), "% discarded" (suffix)
    from_end: bool = False  # a layer that may count from the last (-1)
    low: float | None = None  # "count" and "real": the smallest value allowed
    high: float | None = None  # and the largest

    def check(self, value: Any) -> None:
        """Raise ValueError when ``value`` is not a valid value of this option (any model)."""
        words = self.label
        if self.kind in ("layer", "head", "token", "class"):
            if value is None and self.default is None:
                return
            if isinstance(value, bool) or not _whole(value):
                raise ValueError(f"{words} must be a whole number, not {value!r}")
            if not self.from_end and value < 0:
                raise ValueError(f"{words} must be at least 0, not {value}")
        elif self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"unknown {words} {value!r}; use one of {', '.join(self.choices)}")
        elif self.kind == "ratio":
            if isinstance(value, bool) or not _real(value):
                raise ValueError(f"{words} must be a number, not {value!r}")
            if not 0.0 <= value < 1.0:  # also refuses NaN
                raise ValueError(f"{words} {value} must be at least 0 and below 1")
        elif self.kind in ("count", "real"):
            whole = self.kind == "count"
            if isinstance(value, bool) or not (_whole(value) if whole else _real(value)):
                kind = "a whole number" if whole else "a number"
                raise ValueError(f"{words} must be {kind}, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{words} must be a finite number, not {value}")
            low, high = self.low, self.high
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{words} {value} must be from {low:g} to {high:g}")

    def check_fits(self, value: Any, spec: Any) -> None:
        """Raise ValueError when ``value`` does not exist in the model ``spec``, counting from 1
        as people do."""
        if value is None:
            return
        if self.kind == "layer":
            layers = spec.num_layers
            low = -layers if self.from_end else 0
            if not low <= value < layers:
                end = " (-1 is the last)" if low else ""
                raise ValueError(
                    f"{self.label} {shown(value)} does not exist: the model has layers 1 to "
                    f"{layers}{end}"
                )
        elif self.kind == "head" and value >= spec.num_heads:
            raise ValueError(
                f"head {shown(value)} does not exist: the model has heads 1 to {spec.num_heads}"
            )
        elif self.kind == "token" and value >= spec.num_tokens:
            raise ValueError(
                f"token {shown(value)} does not exist: the model has tokens 1 to {spec.num_tokens}"
            )
        elif self.kind == "class" and value >= spec.num_classes:
            raise ValueError(f"target class {value} is outside 0..{spec.num_classes - 1}")


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral)  # int and numpy's integers (registered there)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real)  # float and numpy's floating scalars


OPTIONS: tuple[Option, ...] = (
    Option(
        "layer",
        "layer",
        -1,
        "layer",
        "attention: the layer, from 1 (the first) to the number of layers; -1 is the last, -2 "
        "the one before (default: -1)",
        flag="--layer",
        metavar="L",
        counted_from_1=True,
        selected=True,
        from_end=True,
    ),
    Option(
        "head",
        "head",
        None,
        "head",
        "attention: the head, from 1 (default: the mean of the heads)",
        flag="--head",
        metavar="H",
        counted_from_1=True,
        selected=True,
    ),
    Option("token", "token", 0, "token", counted_from_1=True, selected=True),
    Option(
        "head_fusion",
        "choice",
        "mean",
        "head fusion",
        "rollout: how each layer's heads are combined (default: mean)",
        "Rollout: how each layer's heads are combined",
        flag="--head-fusion",
        choices=HEAD_FUSIONS,
        affix=" of heads",
    ),
    Option(
        "discard_ratio",
        "ratio",
        0.0,
        "discard ratio",
        "rollout: the share of each row's weakest patch attention set to zero, from 0 to below "
        "1; the CLS column is never discarded (default: 0)",
        "Rollout: the share of each row's weakest patch attention set to zero before the layers "
        "are multiplied (never the CLS column)",
        flag="--discard-ratio",
        metavar="R",
        affix="% discarded",
    ),
    Option(
        "start_layer",
        "layer",
        0,
        "start layer",
        "rollout and chefer-lrp: the first layer multiplied in; legrad: the first layer "
        "averaged; from 1 (default: 1, every layer)",
        "Rollout and Chefer LRP: the first layer multiplied in; LeGrad: the first layer averaged",
        flag="--start-layer",
        metavar="L",
        counted_from_1=True,
        affix="from layer ",
    ),
    Option(
        "target_class",
        "class",
        None,
        "target class",
        "class-specific methods: the class to explain, an index or a class name (default: the "
        "predicted class)",
        "The class to explain",
        flag="--target-class",
        metavar="K",
    ),
    Option(
        "path_steps",
        "count",
        50,
        "path steps",
        "integrated-gradients: the steps of the path from the baseline to the image (default: 50)",
        "Integrated gradients: the steps of the path from the baseline to the image",
        flag="--path-steps",
        metavar="N",
        affix=" steps",
        low=1,
        high=10_000,
    ),
    Option(
        "samples",
        "count",
        25,
        "samples",
        "smoothgrad: the noisy copies of the image averaged (default: 25)",
        "SmoothGrad: the noisy copies of the image averaged",
        flag="--samples",
        metavar="N",
        affix=" samples",
        low=1,
        high=10_000,
    ),
    Option(
        "noise",
        "real",
        0.15,
        "noise",
        "smoothgrad: the noise's standard deviation as a share of the input's range, max - min "
        "(default: 0.15)",
        "SmoothGrad: the noise's standard deviation as a share of the input's range",
        flag="--noise",
        metavar="S",
        affix="noise ",
        low=0.0,
        high=10.0,
    ),
    Option(
        "baseline",
        "choice",
        "black",
        "baseline",
        "integrated-gradients and occlusion: what stands for an absent input: a black image, "
        "the dataset's mean colour (zero after normalisation) or the image blurred (default: "
        "black)",
        "What stands for an absent input: black, the mean colour or the image blurred",
        flag="--baseline",
        choices=BASELINES,
        affix=" baseline",
    ),
    Option(
        "noise_seed",
        "count",
        0,
        "noise seed",
        "smoothgrad: the seed of the noise, so that a map can be made again (default: 0)",
        "SmoothGrad: the seed of the noise",
        flag="--noise-seed",
        metavar="N",
        affix="seed ",
        low=0,
        high=2**63 - 1,
    ),
    Option(
        "gamma",
        "real",
        0.05,
        "gamma",
        "attnlrp: the gamma rule's gamma for the linear layers (default: 0.05)",
        "AttnLRP: the gamma of the linear layers' rule",
        flag="--gamma",
        metavar="G",
        affix="γ linear ",
        low=0.0,
        high=1e6,
    ),
    Option(
        "conv_gamma",
        "real",
        100.0,
        "convolution gamma",
        "attnlrp: the gamma rule's gamma for the patch convolution (default: 100)",
        "AttnLRP: the gamma of the patch convolution's rule",
        flag="--conv-gamma",
        metavar="G",
        affix="γ conv ",
        low=0.0,
        high=1e6,
    ),
    Option(
        "attention_rule",
        "choice",
        "cp",
        "attention rule",
        "attnlrp: the attention's rule: cp (its weights held constant, as lxt's ViT example) or "
        "attnlrp (the softmax rule, the uniform rule on its two products and the gamma rule on "
        "its projections, as lxt's language models) (default: cp)",
        "AttnLRP: the attention's rule (cp: weights held constant; attnlrp: the paper's rules)",
        flag="--attention-rule",
        choices=ATTENTION_RULES,
        affix="attention ",
    ),
    Option(
        "occlude",
        "choice",
        "pixels",
        "occluded",
        "occlusion: what is replaced, each patch's pixels (by the baseline) or its token (by "
        "zeros) (default: pixels)",
        "Occlusion: replace each patch's pixels by the baseline, or its token by zeros",
        flag="--occlude",
        choices=OCCLUDED,
        affix=" occluded",
    ),
)
"""Every option of every method, in the order the command line lists them."""

OPTION = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class MethodOptions:
    """The settings of every method; each method reads its own (:attr:`Method.options`).

    Held as the code indexes the arrays, 0-based: ``layer`` 0 is the first layer and -1 the
    last; ``head=None`` averages the heads; ``token`` is the query token (0 is the first prefix
    token, CLS); ``target_class=None`` explains the predicted class. People give and read
    layers, heads and tokens from 1: the command line converts what is typed and the method card
    (:mod:`vitexplorer.core.explain.card`) writes them 1-based; the messages count from 1 too.
    """

    layer: int = -1
    head: int | None = None
    token: int = 0
    head_fusion: str = "mean"
    discard_ratio: float = 0.0
    start_layer: int = 0
    target_class: int | None = None
    path_steps: int = 50
    samples: int = 25
    noise: float = 0.15
    baseline: str = "black"
    noise_seed: int = 0
    gamma: float = 0.05  # with conv_gamma 100: lxt's choice for vision (in its ViT grid)
    conv_gamma: float = 100.0
    attention_rule: str = "cp"
    occlude: str = "pixels"

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name))

    def check(self, method: str, spec: Any) -> None:
        """Raise ValueError when an option ``method`` reads does not fit the model."""
        get(method).check(self, spec)

    def as_dict(self, method: str | None = None) -> dict[str, Any]:
        """JSON-ready options for a method card; with ``method``, only those it reads. As the
        code holds them (0-based): the card writes layers, heads and tokens from 1."""
        options = asdict(self)
        if method is None:
            return options
        return {key: options[key] for key in get(method).options}

    def target_for(self, predicted: int) -> int:
        """The class a class-specific method explains: the chosen one, else ``predicted``."""
        return predicted if self.target_class is None else int(self.target_class)


class Computation:
    """How a method computes its map; a method file subclasses it, importing numpy and torch
    inside the functions (the descriptions stay torch-free).

    A method that reads the stored attention (``needs_model`` False) defines
    :meth:`from_attention` (the command line's map) and :meth:`prepare` with :meth:`token_map`
    (the explorer: what is worth keeping per image and option, then the clicked token's map).
    A method that needs the model defines :meth:`from_model` (the command line's map) and
    :meth:`matrix` (the worker's job: every token's row, kept by the explorer); its
    :meth:`token_map` reads a row of that matrix."""

    def key(self, options: MethodOptions, spec: Any) -> tuple:
        """What :meth:`prepare` or :meth:`matrix` depends on, for the cache."""
        return ()

    def refusal(self, model: Any) -> str | None:
        """Why this computation cannot run on ``model`` (a ``LoadedModel`` whose family lacks
        a part it needs), in one line naming the model, the method and what works instead;
        None when it can. The dispatcher refuses with these words (:meth:`Method.applies`)."""
        return None

    def from_attention(self, attention: Any, spec: Any, options: MethodOptions) -> Any:
        raise NotImplementedError

    def prepare(self, attention: Any, spec: Any, options: MethodOptions) -> Any:
        return attention

    def from_model(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: Any,
        progress: Progress | None = None,
    ) -> Any:
        raise NotImplementedError

    def matrix(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: Any,
        progress: Progress | None = None,
    ) -> Any:
        raise NotImplementedError

    def whole(self, prepared: Any) -> Any:
        """The whole (tokens, tokens) matrix of a method that has one (rollout): row i is
        token i's map, prefix tokens included."""
        raise NotImplementedError

    def token_map(self, prepared: Any, options: MethodOptions, spec: Any) -> Any:
        """``options.token``'s map over the patch grid, (rows, cols) float32."""
        from vitexplorer.core.explain.tokens import token_relevance

        return token_relevance(prepared, options.token, spec.grid, spec.num_prefix_tokens)


Title = Callable[[dict[str, Any], Any, "dict[str, Any] | None"], str]


def _passes(count: int) -> str:
    return f"{count} pass" if count == 1 else f"{count} passes"


def for_class(words: str, target: dict[str, Any] | None) -> str:
    """A class-specific method's words with the class it explains: "relevance for 'dog'
    (predicted)"; ``words`` alone when no class is known (a model without a classifier)."""
    if target is None:
        return words
    predicted = " (predicted)" if target.get("predicted") else ""
    return f"{words} for {target['name']!r}{predicted}"


@dataclass(frozen=True)
class Method:
    """One explanation method, described without torch.

    ``compute`` is the method file's :class:`Computation`, whose functions import what they
    need (numpy, torch) only when a map is asked for. ``needs_model``: the map needs the model
    (a worker job), not only the stored attention of the analysis. ``distribution``: every row
    of the map is a probability distribution over the tokens, so a uniform level 1/N exists.
    ``only_cls``: the map is read from the CLS token on the command line (the app may follow
    the clicked token). ``signed``: the map's sign means something (negative is evidence
    against the class), so it is drawn on a diverging colour scale symmetric around zero."""

    name: str
    label: str  # the method bar's entry
    summary: str  # a few words for the command line's --method help
    tip: str  # a sentence for the method box's tooltip
    help_title: str  # the help window's heading
    help: str  # the help window's paragraph
    paper: str = ""  # authors, title, venue and year
    year: int | None = None
    options: tuple[str, ...] = ()
    needs_model: bool = False
    needs_backward: bool = False
    class_specific: bool = False
    distribution: bool = False
    signed: bool = False  # negative values mean something: a diverging scale around zero
    only_cls: bool = False
    cost: int = 0  # forward passes beyond the analysis's one (a backward counts as one)
    cost_per: str | None = None  # ``cost`` is per step of this: an option ("steps") or "patches"
    explains: str = ""  # what the map explains, a few words ("the class score, per pixel")
    per_token: bool = True  # the worker computes every token's map (a matrix); else the CLS map
    pixels: bool = False  # attributes to the input's pixels: the pixel map is kept beside the grid
    not_applied: str = ""  # why the view's layer and head do not apply ("" they do)
    requires_classifier: bool = False
    title: Title | None = None  # (parameters, spec, target) -> the figure's title
    caption: Title | None = None  # the same, in the few words of a view's title
    compute: Computation | None = None
    order: int = 100  # place in the lists (the method box, --method's choices)

    def __post_init__(self) -> None:
        unknown = [name for name in self.options if name not in OPTION]
        if unknown:
            raise ValueError(f"method {self.name!r} reads unknown options {unknown}")

    @property
    def computation(self) -> Computation:
        """The method file's :class:`Computation` (every registered method has one)."""
        if self.compute is None:
            raise ValueError(f"the {self.name} method has no computation")
        return self.compute

    def make_caption(
        self, parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None
    ) -> str:
        """A view's title in a few words ("rollout · mean of heads"), numbers from 1."""
        if self.caption is None:
            return self.make_title(parameters, spec, target)
        return self.caption(parameters, spec, target)

    def passes(self, options: MethodOptions | None = None, spec: Any = None) -> int | None:
        """Forward passes (a backward counts as one) beyond the analysis's one for ``options``
        on the model ``spec``; None when it depends on a model not given (occlusion's patches)."""
        if self.cost_per is None:
            return self.cost
        if self.cost_per == "patches":
            if spec is None:
                return None
            rows, cols = spec.grid
            return self.cost * rows * cols
        return self.cost * int(getattr(options or MethodOptions(), self.cost_per))

    def cost_words(self, options: MethodOptions | None = None, spec: Any = None) -> str:
        """The cost in words for tables and the help: "2 passes", "2 per step (100 at 50)"."""
        if self.cost_per is None:
            return "none (reads the analysis)" if not self.cost else _passes(self.cost)
        per = "patch" if self.cost_per == "patches" else OPTION[self.cost_per].label.rstrip("s")
        total = self.passes(options, spec)
        words = f"{self.cost} per {per}"
        if total is None:
            return words
        if self.cost_per == "patches":
            return f"{words} ({total} on {spec.grid[0]}x{spec.grid[1]})"
        return f"{words} ({total} at {getattr(options or MethodOptions(), self.cost_per)})"

    @property
    def bar_options(self) -> tuple[Option, ...]:
        """The options the method bar shows for this method (not those chosen in the view)."""
        return tuple(OPTION[name] for name in self.options if not OPTION[name].selected)

    def applies(self, spec: Any, model: Any = None) -> str | None:
        """Why this method does not apply to the model ``spec`` (and, when given, to the loaded
        ``model``: its computation's :meth:`Computation.refusal`), or None when it does."""
        if self.requires_classifier and not spec.has_classifier:
            others = " and ".join(m.name for m in catalogue() if not m.requires_classifier)
            return (
                f"{spec.display_name} has no classifier, so there is no class score for "
                f"{self.name} to explain; {others} work"
            )
        if model is not None and self.compute is not None:
            return self.compute.refusal(model)
        return None

    def check(self, options: MethodOptions, spec: Any) -> None:
        """Raise ValueError when an option this method reads does not fit the model."""
        reason = self.applies(spec)
        if reason:
            raise ValueError(reason)
        if self.only_cls and options.token != 0:
            raise ValueError(
                f"{self.name} explains the CLS token (token 1) only, not token "
                f"{shown(options.token)}"
            )
        for name in self.options:
            OPTION[name].check_fits(getattr(options, name), spec)

    def make_title(
        self, parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None
    ) -> str:
        """The figure's title, numbers from 1; ``parameters`` as the code holds them."""
        if self.title is None:
            return f"{self.name} · {spec.token_label(int(parameters.get('token', 0)))}"
        return self.title(parameters, spec, target)


@dataclass(frozen=True)
class MapChoice:
    """A method and its options, as the method bar holds them (the view's layer, head and
    token are the selection's: :meth:`at`)."""

    method: str
    options: MethodOptions = field(default_factory=MethodOptions)

    def __post_init__(self) -> None:
        check_method(self.method)

    @property
    def described(self) -> Method:
        return get(self.method)

    @property
    def target(self) -> int | None:
        """The class chosen for a class-specific method; None: the predicted one."""
        return self.options.target_class

    def at(self, selection: Any) -> MethodOptions:
        """The options with the view's layer, head and token (a ``Selection``)."""
        return replace(
            self.options, layer=selection.layer, head=selection.head, token=selection.token
        )


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the catalogue (each method file calls it once); returns it."""
    if method.name in _REGISTRY and _REGISTRY[method.name] != method:
        raise ValueError(f"a method named {method.name!r} is registered already")
    _REGISTRY[method.name] = method
    return method


def catalogue() -> tuple[Method, ...]:
    """Every method, in the order the lists show them: the method files under
    :mod:`vitexplorer.core.explain.methods`, found there (no list to keep)."""
    from vitexplorer.core.explain import methods

    methods.load_all()
    return tuple(sorted(_REGISTRY.values(), key=lambda m: (m.order, m.name)))


def method_names() -> tuple[str, ...]:
    return tuple(m.name for m in catalogue())


def get(name: str) -> Method:
    """The method named ``name``, or a ValueError naming those there are."""
    names = method_names()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; use one of {', '.join(names)}")
    return _REGISTRY[name]


def check_method(name: str) -> str:
    return get(name).name
