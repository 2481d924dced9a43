"""Map jobs of several passes: the worker reports each pass, the window shows how far it is with a
Cancel button, a cancel stops the job at its next pass and leaves no map, and choosing the method
again computes it. The method bar's count and real options drive such a method.

The method here is a stand-in registered for these tests (an :class:`Attributor` that takes
``path_steps`` passes, each a gradient of the class score at a scaled image: integrated
gradients in a few lines), so that the window is tested before the real ones are merged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.conftest import tiny_spec
from tests.gui.conftest import running_window
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.explain import method as catalogue_module
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.attribution import (
    Attribution,
    Attributor,
    grid_of,
    input_gradients,
    patch_sums,
    plain_logits,
    resolve_targets,
)
from vitexplorer.core.explain.maps import explanation_map, map_job
from vitexplorer.core.explain.method import OPTION, OPTIONS, Method, MethodOptions, register
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import LoadedModel, load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.method_bar import OPTION_WIDGETS, MethodBar
from vitexplorer.gui.workers import MapCancelled, MapDone, MapProgress, ModelWorker

FAKE = "fake-passes"
PAUSE = {"seconds": 0.0}  # a pause after each pass, so that a person (a test) can cancel


class PathPasses(Attributor):
    """``mean over k of d score / d input at (k / steps) * image``, times the image, summed over
    the colours and over each patch: one backward per step, progress after each."""

    def attribute(self, model, batch, options, grid=None, progress=None) -> Attribution:
        chosen, any_size = grid_of(model, grid)
        images = batch.to(model.device)
        targets = resolve_targets(plain_logits(model, images, any_size), options.target_class)
        steps = options.path_steps
        total = torch.zeros_like(images)
        for step in range(steps):
            scaled = images * ((step + 1) / steps)
            _, _, gradient = input_gradients(model, scaled, targets.tolist(), any_size)
            total += gradient
            time.sleep(PAUSE["seconds"])
            if progress is not None:
                progress(step + 1, steps)
        pixels = (total / steps * images).sum(dim=1).float().cpu().numpy()
        return Attribution(patch_sums(pixels, chosen), targets.cpu().numpy(), pixels)


def fake_method(name: str = FAKE, options: tuple[str, ...] = ("target_class", "path_steps")):
    return Method(
        name=name,
        label="Path passes",
        summary="a test's method of several passes",
        tip="A test's method of several passes",
        help_title="Path passes (a test's)",
        help="the gradient along a path from black to the image, times the image.",
        paper="A test, 2026",
        year=2026,
        options=options,
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=1,
        cost_per="path_steps",
        per_token=False,
        pixels=True,
        compute=PathPasses(),
        order=90,
    )


@pytest.fixture
def passes() -> Iterator[Method]:
    """The stand-in method in the catalogue for one test, removed after."""
    method = register(fake_method())
    PAUSE["seconds"] = 0.0
    yield method
    del catalogue_module._REGISTRY[method.name]


@pytest.fixture
def passes_window(qtbot, tmp_path: Path, checkpoint: Path, passes) -> Iterator[MainWindow]:
    """The window, built with the stand-in method in its method bar."""
    yield from running_window(qtbot, tmp_path / "settings.ini", checkpoint)


def test_every_option_kind_has_a_widget_that_gives_back_what_it_was_set_to(qtbot):
    """Built from each option's description: its range, words and default; set and read
    back as the code holds it, for every option the method bar may show."""
    kinds = {option.kind for option in OPTIONS if not option.selected}
    assert kinds <= set(OPTION_WIDGETS), kinds - set(OPTION_WIDGETS)
    values = {"path_steps": 7, "samples": 3, "noise": 0.35, "noise_seed": 12345, "gamma": 0.5}
    values |= {"conv_gamma": 250.0}
    for name, value in values.items():
        option = OPTION[name]
        make, read, write = OPTION_WIDGETS[option.kind]
        widget = make(option)
        qtbot.addWidget(widget)
        assert read(widget) == pytest.approx(option.default), name
        write(widget, value)
        assert read(widget) == pytest.approx(value), name
        assert option.affix.strip() in widget.prefix() + widget.suffix(), name
        assert widget.minimum() == pytest.approx(option.low), name
        write(widget, option.low - 1)  # below the range: held at its end, never invalid
        assert read(widget) == pytest.approx(option.low), name
    steps = OPTION_WIDGETS["count"][0](OPTION["path_steps"])
    qtbot.addWidget(steps)
    assert steps.maximum() == OPTION["path_steps"].high
    noise = OPTION_WIDGETS["real"][0](OPTION["noise"])
    qtbot.addWidget(noise)
    assert noise.singleStep() == pytest.approx(0.01) and noise.decimals() >= 2
    seed = OPTION_WIDGETS["count"][0](OPTION["noise_seed"])
    qtbot.addWidget(seed)
    assert seed.maximum() == 2**31 - 1  # a C int's, below the option's own limit


def test_the_bar_shows_count_and_real_options_of_a_method_and_its_choice_carries_them(qtbot):
    method = register(fake_method("fake-options", ("target_class", "path_steps", "noise")))
    try:
        bar = MethodBar()
        qtbot.addWidget(bar)
        bar.show()
        bar.set_method(method.name)
        visible = {name for name, action in bar._actions.items() if action.isVisible()}
        assert visible == {"target_class", "path_steps", "noise"}
        with qtbot.waitSignal(bar.choice_changed) as changed:
            bar.option_widgets["path_steps"].setValue(12)
        assert changed.args[0].options.path_steps == 12
        bar.option_widgets["noise"].setValue(0.4)
        choice = bar.choice()
        assert (choice.method, choice.options.path_steps) == (method.name, 12)
        assert choice.options.noise == pytest.approx(0.4)
        assert choice.options.samples == MethodOptions().samples  # not its option: the default
        bar.set_method("rollout")
        assert not bar._actions["path_steps"].isVisible()
    finally:
        del catalogue_module._REGISTRY[method.name]


def test_the_worker_reports_every_pass_and_stops_at_the_next_after_a_cancel(
    qtbot, tiny_small_vit, photo: Path, passes
):
    model = LoadedModel(tiny_small_vit, tiny_spec(), torch.device("cpu"))
    image = load_image(photo)
    analysis = analyze_image(model, image)
    worker = ModelWorker()
    worker._model = model  # as a load leaves it; the jobs run here, not in a thread
    worker._wake.disconnect()  # requests wait for _drain, as they wait while the thread is busy
    answers: list = []
    for signal in (worker.map_ready, worker.map_failed, worker.map_progress, worker.map_cancelled):
        signal.connect(answers.append)
    job = map_job(FAKE, MethodOptions(path_steps=6), analysis)
    worker.request_map("photo", str(photo), job)
    worker._drain()
    reports = [(a.done, a.total) for a in answers if isinstance(a, MapProgress)]
    assert reports == [(step, 6) for step in range(1, 7)]
    assert isinstance(answers[-1], MapDone) and answers[-1].job == job
    batch = preprocess(image, model.spec).unsqueeze(0)
    expected = explanation_map(FAKE, job.options, model=model, batch=batch)
    np.testing.assert_allclose(answers[-1].matrix, expected, rtol=1e-5, atol=1e-7)

    answers.clear()  # now a person cancels after the third pass
    worker.map_progress.connect(lambda p: p.done == 3 and worker.cancel_maps())
    worker.request_map("photo", str(photo), job)
    worker._drain()
    assert [a.done for a in answers if isinstance(a, MapProgress)] == [1, 2, 3]
    assert isinstance(answers[-1], MapCancelled) and answers[-1].job == job
    assert not any(isinstance(a, MapDone) for a in answers)

    answers.clear()  # a job queued when the cancel came is dropped, not started
    worker.request_map("photo", str(photo), job)
    worker.cancel_maps()
    worker._drain()
    assert answers == []


def test_the_window_shows_the_passes_and_a_cancel_leaves_no_map_until_asked_again(
    qtbot, passes_window: MainWindow, photo: Path, checkpoint: Path
):
    window = passes_window
    drop_and_wait(qtbot, window, photo)
    bar = window.method_bar
    bar.option_widgets["path_steps"].setValue(30)
    PAUSE["seconds"] = 0.05  # 30 passes take 1.5 s at least: time to cancel
    session = window.model_session
    with qtbot.waitSignal(session.map_progress, timeout=30000):
        bar.set_method(FAKE)
    QApplication.processEvents()
    words = window.activity_label.text()
    assert words.startswith(f"{FAKE}: ") and words.endswith(" of 30 passes"), words
    assert window.cancel_map_button.isVisible()
    assert window.busy.maximum() == 30
    with qtbot.waitSignal(session.map_cancelled, timeout=10000):
        qtbot.mouseClick(window.cancel_map_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not session.maps_asked, timeout=10000)
    qtbot.wait(300)  # the worker's own answer to the cancel arrives and changes nothing
    assert window.image_view.heat_values.size == 0  # no map, and no stale one
    assert "cancelled" in window.image_view.title.text
    job = map_job(FAKE, bar.choice().at(window.state), window.analysis)
    assert (
        window.explanations.maps.map(
            window.session.current_key, window.analysis, FAKE, bar.choice().at(window.state)
        )
        is None
    )
    assert session.cancelled(window.session.current_key, job)
    assert not session.maps_asked, "a redraw does not ask for a cancelled map again"
    assert not window.cancel_map_button.isVisible()

    PAUSE["seconds"] = 0.0
    with qtbot.waitSignal(session.map_arrived, timeout=30000):  # chosen again: computed
        bar.method_box.activated.emit(bar.method_box.currentIndex())
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    expected = explanation_map(FAKE, job.options, model=model, batch=batch)
    np.testing.assert_allclose(window.image_view.heat_values, expected, rtol=1e-4, atol=1e-6)
    assert "cancelled" not in window.image_view.title.text


def test_the_method_options_have_a_row_of_their_own_that_fits_1024_px(
    qtbot, passes_window: MainWindow
):
    window = passes_window
    window.resize(1024, 700)
    bar = window.method_bar
    bar.set_method("attention")  # no options: no row for them
    QApplication.processEvents()
    assert not bar.options_bar.isVisible()
    bar.set_method(FAKE)
    QApplication.processEvents()
    assert bar.options_bar.isVisible() and bar.target_box.isVisible()
    assert bar.option_widgets["path_steps"].isVisible()
    row = bar.sizeHint().width() + window.view_bar.overlay_bar.sizeHint().width()
    assert row <= 1024, row  # the method row with the overlay's settings
    assert bar.options_bar.sizeHint().width() <= 1024
    assert bar.options_bar.y() > bar.y()  # under the method bar, not beside it
    window.tabs.setCurrentIndex(1)  # another tab: the explorer's bars step aside
    QApplication.processEvents()
    assert not bar.options_bar.isVisible()
    window.tabs.setCurrentIndex(0)
    QApplication.processEvents()
    assert bar.options_bar.isVisible()
