"""The card of the head statistics and the model's structure, the same from ``vitexplorer stats``
and from the app's Model analytics export.

:func:`~vitexplorer.core.explain.provenance.method_card` writes the model, the preprocessing and
the software; these functions add what was computed (per-head mean attention distance, entropy
and prefix share; the position embeddings' similarity and the patch filters' principal
components), over which images and into which files. The card is written last in its set
(:func:`vitexplorer.core.io.files.write_set`), naming the files it describes with their sizes.
"""

from __future__ import annotations

import json
from typing import Any

STATISTICS = "head statistics"
STRUCTURE = "model structure"
DISTANCE = {"distance": "mean attention distance (ViT paper, Fig. 7), patch-to-patch weights"}


def table_rows(spec: Any) -> str:
    """What a row of the statistics table is, numbered as the plot numbers them."""
    return (
        f"one per layer (1..{spec.num_layers}) and head (1..{spec.num_heads}), both numbered "
        f"from 1 as in the plot"
    )


def statistics_facts(
    spec: Any,
    images: list[str] | None,
    skipped: int | None,
    aspect: str | None,
    outputs: dict[str, str],
) -> dict[str, Any]:
    """The card's entries about the head statistics: the ``images`` averaged over (None: not
    known one by one), how many could not be read (None: not known), how each input was made
    (``aspect`` "crop" or "keep"; None: not known) and the files written (``outputs``)."""
    facts: dict[str, Any] = {"images": images, "images_skipped": skipped}
    if aspect is not None:
        facts["input"] = {"aspect": aspect}  # the model's crop, or each whole image on its grid
    facts["outputs"] = outputs
    facts["table_rows"] = table_rows(spec)
    return facts


def structure_facts(shares: Any, outputs: dict[str, str]) -> dict[str, Any]:
    """The card's entry about the model's structure: the files, and the share of the patch
    filters' variance each principal component drawn explains (in order)."""
    values = [round(float(s), 6) for s in shares]
    return {
        "outputs": outputs,
        "position_similarity": "cosine similarity of each patch's position embedding with "
        "every other's (the ViT paper, Fig. 7, centre)",
        "filter_components": len(values),
        "variance_shares": values,
    }


def card_bytes(card: dict[str, Any], listing: list[dict[str, Any]] | None = None) -> bytes:
    """``card`` as the UTF-8 JSON written, ``listing`` (the files' names and sizes) as its
    ``files``."""
    if listing is not None:
        card["files"] = listing
    return (json.dumps(card, indent=2) + "\n").encode("utf-8")
