"""Every import in src/seqpar against the layer table of docs/architecture.md: no arrow
upward, no cycle. The checkers are shown failing on planted violations first."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"


def layer_table() -> list[tuple[int, list[str]]]:
    """(layer number, module patterns) from the ```layers block of the architecture page."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"{DOC} has no ```layers block"
    table = []
    for line in block[1].strip().splitlines():
        number, _, rest = line.partition(" ")
        table.append((int(number), rest.partition(":")[2].split()))
    return table


def layer_of(module: str, table: list[tuple[int, list[str]]]) -> int:
    """The layer of `module`: an exact name wins over a `package.*` pattern."""
    for number, patterns in table:
        if module in patterns:
            return number
    for number, patterns in table:
        if any(p.endswith(".*") and module.startswith(p[:-1]) for p in patterns):
            return number
    raise AssertionError(f"{module} is in no layer of {DOC.name}; add it there")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(source: str, module: str, package: bool, known: set[str]) -> Iterator[str]:
    """The seqpar modules `source` imports at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(source)
    skipped = {  # type-only imports (`if TYPE_CHECKING:`; its `else:` runs)
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and is_type_checking(node)
        for statement in node.body
        for child in ast.walk(statement)
    }
    base = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "seqpar")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = ".".join(base[: len(base) - node.level + 1])
                target = f"{parent}.{node.module}" if node.module else parent
            else:
                target = node.module or ""
            if target.split(".")[0] != "seqpar":
                continue
            for alias in node.names:  # `from seqpar import specs` imports a module
                name = f"{target}.{alias.name}"
                yield name if name in known else target


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    known = set(sources)
    return {
        module: set(imports(text, module, package, known)) - {module}
        for module, (text, package) in sources.items()
    }


def upward_arrows(graph: Mapping[str, set[str]], table) -> list[str]:
    return sorted(
        f"{source} (layer {layer_of(source, table)}) imports {target} "
        f"(layer {layer_of(target, table)})"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target, table) > layer_of(source, table)
    )


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    return {
        module_name(path): (path.read_text(), path.name == "__init__.py")
        for path in sorted((SOURCE / "seqpar").rglob("*.py"))
    }


def test_the_checkers_find_planted_violations():
    table = layer_table()
    sources = package_sources()
    planted = dict(sources)
    planted["seqpar.types"] = (
        sources["seqpar.types"][0] + "\ndef f():\n    from seqpar.report.summary import x\n",
        False,
    )
    planted["seqpar.store"] = (sources["seqpar.store"][0] + "\nfrom seqpar import sandbox\n", False)
    planted["seqpar.sandbox"] = (sources["seqpar.sandbox"][0] + "\nimport seqpar.store\n", False)
    planted["seqpar.sampling"] = (
        sources["seqpar.sampling"][0]
        + "\nif TYPE_CHECKING:\n    pass\nelse:\n    from .report import study\n",
        False,
    )
    graph = import_graph(planted)
    assert any(
        a.startswith("seqpar.types (layer 1) imports seqpar.report.summary")
        for a in upward_arrows(graph, table)
    )
    assert "seqpar.sampling (layer 1) imports seqpar.report.study (layer 5)" in upward_arrows(
        graph, table
    )
    assert any({"seqpar.sandbox", "seqpar.store"} <= set(cycle) for cycle in cycles(graph))


def test_no_import_goes_up_a_layer():
    assert upward_arrows(import_graph(package_sources()), layer_table()) == []


def test_no_import_cycle():
    assert cycles(import_graph(package_sources())) == []


def test_every_module_is_in_a_layer():
    table = layer_table()
    for module in package_sources():
        layer_of(module, table)


def test_import_seqpar_and_help_stay_free_of_torch():
    code = (
        "import sys, seqpar, seqpar.cli\n"
        "try:\n    seqpar.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'llama_cpp') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
