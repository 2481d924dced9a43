"""A model worker's outcomes cross threads as typed messages (issue 23): a failed load is a
ModelFailed carrying its one line, a cancelled download a ModelCancelled, told apart by type."""

from __future__ import annotations

from pathlib import Path

from vitexplorer.core.models import loading
from vitexplorer.core.models.download import DownloadCancelled
from vitexplorer.gui.workers import ModelCancelled, ModelFailed, ModelRequest, ModelWorker


def outcomes_of(request: ModelRequest) -> list[object]:
    worker = ModelWorker()
    answers: list[object] = []
    worker.model_failed.connect(answers.append)
    worker.model_ready.connect(answers.append)
    worker._load(request)  # as the worker's thread runs it
    return answers


def test_a_failed_load_is_a_model_failed_with_its_line(tmp_path: Path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    request = ModelRequest(str(path), "default", "cpu")
    [outcome] = outcomes_of(request)
    assert isinstance(outcome, ModelFailed) and outcome.request == request
    assert "broken.safetensors" in outcome.message and "\n" not in outcome.message


def test_a_cancelled_download_is_a_model_cancelled(monkeypatch):
    def cancelled(*_args, **_kwargs):
        raise DownloadCancelled("any words at all")

    monkeypatch.setattr(loading, "load_model", cancelled)
    monkeypatch.setattr(loading, "default_download", lambda *_a: None)
    request = ModelRequest("vit_b_16", "default", "cpu", allow_download=True)
    assert outcomes_of(request) == [ModelCancelled(request)]
