"""How an image is fed to a model: one request object, without torch or Qt.

:class:`Feed` says whether a model sees its own centre crop (its preprocessing) or the whole
image at its aspect ratio on a rectangular patch grid. The CLI's ``--aspect crop|keep`` word
becomes a Feed in :meth:`Feed.from_aspect`, and :attr:`Feed.aspect` gives the word back (the
method card's ``input.aspect``).
"""

from __future__ import annotations

from dataclasses import dataclass

ASPECTS = ("crop", "keep")


@dataclass(frozen=True)
class Feed:
    """How an image is fed to a model: the model's centre crop (its own preprocessing), or the
    whole image at its aspect ratio on a rectangular patch grid (``whole``)."""

    whole: bool = False

    @property
    def aspect(self) -> str:
        """The method card's word for it: "keep" (whole image) or "crop"."""
        return "keep" if self.whole else "crop"

    @classmethod
    def from_aspect(cls, word: str) -> Feed:
        """The Feed of the CLI's ``--aspect`` word, "crop" or "keep"; ValueError otherwise."""
        if word not in ASPECTS:
            raise ValueError(f"aspect must be 'crop' or 'keep', not {word!r}")
        return WHOLE if word == "keep" else CROP


CROP = Feed(False)
WHOLE = Feed(True)
