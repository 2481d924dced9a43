"""The method bar and the worker's map jobs, generated from the method catalogue and checked the
same way for every method: the bar shows the options the method reads (and only those), its
choice carries what the widgets hold, and the worker computes the map of any method that needs
the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_spec
from vitexplorer.core.explain.analysis import Prediction, analyze_image
from vitexplorer.core.explain.maps import MapCache, explanation_map, map_job
from vitexplorer.core.explain.method import OPTION, MethodOptions, catalogue, get
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.controls import NOT_APPLIED, MethodBar, ViewBar
from vitexplorer.gui.workers import MapDone, MapFailed, ModelWorker

METHODS = [m.name for m in catalogue()]
OTHER = {
    "head_fusion": "min",
    "discard_ratio": 0.25,
    "start_layer": 1,
    "target_class": 3,
    "occlude": "token",
    "baseline": "blur",
    "gamma": 0.5,
    "conv_gamma": 0.25,
    "attention_rule": "attnlrp",
    "path_steps": 7,
    "samples": 3,
    "noise": 0.25,
    "noise_seed": 5,
}
PREDICTIONS = [Prediction(7, "class 7", 0.5), Prediction(3, "class 3", 0.2)]


@pytest.mark.parametrize("method", METHODS)
def test_the_bar_shows_the_options_of_each_method(qtbot, method: str):
    bar = MethodBar()
    qtbot.addWidget(bar)
    bar.show()
    bar.set_num_layers(2)
    bar.set_predictions(PREDICTIONS)
    bar.set_method(method)
    wanted = {o.name for o in get(method).bar_options}
    visible = {name for name, action in bar._actions.items() if action.isVisible()}
    assert visible == wanted
    for name in wanted:
        bar.set_option(name, OTHER[name])
    choice = bar.choice()
    assert choice.method == method
    for name in wanted:
        assert getattr(choice.options, name) == OTHER[name], name
    for name in set(OPTION) - wanted:  # the options of other methods keep their defaults
        assert getattr(choice.options, name) == getattr(MethodOptions(), name), name


@pytest.mark.parametrize("method", METHODS)
def test_the_layer_and_head_say_why_they_do_not_apply(qtbot, method: str):
    view_bar = ViewBar()
    qtbot.addWidget(view_bar)
    view_bar.set_applies(method)
    reads_layer = "layer" in get(method).options
    assert view_bar.applies() == reads_layer == (method not in NOT_APPLIED)
    if not reads_layer:
        assert view_bar.layer_spin.toolTip() == get(method).not_applied


def test_a_model_without_classifier_offers_no_class_method(qtbot):
    bar = MethodBar()
    qtbot.addWidget(bar)
    needing = [m.name for m in catalogue() if m.requires_classifier]
    bar.set_method(needing[0])
    bar.set_classifier_available(False)
    box = bar.method_box
    for name in needing:
        assert not box.model().item(box.findData(name)).isEnabled()
    assert not get(bar.choice().method).requires_classifier


@pytest.mark.parametrize("method", [m.name for m in catalogue() if m.needs_model])
def test_the_worker_computes_the_map_of_a_method_that_needs_the_model(
    qtbot, tiny_small_vit, photo: Path, method: str
):
    model = LoadedModel(tiny_small_vit, tiny_spec(), torch.device("cpu"))
    image = load_image(photo)
    analysis = analyze_image(model, image)
    worker = ModelWorker()
    worker._model = model  # as a load leaves it; the job runs here, not in a thread
    answers: list = []
    worker.map_ready.connect(answers.append)
    worker.map_failed.connect(answers.append)
    job = map_job(method, MethodOptions(), analysis)
    worker.request_map("photo", str(photo), job)
    worker._drain()
    assert len(answers) == 1 and isinstance(answers[0], MapDone), answers
    done = answers[0]
    whole = (17, 17) if get(method).per_token else (4, 4)  # else the CLS map
    assert done.job == job and done.matrix.shape == whole
    cache = MapCache()
    cache.store("photo", done.job, done.matrix)
    shown = cache.map("photo", analysis, method, MethodOptions())
    batch = preprocess(image, model.spec).unsqueeze(0)
    expected = explanation_map(method, MethodOptions(), model=model, batch=batch)
    assert shown.shape == (4, 4) and np.isfinite(shown).all()
    np.testing.assert_allclose(shown, expected, rtol=1e-4, atol=1e-6)

    # a job that cannot be done answers with its failure, typed, in one line
    worker.request_map("gone", str(photo.with_name("missing.png")), job)
    worker._drain()
    assert isinstance(answers[-1], MapFailed) and answers[-1].job == job
    assert "\n" not in answers[-1].message and answers[-1].message
