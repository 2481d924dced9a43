"""Evented state: a change is announced once, with the fields it changed, and only when a value
really changed; a failing subscriber does not silence the others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from vitexplorer.core.explorer.evented import Evented
from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.spec import ModelSpec


@dataclass
class Knobs(Evented):
    level: int = 0
    name: str = "a"
    values: object = None


def _heard(state: Evented) -> list[frozenset[str]]:
    heard: list[frozenset[str]] = []
    state.subscribe(heard.append)
    return heard


def test_a_field_set_is_announced_with_its_name() -> None:
    knobs = Knobs()
    heard = _heard(knobs)
    knobs.level = 3
    knobs.name = "b"
    assert heard == [frozenset({"level"}), frozenset({"name"})]
    assert (knobs.level, knobs.name) == (3, "b")


def test_setting_the_same_value_is_silent() -> None:
    knobs = Knobs(level=2)
    heard = _heard(knobs)
    knobs.level = 2
    knobs.update(level=2, name="a")
    assert heard == []


def test_a_value_of_another_type_is_a_change() -> None:
    knobs = Knobs(level=1)
    heard = _heard(knobs)
    knobs.level = True  # type: ignore[assignment]  # 1 == True, but it is not the same value
    assert heard == [frozenset({"level"})]


def test_update_announces_once_for_all_its_fields() -> None:
    knobs = Knobs()
    heard = _heard(knobs)
    changed = knobs.update(level=5, name="z")
    assert changed == frozenset({"level", "name"})
    assert heard == [frozenset({"level", "name"})]


def test_arrays_are_compared_by_identity() -> None:
    knobs = Knobs(values=np.zeros(3))
    heard = _heard(knobs)
    knobs.values = np.zeros(3)  # another array: a change, even with equal values
    assert heard == [frozenset({"values"})]


def test_unknown_fields_are_refused_before_anything_changes() -> None:
    knobs = Knobs()
    heard = _heard(knobs)
    with pytest.raises(AttributeError, match="no field lvl"):
        knobs.update(level=4, lvl=1)
    assert knobs.level == 0 and heard == []


def test_every_subscriber_hears_a_change_even_when_one_fails() -> None:
    knobs = Knobs()
    heard: list[frozenset[str]] = []

    def broken(changed: frozenset[str]) -> None:
        raise RuntimeError("a view failed")

    knobs.subscribe(broken)
    knobs.subscribe(heard.append)
    with pytest.raises(RuntimeError, match="a view failed"):
        knobs.level = 1
    assert heard == [frozenset({"level"})] and knobs.level == 1


def test_an_unsubscribed_callback_hears_nothing_more() -> None:
    knobs = Knobs()
    heard: list[frozenset[str]] = []
    stop = knobs.subscribe(heard.append)
    knobs.level = 1
    stop()
    stop()  # twice is harmless
    knobs.level = 2
    assert heard == [frozenset({"level"})]


def test_construction_is_not_a_change_and_instances_do_not_share_subscribers() -> None:
    a, b = Knobs(level=1), Knobs(level=1)
    heard_a = _heard(a)
    b.level = 2
    assert heard_a == [] and a == Knobs(level=1) and b != a


def _spec(layers: int, heads: int, prefix: int = 1) -> ModelSpec:
    return ModelSpec(
        name="t",
        display_name="t",
        weights="random",
        image_size=32,
        resize_size=32,
        patch_size=8,
        num_layers=layers,
        num_heads=heads,
        class_names=("a", "b", "c"),
        num_prefix_tokens=prefix,
    )


def test_a_selection_fitted_to_a_smaller_model_is_one_change() -> None:
    selection = Selection(layer=7, head=3, token=12)
    heard = _heard(selection)
    selection.fit(_spec(layers=2, heads=2))
    assert (selection.layer, selection.head, selection.token) == (1, None, 0)
    assert heard == [frozenset({"layer", "head", "token"})]
    selection.fit(_spec(layers=2, heads=2))
    assert len(heard) == 1  # nothing left to change
