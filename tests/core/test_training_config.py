"""One configuration per job: the settings' fields carry their metadata, which the command line's
options and the checks are made from; the module needs no torch."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from dataclasses import dataclass, fields

import pytest

from vitexplorer.cli.finetune import finetune_parser
from vitexplorer.cli.settings import add_config_options, config_values, options_of
from vitexplorer.cli.train import train_parser
from vitexplorer.core.training.config import (
    FinetuneConfig,
    TrainConfig,
    described,
    setting,
    settings_of,
)

REQUIRED = {
    FinetuneConfig: (finetune_parser, ["--model", "small_vit", "--data", "d", "--out", "m.st"]),
    TrainConfig: (train_parser, ["--data", "d", "--out", "m.st"]),
}


def test_the_settings_and_the_options_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import vitexplorer.core.training.config, vitexplorer.core.training.events\n"
        "from vitexplorer.cli.finetune import finetune_parser\n"
        "from vitexplorer.cli.train import train_parser\n"
        "finetune_parser().format_help(); train_parser().format_help()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("config", [FinetuneConfig, TrainConfig])
def test_every_option_comes_from_a_field(config: type) -> None:
    make, required = REQUIRED[config]
    parser = make()
    by_dest = {a.dest: a for a in parser._actions}
    options = options_of(config)
    assert options  # the command line has options from the fields
    for name, meta in options.items():
        action = by_dest[name]
        assert action.option_strings == [meta.flag]
        assert action.help.startswith(meta.help)
        if meta.choices and meta.closed and meta.action is None:
            assert tuple(action.choices) == meta.values
    # a field that is not an option is not on the command line
    assert set(by_dest) & {n for n, s in settings_of(config).items() if s.flag is None} == set()
    # the options' defaults are the configuration's (from scratch, the warm-up follows --epochs)
    given = config_values(parser.parse_args(required), config)
    if config is TrainConfig:
        given["warmup_epochs"] = TrainConfig.warmup_epochs
    assert config(**given) == config()


# what another setting must be for a setting's own ends to be allowed: the learning rate times
# the weight decay stays below 1, the warm-up within the run
PARTNERS = {"lr": {"weight_decay": 0.0}, "weight_decay": {"lr": 1e-3},
            "epochs": {"warmup_epochs": 0.0}}  # fmt: skip


def _bounds(config: type):
    """Each described number with its low and high, as check() applies them."""
    kinds = {f.name: f.type for f in fields(config)}
    for name, meta in settings_of(config).items():
        if kinds[name] in ("int", "float") and meta.low is not None:
            high = getattr(config(), meta.high) if isinstance(meta.high, str) else meta.high
            yield name, kinds[name], meta, meta.low, high


@pytest.mark.parametrize("config", [FinetuneConfig, TrainConfig])
def test_the_checks_apply_the_fields_limits(config: type) -> None:
    checked = 0
    for name, kind, meta, low, high in _bounds(config):
        step = 1 if kind == "int" else 1e-9 * max(1.0, abs(high))
        inside = [low + (step if meta.low_open else 0), high - (step if meta.high_open else 0)]
        outside = [
            low - step if not meta.low_open else low,
            high if meta.high_open else high + step,
        ]
        for value in inside:
            value = int(value) if kind == "int" else float(value)
            config(**{name: value, **PARTNERS.get(name, {})}).check(12)
        for value in outside:
            value = int(value) if kind == "int" else float(value)
            with pytest.raises(ValueError) as err:
                config(**{name: value}).check(12)
            assert str(err.value).startswith(meta.what) and "\n" not in str(err.value)
        if kind == "float":
            with pytest.raises(ValueError, match="not nan"):
                config(**{name: math.nan}).check(12)
        checked += 1
    assert checked >= 9


def test_the_messages_name_the_setting_and_its_range() -> None:
    with pytest.raises(ValueError) as err:
        FinetuneConfig(warmup_epochs=6.0, epochs=5).check(12)
    assert str(err.value) == (
        "the warm-up (warmup_epochs) must be a number of epochs from 0 to 5, the run's length, "
        "not 6"
    )
    with pytest.raises(ValueError) as err:
        TrainConfig(clip_grad=-1.0).check(6)
    assert str(err.value) == (
        "the gradient clipping norm (clip_grad) must be a number from 0 (no clipping) to "
        "1e+06, not -1"
    )
    with pytest.raises(ValueError, match="^unknown augmentation 'x'; use none, flip, crop-flip"):
        TrainConfig(augment_policy="x").check(6)


def test_a_new_field_becomes_an_option_with_no_other_change() -> None:
    @dataclass(frozen=True)
    class WithDropout(FinetuneConfig):
        head_dropout: float = setting(
            0.25, what="the head's dropout", flag="--head-dropout", metavar="P",
            help="dropout before the head", low=0, high=1, high_open=True,
            allowed="a number at least 0 and below 1")  # fmt: skip

    parser = argparse.ArgumentParser()
    groups = {g: parser.add_argument_group(g) for g in ("subsets", "training", "time-lapse")}
    add_config_options(groups, WithDropout)
    assert "dropout before the head (default: 0.25)" in " ".join(parser.format_help().split())
    options = parser.parse_args(["--head-dropout", "0.5"])
    assert WithDropout(**config_values(options, WithDropout)).head_dropout == 0.5
    with pytest.raises(ValueError, match="^the head's dropout must be a number at least 0"):
        WithDropout(head_dropout=1.0).check(12)


def test_from_scratch_keeps_the_fine_tune_metadata_with_its_own_defaults() -> None:
    assert described(TrainConfig, "per_class").label == described(FinetuneConfig, "per_class").label
    assert TrainConfig().per_class == 5000 and FinetuneConfig().per_class == 100
    assert described(TrainConfig, "freeze").flag is None  # everything trains: no option
    assert "head" not in TrainConfig().to_dict()
