"""The settings of a training run, one field each: fine-tuning (:class:`FinetuneConfig`) and
training the small ViT from scratch (:class:`TrainConfig`).

Each field carries a :class:`Setting` in its metadata: the words of its errors, its command-line
flag and help, the Train tab's label, tooltip and choices, its limits and how people count it
(the validation share in percent). The command line's options (``vitexplorer.cli.settings``),
the Train tab's form and what the form remembers are made from these fields; :meth:`check`
applies their limits. Torch-free, so that ``--help`` and the window never wait for torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from vitexplorer.core.models.architecture import LONGEST_WARMUP
from vitexplorer.core.training.heads import HEAD_CHOICES

OPTIMIZERS = ("adamw", "sgd")
HEADS = HEAD_CHOICES  # fine-tuning: the model's own classifier when it fits, or a new one
SCHEDULES = ("cosine", "constant")
AUGMENTATIONS = ("none", "flip", "crop-flip", "crop-flip-rotate", "trivialaugment", "randaugment")
HEAD_INITS = ("normal", "zero")
# The bounds FinetuneConfig.check enforces; the form's widgets stay inside them.
MAX_PER_CLASS = 100_000  # images per class, training and test
MAX_BATCH_SIZE = 65_536
MAX_EPOCHS = 10_000
MAX_LR = 10.0  # far above any useful peak (fine-tuning takes 1e-5 to 1e-2; SGD on a head, ~1)
MAX_WEIGHT_DECAY = 10.0
MAX_CLIP_GRAD = 1e6
SEED_LIMIT = 2**32  # seeds from 0 to 2**32 - 1: numpy's legacy range, which every tool accepts
DEFAULT_PROBES = 10  # a class-balanced handful of test images
MAX_PROBES = 64
QT_INT_MAX = 2**31 - 1  # the largest value a Qt spin box holds


class FreezePolicyError(ValueError):
    """A freeze policy that is not ``head``, ``last:K`` or ``none``, or K out of range."""


def parse_freeze(policy: str, num_layers: int) -> int:
    """The number of encoder blocks that train: 0 for ``head``, all for ``none``."""
    policy = policy.strip().lower()
    if policy == "head":
        return 0
    if policy == "none":
        return num_layers
    if policy.startswith("last:"):
        try:
            k = int(policy[5:])
        except ValueError:
            k = -1
        if 1 <= k <= num_layers:
            return k
        raise FreezePolicyError(
            f"freeze policy {policy!r}: K must be a whole number from 1 to {num_layers}, the "
            f"model's number of blocks"
        )
    raise FreezePolicyError(f"unknown freeze policy {policy!r}; use head, last:K or none")


@dataclass(frozen=True)
class Choice:
    """One value of a setting with a closed list, as the form shows it."""

    value: str
    label: str
    tip: str = ""


@dataclass(frozen=True)
class Setting:
    """How people meet one setting. ``what`` names it in errors; ``low``/``high`` are what
    :meth:`FinetuneConfig.check` accepts (``high`` may name another field: the warm-up is at
    most the epochs); ``form_low``/``form_high`` narrow the form's widget where a wider range
    would be no use or Qt cannot hold it; ``scale`` is how people count it (100: in percent)."""

    what: str
    label: str = ""  # the form's label ("" for a check box, whose text is ``text``)
    tip: str = ""  # the form's tooltip
    text: str = ""  # a check box's own text
    flag: str | None = None  # on the command line; None: not an option there
    help: str = ""  # the command line's help, before "(default: ...)"
    metavar: str | None = None
    group: str = "training"  # the command line's argument group
    default_text: str | None = "%(default)s"  # None: no "(default: ...)"
    cli_default: Any = None  # the option's default when ``cli_default_given``
    cli_default_given: bool = False
    action: str | None = None  # store_true, store_false (the flag turns it off), append
    choices: tuple[Choice, ...] = ()
    closed: bool = True  # whether ``choices`` are all the values (the freeze policy is parsed)
    unknown: str = ""  # "unknown optimiser": the error for a value not among the choices
    low: float | None = None
    high: float | str | None = None
    low_open: bool = False
    high_open: bool = False
    allowed: str = ""  # a real number's range in words ("{epochs}": the field's value)
    advice: str = ""
    form_low: float | None = None
    form_high: float | None = None
    scale: float = 1.0
    unit: str = ""  # the form's suffix
    step: float = 1.0
    decimals: int = 2
    scientific: bool = False  # the form shows it as 0.001 or 3e-05, arrows halve and double

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.choices)


def setting(default: Any, **meta: Any) -> Any:
    """A dataclass field of ``default`` described by a :class:`Setting`."""
    return field(default=default, metadata={"setting": Setting(**meta)})


def described(cls: type, name: str) -> Setting:
    """The :class:`Setting` of the field ``name`` of the config class ``cls``."""
    return next(f.metadata["setting"] for f in fields(cls) if f.name == name)


def settings_of(cls: type) -> dict[str, Setting]:
    """Every field of ``cls`` with its :class:`Setting`, in the field order."""
    return {f.name: f.metadata["setting"] for f in fields(cls)}


def defaults_of(cls: type) -> dict[str, Any]:
    """Every field's default."""
    return {f.name: f.default for f in fields(cls)}


def _again(base: type, name: str, default: Any, **changes: Any) -> Any:
    """The field ``name`` of ``base`` again, with another default and ``changes``."""
    return field(default=default, metadata={"setting": replace(described(base, name), **changes)})


def _shown(value: object) -> str:
    """A setting's value as people write it: 1e+09, nan, -1, 'text'."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _whole(value: object, what: str, low: int, high: int) -> None:
    """``value`` must be a whole number (not a bool) from ``low`` to ``high``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        # typeshed's numbers.Integral declares no comparison with int
        or not (low <= value <= high)  # type: ignore[operator]
    ):
        raise ValueError(
            f"{what} must be a whole number from {low:,} to {high:,}, not {_shown(value)}"
        )


def _real(value: object, s: Setting, low: float, high: Any) -> None:
    """``value`` must be a finite real number within the bounds of ``s`` (open or closed);
    ``high`` as given (the epochs of the run, for the warm-up), shown so in the message."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        # typeshed's numbers.Real declares no comparison with float
        and (low < value if s.low_open else low <= value)  # type: ignore[operator]
        and (value < high if s.high_open else value <= high)
    )
    if not ok:
        raise ValueError(f"{s.what} must be {s.allowed.format(high=high)}, not {_shown(value)}"
                         f"{s.advice}")  # fmt: skip


_FREEZE = (
    Choice("head", "Head only", "Only a new classification head trains; the model stays as it is"),
    Choice("last", "Head + last blocks",
           "A new head and the model's last blocks train (how many: the box beside)"),
    Choice("none", "Everything", "Every parameter trains: embeddings, all blocks and a new head"),
)  # fmt: skip
_HEAD = (
    Choice("keep", "The model's own, when it fits",
           "Keep the model's classifier when the dataset's classes are the model's (same names, "
           "same order); otherwise a new head"),
    Choice("new", "A new head",
           "A new classifier for the dataset's classes, every weight zero: every class starts "
           "equally likely"),
)  # fmt: skip
_AUGMENT = (
    Choice("none", "None"),
    Choice("flip", "Horizontal flips"),
    Choice("crop-flip", "Crops and flips"),
    Choice("crop-flip-rotate", "Crops, flips, small turns"),
    Choice("trivialaugment", "Crops, flips, TrivialAugment"),
    Choice("randaugment", "Crops, flips, RandAugment"),
)
_BELOW_ONE = "a number at least 0 and below 1"


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tune run; saved in the checkpoint's metadata."""

    per_class: int = setting(
        100, what="training images per class (per_class)", label="Images per class",
        tip="Training images per class (a tenth of them validate)", flag="--per-class",
        metavar="N", group="subsets", help="training images per class, validation images included",
        low=1, high=MAX_PER_CLASS)  # fmt: skip
    test_per_class: int = setting(
        50, what="test images per class (test_per_class)", label="Test images per class",
        flag="--test-per-class", metavar="M", group="subsets", help="test images per class",
        low=1, high=MAX_PER_CLASS)  # fmt: skip
    val_fraction: float = setting(
        0.1, what="the validation fraction (val_fraction)", label="Validation share",
        flag="--val-fraction", metavar="F", group="subsets",
        help="share of each class's training images held out for validation",
        low=0, high=1, high_open=True, allowed=_BELOW_ONE, form_high=0.9, scale=100, unit=" %",
        decimals=0)  # fmt: skip
    freeze: str = setting(
        "head", what="the freeze setting", label="Fine-tune",
        tip="What trains; the rest keeps the base model's values", flag="--freeze",
        metavar="head|last:K|none",
        help="train the head only, the last K blocks too, or everything", choices=_FREEZE,
        closed=False)  # fmt: skip
    optimizer: str = setting(
        "adamw", what="the optimizer setting", label="Optimiser", flag="--optimizer",
        choices=(Choice("adamw", "AdamW"), Choice("sgd", "SGD with momentum")),
        unknown="unknown optimiser")  # fmt: skip
    lr: float = setting(
        1e-3, what="the learning rate", label="Learning rate",
        tip="Learning rate (type 3e-4 or use the arrows to halve and double it)", flag="--lr",
        metavar="X", help="peak learning rate", low=0, high=MAX_LR, low_open=True,
        allowed="a positive number no greater than {high:g}",
        advice="; fine-tuning usually takes 1e-5 to 1e-2", form_low=1e-7,
        scientific=True)  # fmt: skip
    weight_decay: float = setting(
        1e-4, what="the weight decay", label="Weight decay", flag="--weight-decay", metavar="X",
        low=0, high=MAX_WEIGHT_DECAY, allowed="a number from 0 to {high:g}",
        scientific=True)  # fmt: skip
    momentum: float = setting(
        0.9, what="the momentum", label="Momentum (SGD)", flag="--momentum", metavar="X",
        help="for SGD", low=0, high=1, high_open=True, allowed=_BELOW_ONE, form_high=0.999,
        step=0.05, decimals=3)  # fmt: skip
    batch_size: int = setting(
        64, what="the batch size", label="Batch size", flag="--batch-size", metavar="B", low=1,
        high=MAX_BATCH_SIZE, form_high=4096)  # fmt: skip
    epochs: int = setting(
        5, what="the number of epochs", label="Epochs", flag="--epochs", metavar="E", low=1,
        high=MAX_EPOCHS, form_high=1000)  # fmt: skip
    schedule: str = setting(
        "cosine", what="the schedule setting", label="Schedule", flag="--schedule",
        help="the learning rate after any warm-up",
        choices=(Choice("cosine", "Cosine decay"), Choice("constant", "Constant")),
        unknown="unknown schedule")  # fmt: skip
    warmup_epochs: float = setting(
        0.0, what="the warm-up (warmup_epochs)", label="Warm-up epochs", flag="--warmup-epochs",
        metavar="E", help="linear warm-up, in epochs, fractions allowed", low=0, high="epochs",
        allowed="a number of epochs from 0 to {high}, the run's length", form_high=100,
        step=0.5, decimals=1)  # fmt: skip
    label_smoothing: float = setting(
        0.0, what="label smoothing", label="Label smoothing", flag="--label-smoothing",
        metavar="X", low=0, high=1, high_open=True, allowed=_BELOW_ONE, form_high=0.9,
        step=0.05)  # fmt: skip
    augment: bool = setting(
        False, what="the augment setting", text="Random horizontal flips", flag="--augment",
        action="store_true", group="subsets", default_text=None,
        help="random horizontal flips (the frozen part then runs every epoch, not once)",
    )  # fmt: skip
    mixed_precision: bool = setting(
        True, what="the mixed_precision setting", text="Mixed precision",
        tip="On a GPU, or a CPU with AMX; elsewhere full precision",
        flag="--no-mixed-precision", action="store_false", default_text=None,
        help="train in float32 throughout; by default the forward passes run in bfloat16 (or "
        "float16) on a GPU, and in bfloat16 on a CPU with AMX, where it is several times faster",
    )  # fmt: skip
    seed: int = setting(
        0, what="the seed", label="Seed", flag="--seed", metavar="S",
        help="decides the images chosen, their order and any random weights", low=0,
        high=SEED_LIMIT - 1, form_high=QT_INT_MAX)  # fmt: skip
    probes: int = setting(
        DEFAULT_PROBES, what="the number of probe images (probes)", label="Time-lapse probes",
        tip="The time-lapse follows this many test images (a class-balanced handful): what the "
        "model does with them before the first step and after every epoch, saved with the "
        "model. 0 turns it off.", flag="--probes", metavar="N", group="time-lapse",
        help="test images (class-balanced) whose attention is captured before the first step "
        "and after every epoch, saved in the checkpoint as a time-lapse; 0 for none",
        low=0, high=MAX_PROBES)  # fmt: skip
    probe_files: tuple[str, ...] = setting(
        (), what="probe_files", flag="--probe-image", metavar="PATH", group="time-lapse",
        action="append", default_text=None, cli_default=[], cli_default_given=True,
        help="follow this image instead of test images (repeat for more)")  # fmt: skip
    # "keep": the model's own classifier when its classes are the dataset's (same names, same
    # order), else a new one; "new": always a new, zero-initialised head
    head: str = setting(
        "keep", what="the head setting", label="Head",
        tip="Which classifier the run starts from", flag="--head",
        help="keep: start from the model's own classifier when the dataset's classes are the "
        "model's (same names, same order), else a new one; new: always a new, zero-initialised "
        "head", choices=_HEAD, unknown="unknown head choice")  # fmt: skip

    def check(self, num_layers: int) -> None:
        """Raise ValueError naming the first setting that cannot work, its value and the range
        allowed. Everything is checked, types included: the command line's ``float`` accepts
        ``nan`` and ``inf``, and a NaN passes every comparison that is not written for it."""
        described_fields = settings_of(type(self))
        kinds = {f.name: f.type for f in fields(self)}
        for name, s in described_fields.items():  # text first: the freeze policy is parsed
            value = getattr(self, name)
            if s.choices and not isinstance(value, str):
                raise ValueError(f"the {name} setting must be text, not {_shown(value)}")
        parse_freeze(self.freeze, num_layers)
        for name, s in described_fields.items():
            value = getattr(self, name)
            if s.choices and s.closed and value not in s.values:
                use = " or ".join(s.values) if len(s.values) == 2 else ", ".join(s.values)
                raise ValueError(f"{s.unknown} {_shown(value)}; use {use}")
        for name in described_fields:
            value = getattr(self, name)
            if kinds[name] == "bool" and not isinstance(value, bool):
                raise ValueError(f"the {name} setting must be true or false, not {_shown(value)}")
        for name, s in described_fields.items():
            if kinds[name] == "int":
                _whole(getattr(self, name), s.what, int(s.low or 0), int(s.high or 0))
        if not isinstance(self.probe_files, (tuple, list)) or not all(
            isinstance(p, str) for p in self.probe_files
        ):
            raise ValueError(f"probe_files must be a list of paths, not {_shown(self.probe_files)}")
        if len(self.probe_files) > MAX_PROBES:
            raise ValueError(
                f"{len(self.probe_files)} probe images are too many: at most {MAX_PROBES}"
            )
        for name, s in described_fields.items():
            if kinds[name] == "float":
                high = getattr(self, s.high) if isinstance(s.high, str) else s.high
                _real(getattr(self, name), s, float(s.low or 0), high)
        if self.lr * self.weight_decay >= 1:
            raise ValueError(
                f"the learning rate times the weight decay must be below 1, not "
                f"{self.lr:g} x {self.weight_decay:g} = {self.lr * self.weight_decay:g}: each "
                f"step would shrink every weight by that share of itself"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def augmentation(self) -> str:
        """The augmentation policy (see :mod:`vitexplorer.core.training.augment`): flips or none."""
        return "flip" if self.augment else "none"

    @property
    def gradient_clip(self) -> float:
        """The largest gradient norm allowed; 0 for no clipping."""
        return 0.0

    @property
    def keeps_best(self) -> bool:
        """Whether the best epoch's weights (by validation accuracy) are the ones handed back."""
        return False

    @property
    def from_scratch(self) -> bool:
        """Whether the model trained from random weights (its checkpoint says 'trained')."""
        return False

    @property
    def keeps_own_head(self) -> bool:
        """Whether the model's own classifier starts training (else a head of zeros)."""
        return False


_F = FinetuneConfig
_NOT_AN_OPTION: dict[str, Any] = {"flag": None}  # from scratch: everything trains, no head kept


@dataclass(frozen=True)
class TrainConfig(FinetuneConfig):
    """A run that trains every weight of a model from scratch: :class:`FinetuneConfig` with
    from-scratch defaults (everything trained, AdamW with warm-up and cosine decay, label
    smoothing, crop-and-flip augmentation), gradient clipping and the best epoch kept."""

    per_class: int = _again(
        _F, "per_class", 5000, help="training images per class, validation included; 5000 is "
        "all of CIFAR-10's")  # fmt: skip
    test_per_class: int = _again(_F, "test_per_class", 1000)
    val_fraction: float = _again(
        _F, "val_fraction", 0.1, help="share of each class's training images held out for "
        "validation, which picks the best epoch")  # fmt: skip
    freeze: str = _again(_F, "freeze", "none", **_NOT_AN_OPTION)
    optimizer: str = _again(_F, "optimizer", "adamw", **_NOT_AN_OPTION)
    momentum: float = _again(_F, "momentum", 0.9, **_NOT_AN_OPTION)
    lr: float = _again(_F, "lr", 1e-3)
    weight_decay: float = _again(_F, "weight_decay", 0.05)
    batch_size: int = _again(_F, "batch_size", 128)
    epochs: int = _again(_F, "epochs", 50)
    schedule: str = _again(_F, "schedule", "cosine", help="after the warm-up")
    # the command line's default follows --epochs (architecture.default_warmup)
    warmup_epochs: float = _again(
        _F, "warmup_epochs", LONGEST_WARMUP, help="linear warm-up in epochs",
        default_text=f"a tenth of the epochs, at most {LONGEST_WARMUP:g}", cli_default=None,
        cli_default_given=True)  # fmt: skip
    label_smoothing: float = _again(_F, "label_smoothing", 0.1)
    augment: bool = _again(_F, "augment", False, **_NOT_AN_OPTION)
    mixed_precision: bool = _again(
        _F, "mixed_precision", True, help="float32 throughout (as for 'finetune')"
    )
    seed: int = _again(_F, "seed", 0, help="decides the weights, images, order and augmentation")
    head: str = _again(_F, "head", "keep", **_NOT_AN_OPTION)
    augment_policy: str = setting(
        "crop-flip", what="the augment_policy setting", label="Augmentation",
        tip="Random changes to each training image: crops of the image padded by 4 px, "
        "left-right flips, turns of up to 15 degrees, torchvision's policies", flag="--augment",
        group="subsets", help="random changes to each training batch: flips; random crops of the "
        "image padded by 4 px, and flips; those followed by a turn of up to 15 degrees either "
        "way, or by torchvision's TrivialAugmentWide or RandAugment", choices=_AUGMENT,
        unknown="unknown augmentation")  # fmt: skip
    clip_grad: float = setting(
        1.0, what="the gradient clipping norm (clip_grad)", label="Clip gradients at",
        tip="The largest gradient norm a step may take; 0 for no clipping", flag="--clip-grad",
        metavar="NORM", help="largest gradient norm, 0 for no clipping", low=0,
        high=MAX_CLIP_GRAD, allowed="a number from 0 (no clipping) to {high:g}", form_high=1000,
        step=0.5)  # fmt: skip
    keep_best: bool = setting(True, what="the keep_best setting")
    # "normal": the head keeps the model's own random start (truncated normal, std 0.02, as
    # timm's ViTs); "zero": a head of zeros, as for fine-tuning (and as the demo was trained)
    head_init: str = setting(
        "normal", what="the head_init setting", flag="--head-init",
        help="the classifier's start: the model's own small random weights (truncated normal, "
        "std 0.02, as timm's ViTs), or zeros, which pass no gradient to the blocks until the "
        "head has grown (how the demo model was trained)",
        choices=(Choice("normal", "Random"), Choice("zero", "Zeros")),
        unknown="unknown head initialisation")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Without ``head``: a model from scratch has no head of its own to keep (its start is
        ``head_init``)."""
        record = super().to_dict()
        del record["head"]
        return record

    @property
    def augmentation(self) -> str:
        return self.augment_policy

    @property
    def gradient_clip(self) -> float:
        return float(self.clip_grad)

    @property
    def keeps_best(self) -> bool:
        return self.keep_best

    @property
    def from_scratch(self) -> bool:
        return True

    @property
    def keeps_own_head(self) -> bool:
        return self.head_init == "normal"
