"""The command line's colour tables are pyqtgraph's, exactly, so that it draws its maps without
importing Qt (issue 14: +0.45 s and +55 MiB per command otherwise; every command is run without
Qt in test_cli_without_qt.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitexplorer.cli import common
from vitexplorer.core.render import colour_tables


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


def test_pngs_are_written_at_the_fast_level_with_the_same_pixels(tmp_path: Path) -> None:
    """zlib level 1 (the IDAT stream's header says so: 78 01, where Pillow's default writes
    78 9c): the same pixels, written several times faster."""
    import io

    from PIL import Image

    from vitexplorer.core.render.figure import render_figure, save_png

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
