"""``vitexplorer methods``: the catalogue as a table that fits 80 columns, or as JSON, made
from ``catalogue()`` (a method registered later shows up with no change)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from vitexplorer.cli import main
from vitexplorer.cli.catalogue import authors, explains, terminal_table
from vitexplorer.core.explain import method as catalogue_module
from vitexplorer.core.explain.method import Method, catalogue, register


def _run(capsys, *args: str) -> str:
    status = main(["methods", *args])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    return captured.out


def _rows(out: str) -> dict[str, list[str]]:
    """Each method's lines of the table (its first line starts with its name)."""
    lines = out.splitlines()[2:]  # the headings and the rule
    rows: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line and not line.startswith(" "):
            current = line.split()[0]
            rows[current] = []
        assert current is not None
        rows[current].append(line)
    return rows


def _cells(out: str) -> dict[str, list[str]]:
    """Each method's paper, explains, cost and classifier cells, read back from the wrapped
    lines of the table (each column starts where its heading does)."""
    heading = out.splitlines()[0]
    starts = [heading.index(word) for word in ("paper", "explains", "cost", "classifier")]
    found = {}
    for name, block in _rows(out).items():
        cells = ["", "", "", ""]
        for line in block:
            for i, start in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else None
                cells[i] = f"{cells[i]} {line[start:end].strip()}".strip()
        found[name] = cells
    return found


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_the_table_lists_every_method_within_the_width(capsys, monkeypatch, columns) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = _run(capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["method", "paper", "explains", "cost", "classifier"]
    assert max(len(line) for line in lines) <= columns
    table = _cells(out)
    assert list(table) == [m.name for m in catalogue()]
    for method in catalogue():
        cells = table[method.name]
        assert cells[2] == method.cost_words()
        assert cells[3] == ("needed" if method.requires_classifier else "no")
        assert cells[1] == explains(method)
        assert cells[0] == (authors(method.paper, method.year, short=True) or "-")


def test_the_known_methods_read_as_their_papers(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    rows = _rows(_run(capsys))
    assert "Abnar and Zuidema 2020" in rows["rollout"][0]
    assert "Chefer et al. 2021" in rows["relevance"][0]
    assert "needed" in rows["relevance"][0] and rows["attention"][0].endswith("no")
    assert "none (reads the analysis)" in rows["attention"][0]
    assert "2 passes" in rows["relevance"][0]


def test_json_holds_every_method_with_its_cost_words(capsys) -> None:
    facts = json.loads(_run(capsys, "--json"))
    described = catalogue()
    assert [f["name"] for f in facts] == [m.name for m in described]
    for entry, method in zip(facts, described, strict=True):
        assert entry["cost"] == method.cost_words()
        assert entry["needs_classifier"] is method.requires_classifier
        assert entry["paper"] == (method.paper or None)
        assert entry["year"] == method.year
        assert entry["pixels"] is method.pixels
        flags = [option["flag"] for option in entry["options"]]
        assert all(flag.startswith("--") for flag in flags)
    relevance = next(f for f in facts if f["name"] == "relevance")
    assert [o["flag"] for o in relevance["options"]] == ["--target-class"]
    assert "ICCV 2021" in relevance["paper"]


@pytest.fixture
def registered_later() -> Iterator[Method]:
    """A method registered after the command was written, with a long paper and a per-step
    cost, taken out after the test."""
    method = register(
        Method(
            name="late-method",
            label="Late",
            summary="a test's method",
            tip="",
            help_title="",
            help="",
            paper="Somebody, Another Person and A Third, A Very Long Title About Explaining "
            "Vision Transformers Patch By Patch, NeurIPS 2031",
            year=2031,
            options=("path_steps",),
            needs_model=True,
            class_specific=True,
            pixels=True,
            requires_classifier=True,
            cost=2,
            cost_per="path_steps",
            order=998,
        )
    )
    yield method
    catalogue_module._REGISTRY.pop("late-method", None)


def test_a_method_registered_later_joins_the_table(capsys, monkeypatch, registered_later):
    monkeypatch.setenv("COLUMNS", "80")
    out = _run(capsys)
    assert max(len(line) for line in out.splitlines()) <= 80
    paper, what, cost, classifier = _cells(out)["late-method"]
    assert paper == "Somebody et al. 2031"  # who and when, not the title
    assert what == "a class score, per pixel"
    assert cost == "2 per path step (100 at 50)" and classifier == "needed"
    assert len(_rows(out)["late-method"]) > 1  # wrapped to fit
    facts = {f["name"]: f for f in json.loads(_run(capsys, "--json"))}
    assert facts["late-method"]["cost"] == "2 per path step (100 at 50)"
    assert facts["late-method"]["authors"] == "Somebody, Another Person and A Third 2031"


def test_authors_and_year_from_a_reference() -> None:
    assert authors("Abnar and Zuidema, Quantifying Attention Flow, ACL 2020", 2020) == (
        "Abnar and Zuidema 2020"
    )
    assert authors("Achtibat et al., AttnLRP: Attention-Aware LRP, ICML 2024") == (
        "Achtibat et al. 2024"
    )
    assert authors("Selvaraju, Grad-CAM, ICCV 2017") == "Selvaraju 2017"
    assert authors("Chefer, Gur and Wolf, Generic, ICCV 2021", short=True) == "Chefer et al. 2021"
    assert (
        authors("Abnar and Zuidema, Quantifying, ACL 2020", short=True) == "Abnar and Zuidema 2020"
    )
    assert authors("", None) == ""


def test_a_narrow_table_wraps_each_column_in_its_place() -> None:
    rows = [("name", "a b c d e f g h i j k l m n o p", "x " * 20, "1 pass", "no")]
    table = terminal_table(rows, 60)
    lines = table.splitlines()
    assert all(len(line) <= 60 for line in lines) and len(lines) > 3
    assert " ".join(" ".join(lines[2:]).split()).count("x") == 20


def test_methods_help_and_the_programs_help_name_it(capsys) -> None:
    assert main(["methods", "--help"]) == 0
    assert "--json" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "methods [--json]" in out and "  methods  " in out
    assert main(["methods", "--csv"]) == 2
    assert "unrecognized arguments: --csv" in capsys.readouterr().err
