"""One model session (issue 23, step 3): a model in its worker, its analyses and maps, with
stale answers dropped by model and by feed; the explorer and a compared model are two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitexplorer.core.explain.maps import map_job
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.explorer.decoded import DecodedImages
from vitexplorer.core.models.feed import CROP, WHOLE
from vitexplorer.gui.session import ModelSession
from vitexplorer.gui.workers import ModelFailed, ModelRequest


@pytest.fixture
def session(qtbot) -> ModelSession:
    made = ModelSession("vitexplorer-test-model", DecodedImages())
    yield made
    threads = made.threads()
    made.stop()
    assert all(t.thread.isFinished() for t in threads)


def test_a_session_loads_analyses_and_keeps_maps_of_its_model_and_feed(
    qtbot, session: ModelSession, checkpoint: Path, photo: Path
):
    with qtbot.waitSignal(session.ready, timeout=30000) as ready:
        session.request_model(ModelRequest(str(checkpoint), "default", "cpu"))
    assert session.info is ready.args[0] and session.loading_request is None
    with qtbot.waitSignal(session.analysis_ready, timeout=30000) as analysed:
        assert session.analysis("a", str(photo)) is None  # asked of the worker
    done = analysed.args[0]
    assert done.feed == CROP and session.keep_analysis(done)
    assert session.analysis("a", str(photo)) is done.analysis

    job = map_job("relevance", MethodOptions(), done.analysis)
    with qtbot.waitSignal(session.map_arrived, timeout=30000) as arrived:
        assert session.ask_map("a", str(photo), job)
        assert not session.ask_map("a", str(photo), job)  # asked once
    assert arrived.args == ["a"]
    heat = session.maps.map("a", done.analysis, "relevance", MethodOptions())
    assert heat is not None and heat.shape == done.analysis.spec.grid
    assert np.isfinite(heat).all()

    session.set_feed(WHOLE)  # another feed: what was made the other way goes
    assert not session.analyses and not session.keep_analysis(done)
    assert session.maps.map("a", done.analysis, "relevance", MethodOptions()) is None


def test_a_failed_load_keeps_the_model_and_a_retired_worker_is_not_heard(
    qtbot, session: ModelSession, checkpoint: Path, tmp_path: Path
):
    with qtbot.waitSignal(session.ready, timeout=30000):
        session.request_model(ModelRequest(str(checkpoint), "default", "cpu"))
    loaded = session.info
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"no header")
    with qtbot.waitSignal(session.failed, timeout=30000) as failed:
        session.request_model(ModelRequest(str(broken), "default", "cpu"))
    assert (
        isinstance(failed.args[0], ModelFailed) and "broken.safetensors" in failed.args[0].message
    )
    assert session.info is loaded  # nothing the user had is lost

    heard: list[object] = []
    session.ready.connect(heard.append)
    old = session.worker
    session.retire()
    assert session.info is None and session.worker is None
    old.model_ready.emit(loaded)  # a late answer of the retired worker
    qtbot.wait(50)
    assert heard == []
