"""State that says when it changes, without Qt (napari's ``EventedModel``, in a few lines).

A subclass is a dataclass; setting a field to a new value tells every subscriber which fields
changed, once per :meth:`Evented.update` however many fields it sets. Views subscribe and redraw
what the change concerns; nothing calls a window's refresh by hand. A subscriber that raises does
not stop the others from hearing the change (the first error is raised after all have run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

Subscriber = Callable[[frozenset[str]], None]


@dataclass
class Evented:
    """A dataclass whose field changes are announced to :meth:`subscribe`'s callbacks (a
    subclass that defines ``__post_init__`` calls ``super().__post_init__()`` last)."""

    _subscribers: list[Subscriber] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _batch: set[str] | None = field(default=None, init=False, repr=False, compare=False)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(changed_field_names)`` after every change; returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def update(self, **values: Any) -> frozenset[str]:
        """Set several fields at once, announced as one change; returns the fields that changed."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(values) - names
        if unknown:
            raise AttributeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        outer = self._batch
        object.__setattr__(self, "_batch", set())
        try:
            for name, value in values.items():
                setattr(self, name, value)
            changed = frozenset(self._batch or ())
        finally:
            object.__setattr__(self, "_batch", outer)
        if outer is not None:
            outer.update(changed)
        elif changed:
            self._announce(changed)
        return changed

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ready", True)  # from now on, changes are announced

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or not self.__dict__.get("_ready"):
            object.__setattr__(self, name, value)  # during __init__ and for private fields
            return
        old = getattr(self, name, _MISSING)
        if old is not _MISSING and _same(old, value):
            return
        object.__setattr__(self, name, value)
        if self._batch is not None:
            self._batch.add(name)
        else:
            self._announce(frozenset((name,)))

    def _announce(self, changed: frozenset[str]) -> None:
        first: BaseException | None = None
        for callback in list(self._subscribers):
            try:
                callback(changed)
            except Exception as exc:  # the others still hear the change
                first = first or exc
        if first is not None:
            raise first


_MISSING = object()


def _same(old: Any, new: Any) -> bool:
    try:
        return bool(old == new) and type(old) is type(new)
    except Exception:  # arrays and other values without a plain truth value
        return old is new
