"""benchmarks/gpu_check.py, smoke-run on the CPU with --quick: every row is there, the CUDA rows
say they were skipped, the captured logits equal the plain forward's and a second CPU run gives
the same maps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
FAMILIES = ("torchvision", "timm", "hf", "demo")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    return _script()


@pytest.mark.slow
def test_quick_run_on_the_cpu(gpu_check: ModuleType, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    table = gpu_check.run(gpu_check.parse(["--quick", "--device", "cpu"]))
    printed = capsys.readouterr().out.splitlines()
    rows = {(row.section, row.what): row for row in table.rows}
    assert [row for row in table.rows if row.status == "error"] == []

    skipped = "no CUDA" if not torch.cuda.is_available() else "CUDA not used (--device cpu)"
    assert printed[0].startswith("device: CPU") and skipped in printed[0]
    assert printed[1].startswith(f"torch {torch.__version__}")
    assert printed[-1].startswith("total ") and printed[-1].endswith(
        f"{len(table.rows)} rows, 0 errors"
    )
    # one printed line per row, in order, after the header
    body = printed[printed.index(next(p for p in printed if p.startswith("section"))) + 1 : -1]
    assert [line.split()[0] for line in body] == [row.section for row in table.rows]

    for family in FAMILIES:
        for dtype in ("float32", "bfloat16"):
            row = rows["capture", f"{family} {dtype} batch 2"]
            assert row.status == "ok", row.text
            assert row.values["plain_ms"] > 0 and row.values["captured_ms"] > 0
            # every attention row is a probability distribution, whatever the precision
            assert row.values["row_sum_error"] < (1e-5 if dtype == "float32" else 1e-2)
        # capture changes nothing the model computes: its logits are the plain forward's
        assert rows["capture", f"{family} float32 batch 2"].values["logits_diff"] <= 1e-5

    analyze = rows["analyze", "demo on cpu"]
    assert analyze.values["photos"] == analyze.values["analysed"] == 2

    for section in ("fine-tune", "scratch"):
        row = rows[section, "1 epoch: engine against a plain loop"]
        assert row.status == "ok" and row.values["engine_s"] > 0 and row.values["plain_s"] > 0

    cuda_rows = [row for row in table.rows if row.section in ("memory", "oom")]
    assert len(cuda_rows) == 5
    assert all(row.status == "skipped" and row.text == skipped for row in cuda_rows)
    assert sum(f"skipped: {skipped}" in line for line in printed) == 5

    maps = rows["maps", "demo: cpu against cpu"]
    assert set(maps.values) == {"logits", "attention", "rollout", "relevance"}
    assert all(0 <= diff <= 1e-6 for diff in maps.values.values())


def test_a_failing_row_is_one_line_and_the_rest_still_run(gpu_check: ModuleType) -> None:
    lines: list[str] = []
    table = gpu_check.Table(budget=60, out=lines.append)

    def broken() -> tuple[str, dict[str, float]]:
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line\nthird")

    table.run("capture", "broken", broken)
    table.run("capture", "fine", lambda: ("3 ms", {"ms": 3.0}))
    assert [row.status for row in table.rows] == ["error", "ok"]
    assert table.rows[1].values == {"ms": 3.0}
    assert len(lines) == 2
    assert lines[0].endswith("error: RuntimeError: CUDA error: an illegal memory access")


def test_rows_past_the_budget_are_skipped(gpu_check: ModuleType) -> None:
    lines: list[str] = []
    table = gpu_check.Table(budget=0.0, out=lines.append)
    ran: list[bool] = []
    table.started -= 1.0  # a second has passed: the budget of 0 s is spent
    table.run("maps", "demo", lambda: (ran.append(True), ("done", {}))[1])
    assert ran == [] and table.rows[0].status == "skipped"
    assert "the budget of 0 s is spent" in lines[0]


def test_an_unknown_device_is_one_line(gpu_check: ModuleType, capsys) -> None:
    assert gpu_check.main(["--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_check: unknown device 'tpu'") and "\n" not in err


@pytest.mark.slow
def test_the_out_of_memory_row_reports_the_users_line(
    gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a GPU, the engine's first batch raises the error CUDA would; the row shows the
    line the command line prints for it, and how many images that batch really held."""
    from vitexplorer.core.training import engine as training

    def out_of_memory(*args: object, **kwargs: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(training, "to_model_input", out_of_memory)
    text, values = gpu_check.oom_row(torch.device("cpu"), "small_vit", n=60)
    line = text[1 : text.index("' (")]  # the engine's own words may change; their form may not
    assert line.startswith("vitexplorer: ") and "out of memory" in line and "\n" not in line
    assert values["batch_images"] == 10 * 9 and "(the batch held 90 images;" in text
