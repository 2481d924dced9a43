"""The demo model that ships in vitexplorer/resources: real and small, so the tests use it. On
thirty CIFAR-10 test images it never saw (tests/data, three per class, bit-exact copies of the
official test images) it is right well above chance, and its attention widens with depth, as
the ViT paper's Fig. 7 shows for trained ViTs (later layers' mean attention distance above the
earlier layers')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

SAMPLE = Path(__file__).parents[1] / "data" / "cifar10-test-sample"


@pytest.fixture(scope="module")
def shipped():
    """The shipped model and its analysis of each sample image, with the image's class."""
    model = load_model("demo", device="cpu")
    images = sorted(SAMPLE.glob("*/*.png"))
    assert len(images) == 30
    return model, [(path.parent.name, analyze_image(model, load_image(path))) for path in images]


def test_the_demo_model_is_right_on_cifar10_test_images_it_never_saw(shipped) -> None:
    model, analyses = shipped
    assert model.spec.class_names == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    assert model.spec.image_size == 32 and model.spec.grid == (8, 8)
    right = sum(analysis.predictions[0].name == truth for truth, analysis in analyses)
    assert right >= 15, f"{right} of 30 right"  # chance: 3 of 30


def test_the_demo_models_attention_widens_with_depth(shipped) -> None:
    _, analyses = shipped
    distance = np.mean([a.statistics.distance for _, a in analyses], axis=0)  # (layers, heads)
    per_layer = distance.mean(axis=1)
    assert per_layer[-2:].mean() > per_layer[:2].mean(), per_layer
