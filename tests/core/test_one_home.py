"""One place per fact (issue 23): every name has one home, the module that defines it.

No module under ``vitexplorer/core`` imports a name from another vitexplorer module only to
re-export it (imported, then never used), and no module of the package imports a vitexplorer name
from a module that merely imports it itself. The two public faces, ``vitexplorer`` and
``vitexplorer.api``, gather the API's names on purpose and may be imported from.
Read with :mod:`ast`, without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "vitexplorer"
FACES = {"vitexplorer", "vitexplorer.api"}  # the public API: importing from them is the point


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def vitexplorer_imports(tree: ast.Module) -> list[tuple[ast.ImportFrom, str, str]]:
    """(statement, module, name) for each name imported from a vitexplorer module, any scope."""
    return [
        (node, node.module, alias.asname or alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if node.module.split(".")[0] == "vitexplorer"
        for alias in node.names
    ]


def used_names(tree: ast.Module) -> set[str]:
    """Names the module reads, quoted annotations included; ``__all__`` is no use."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            used.add(node.id)
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            annotations.append(node.returns)
        for annotation in annotations:
            for part in ast.walk(annotation):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    used |= {
                        n.id for n in ast.walk(ast.parse(part.value)) if isinstance(n, ast.Name)
                    }
    return used


def reexports(source: str, modules: set[str]) -> list[str]:
    """The names ``source`` imports from a vitexplorer module (not a submodule) and never uses."""
    tree = ast.parse(source)
    used = used_names(tree)
    return [
        f"{node.lineno}: {module}.{name}"
        for node, module, name in vitexplorer_imports(tree)
        if f"{module}.{name}" not in modules and name not in used
    ]


def defined_names(tree: ast.Module) -> set[str]:
    """The names a module binds at its top (in its ``if`` and ``try`` blocks too), other than by
    importing them from vitexplorer."""
    defined: set[str] = set()
    statements: list[ast.stmt] = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "vitexplorer"
            ):
                defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody"):
                statements += getattr(node, block, [])
            statements += [s for h in getattr(node, "handlers", []) for s in h.body]
        else:
            defined |= {
                n.id
                for n in ast.walk(node)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
    return defined


def module_aliases(tree: ast.Module, sources: dict[str, str]) -> dict[str, str]:
    """Names bound to a vitexplorer module (``from vitexplorer.x import y as z``), and to
    nothing else anywhere in the module (a local of that name is not the module)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in sources:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in sources}
    rebound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    rebound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    return {name: module for name, module in aliases.items() if name not in rebound}


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def second_hand(sources: dict[str, str]) -> list[str]:
    """Imports of a vitexplorer name (``from m import name`` or ``m.name`` through a module
    imported by name) from a module that does not define it."""
    defined = {name: defined_names(ast.parse(text)) for name, text in sources.items()}

    def foreign(module: str, name: str) -> bool:
        if module in FACES or module not in defined:
            return False
        # a submodule, a name the module defines, or one of its own dunders (__file__)
        own = name.startswith("__") or f"{module}.{name}" in sources or name in defined[module]
        return not own

    found = []
    for importer, text in sources.items():
        tree = ast.parse(text)
        for node, module, _ in vitexplorer_imports(tree):
            found += [
                f"{importer}:{node.lineno} takes {alias.name} from {module}"
                for alias in node.names
                if foreign(module, alias.name)
            ]
        aliases = module_aliases(tree, sources)
        found += [
            f"{importer}:{node.lineno} takes {node.attr} from {aliases[node.value.id]}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            if node.value.id in aliases and foreign(aliases[node.value.id], node.attr)
        ]
    return found


def test_no_core_module_imports_a_name_only_to_pass_it_on() -> None:
    sources = package_sources()
    found = [
        f"{name}:{line}"
        for name, text in sources.items()
        if name.startswith("vitexplorer.core")
        for line in reexports(text, set(sources))
    ]
    assert found == []


def test_every_vitexplorer_name_is_imported_from_its_home() -> None:
    assert second_hand(package_sources()) == []


def test_the_checks_see_a_planted_re_export() -> None:
    """Each check finds what it is there to find (else the two above could pass by accident)."""
    sources = {
        "vitexplorer.home": "LIMIT = 3\n\ndef limit() -> int:\n    return LIMIT\n",
        "vitexplorer.hub": (
            "from vitexplorer.home import LIMIT, limit\n\n"
            "def twice() -> int:\n    return 2 * limit()\n__all__ = ['LIMIT']\n"
        ),
        "vitexplorer.user": "from vitexplorer.hub import limit\n\nprint(limit())\n",
        "vitexplorer.other": "from vitexplorer import hub as h\n\nprint(h.LIMIT, h.twice())\n",
        "vitexplorer.local": "from vitexplorer import hub\n\ndef f(hub):\n    return hub.LIMIT\n",
        "vitexplorer.typed": "from vitexplorer.home import LIMIT\n\ndef f(x: 'LIMIT'): ...\n",
    }
    assert reexports(sources["vitexplorer.hub"], set(sources)) == ["1: vitexplorer.home.LIMIT"]
    assert reexports(sources["vitexplorer.typed"], set(sources)) == []  # a quoted annotation
    assert second_hand(sources) == [
        "vitexplorer.user:1 takes limit from vitexplorer.hub",
        "vitexplorer.other:3 takes LIMIT from vitexplorer.hub",
    ]
