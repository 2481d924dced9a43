"""``python -m vitexplorer``: the same as the ``vitexplorer`` command."""

from __future__ import annotations

from vitexplorer.cli import main

raise SystemExit(main())
