"""Names that tell models apart (core.provenance.model_name) and what B − A means
(core.model_compare.relation): "after minus before" only for a model and its own base."""

from __future__ import annotations

from types import SimpleNamespace

from vitexplorer.core.explain.model_compare import (
    AFTER_MINUS_BEFORE,
    BEFORE_MINUS_AFTER,
    DIFFERENCE,
    difference_words,
    relation,
)
from vitexplorer.core.explain.provenance import model_name, training_words

DEMO = SimpleNamespace(
    display_name="Demo ViT (CIFAR-10)", weights="trained on CIFAR-10", class_names=("c",) * 10
)


def _record(per_class: int = 50, epochs: int = 1, done: int = 1, freeze: str = "last:2") -> dict:
    return {
        "finetune": {
            "base": "Demo ViT (CIFAR-10), trained on CIFAR-10",
            "dataset": "CIFAR-10",
            "settings": {"per_class": per_class, "epochs": epochs, "freeze": freeze},
            "metrics": {"epochs_completed": done},
        }
    }


def test_a_fine_tune_is_named_by_its_base_and_what_it_was_trained_on() -> None:
    tuned = SimpleNamespace(**{**DEMO.__dict__, "weights": "fine-tuned on CIFAR-10"})
    assert model_name(DEMO) == "Demo ViT (CIFAR-10)"
    # the demo's own checkpoint records its training from scratch; its name already says it
    demo_record = {"train": {"dataset": "cifar10", "settings": {"per_class": 5000}}}
    assert model_name(DEMO, demo_record) == "Demo ViT (CIFAR-10)"
    assert model_name(tuned, _record()) == (
        "Demo ViT (CIFAR-10), fine-tuned on CIFAR-10 (500 images, 1 epoch, last 2 blocks)"
    )
    assert model_name(tuned) == "Demo ViT (CIFAR-10), fine-tuned on CIFAR-10"
    assert model_name(tuned) != model_name(DEMO)
    stopped = training_words(_record(per_class=20, epochs=5, done=2, freeze="head"), 10)
    assert stopped == "fine-tuned on CIFAR-10 (200 images, 2 of 5 epochs, head only)"
    assert training_words(_record(freeze="last:1"), 10).endswith("last block)")
    assert training_words(_record(freeze="none"), 10).endswith("all blocks)")
    settings = {"per_class": 4, "epochs": 3}
    scratch = {"train": {"dataset": "colours", "settings": settings, "history": [{}] * 3}}
    assert training_words(scratch, 3) == "trained from scratch on colours (12 images, 3 epochs)"
    assert training_words({}, 3) == "" and training_words(None) == ""


def test_a_checkpoint_is_named_by_its_file_and_its_training() -> None:
    spec = SimpleNamespace(
        display_name="Small ViT (2x32, /8)", weights="file t.safetensors", class_names=("a", "b")
    )
    assert model_name(spec) == "t.safetensors"
    assert model_name(spec, _record(per_class=3)) == (
        "t.safetensors: Small ViT (2x32, /8), fine-tuned on CIFAR-10 (6 images, 1 epoch, last "
        "2 blocks)"
    )


def test_after_minus_before_only_for_a_model_and_its_own_base() -> None:
    other = SimpleNamespace(display_name="ViT-B/16", weights="ImageNet")
    tuned = SimpleNamespace(display_name="Demo ViT (CIFAR-10)", weights="file t.safetensors")
    assert relation(DEMO, None, tuned, _record()) == AFTER_MINUS_BEFORE
    assert relation(tuned, _record(), DEMO, None) == BEFORE_MINUS_AFTER
    assert relation(other, None, tuned, _record()) == ""  # not its base
    assert relation(DEMO, None, other, None) == ""
    assert difference_words("") == DIFFERENCE and "before" not in DIFFERENCE
    assert "after minus before" in difference_words(AFTER_MINUS_BEFORE)


def test_the_engines_own_record_names_the_fine_tune_and_its_base(tmp_path) -> None:
    """A real run of the fine-tune engine: what it records is what the names and the relation
    read (not a record written by hand that could drift from the engine's)."""
    import torch

    from tests.conftest import TINY, write_colour_dataset
    from vitexplorer.core.models.loading import load_model
    from vitexplorer.core.training.config import FinetuneConfig
    from vitexplorer.core.training.datasets import open_dataset
    from vitexplorer.core.training.engine import finetune
    from vitexplorer.core.training.events import Finished

    torch.manual_seed(0)
    base = load_model("small_vit", "none", "cpu", small_config=TINY)
    base_spec = base.spec
    data = write_colour_dataset(tmp_path / "colours", 6, size=32)
    config = FinetuneConfig(
        per_class=4, test_per_class=2, epochs=1, batch_size=8, freeze="last:1", probes=0
    )
    events = list(finetune(base, open_dataset(data), config))
    assert isinstance(events[-1], Finished)
    result = events[-1].result
    metadata = result.metadata()
    classes = len(result.model.spec.class_names)
    name = model_name(result.model.spec, metadata)
    assert name == (
        f"{base_spec.display_name}, fine-tuned on {result.dataset} ({4 * classes} images, "
        f"1 epoch, last block)"
    )
    assert model_name(base_spec) != name
    assert relation(base_spec, None, result.model.spec, metadata) == AFTER_MINUS_BEFORE
