"""The command line's colour tables are pyqtgraph's, exactly, and drawing with them never
imports Qt (issue 14: +0.45 s and +55 MiB per command otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitexplorer.cli import common
from vitexplorer.core import colour_tables

SAMPLE = Path(__file__).parents[2] / "vitexplorer" / "resources" / "sample.png"


@pytest.mark.parametrize("name", ["inferno", colour_tables.DIVERGING])
def test_the_tables_are_pyqtgraphs(name: str) -> None:
    pg = pytest.importorskip("pyqtgraph")
    expected = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)
    table = common.colour_table(name)
    assert table.dtype == np.uint8 and table.shape == (256, 3)
    np.testing.assert_array_equal(table, expected)
    assert common.DIVERGING == colour_tables.DIVERGING
    with pytest.raises(ValueError, match="unknown colour table 'viridis'"):
        colour_tables.colour_table("viridis")


def test_analyze_writes_its_pictures_without_importing_qt(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from vitexplorer.cli import main\n"
        f"status = main(['analyze', {str(SAMPLE)!r}, '--model', 'demo', "
        f"'--out', {str(tmp_path)!r}, '--method', 'rollout', '--device', 'cpu'])\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'shiboken6', 'pyqtgraph'))\n"
        "print(status, qt)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    assert list(tmp_path.glob("*.png"))


def test_pngs_are_written_at_the_fast_level_with_the_same_pixels(tmp_path: Path) -> None:
    """zlib level 1 (the IDAT stream's header says so: 78 01, where Pillow's default writes
    78 9c): the same pixels, written several times faster."""
    import io

    from PIL import Image

    from vitexplorer.core.figure import render_figure, save_png

    rng = np.random.default_rng(0)
    display = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    figure = render_figure(display, rng.random((4, 4)), common.colour_table(), "t").image
    handle = io.BytesIO()
    save_png(figure, handle)
    data = handle.getvalue()
    idat = data.index(b"IDAT")
    assert data[idat + 4 : idat + 6] == b"\x78\x01"
    with Image.open(io.BytesIO(data)) as back:
        np.testing.assert_array_equal(np.asarray(back), np.asarray(figure))
