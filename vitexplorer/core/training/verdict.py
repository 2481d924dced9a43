"""Whether a prediction was right, wrong or undecided: one rule for every place that marks it.

A model whose top probabilities are tied has not picked a class. An untrained model that gives
every class 10 % "predicts" the first of them only because ``argmax`` breaks ties by index; calling
that "right" when the first class happens to be the true one says something untrue. So a top
probability within :data:`TIE_TOLERANCE` of the runner-up's (or, when the runner-up is not known,
of the uniform ``1 / classes``, where every class is then within that of the others) is a tie,
never right nor wrong.
"""

from __future__ import annotations

RIGHT, WRONG, TIE, UNKNOWN = "right", "wrong", "tie", "unknown"

TIE_TOLERANCE = 0.001
"""A tenth of a percentage point of probability: closer than that, the top two read the same in
the app's percentages and the argmax between them is no choice, so they are called a tie. (Half
a point called 61 of 1,000 test images of a briefly trained small ViT ties: decisions, if
narrow ones.)"""


def is_tie(
    top: float,
    second: float | None = None,
    num_classes: int | None = None,
    tolerance: float = TIE_TOLERANCE,
) -> bool:
    """Whether the top probability ``top`` does not stand out: within ``tolerance`` of the second
    highest, ``second``, or, with only the class count known, of ``1 / num_classes`` (the top of
    a distribution cannot be that close to its mean unless the runner-up is too)."""
    if second is not None and top - second <= tolerance:
        return True
    return num_classes is not None and num_classes > 0 and top - 1.0 / num_classes <= tolerance


def verdict(
    true: int,
    predicted: int,
    top: float,
    second: float | None = None,
    num_classes: int | None = None,
) -> str:
    """:data:`UNKNOWN` without a true class (``true < 0``), :data:`TIE` when the top probability
    is tied (:func:`is_tie`), else :data:`RIGHT` or :data:`WRONG`."""
    if true < 0:
        return UNKNOWN
    if is_tie(top, second, num_classes):
        return TIE
    return RIGHT if true == predicted else WRONG
