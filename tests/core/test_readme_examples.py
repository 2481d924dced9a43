"""The README's "Python API" examples run as written: each ```python block in turn (one namespace,
as a notebook runs its cells), and a block followed by a ```text block prints exactly that text.
They use the demo model that ships in vitexplorer/resources: offline, nothing downloaded."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"```(python|text)\n(.*?)```\n", re.DOTALL)


def section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def examples(text: str) -> list[tuple[str, str | None]]:
    """Each python block and the text block right after it (its output), or None."""
    found: list[tuple[str, str | None]] = []
    blocks = list(FENCE.finditer(text))
    for i, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        output = None
        if after is not None and after.group(1) == "text":
            between = text[block.end() : after.start()]
            output = after.group(2) if not between.strip() else None
        found.append((block.group(2), output))
    return found


def test_the_python_api_section_has_examples_with_outputs() -> None:
    found = examples(section("Python API"))
    assert len(found) >= 3
    assert all(output for _, output in found)  # each example says what it prints


def test_the_python_api_examples_print_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    namespace: dict[str, object] = {"__name__": "readme"}
    for number, (code, expected) in enumerate(examples(section("Python API")), start=1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README.md Python API example {number}", "exec"), namespace)
        if expected is not None:
            assert printed.getvalue() == expected, f"example {number}"
