"""Data flows one way: no module of the package imports from a later layer, and no files import
each other in a loop.

The layers follow the run (README, "How a run flows"): the shared foundation, then filtering,
the LLM client, curation, the recipe that composes their configs, and what reads the results
(builder, hub, evaluation, report), with the command line last. Imports inside functions count
like any other: a lazy import that goes back up is still a back-arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "xinstruction_dataset"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Earlier entries may be imported by later ones, never the other way round. Top-level names of
# the package (a module or a subpackage); the package's own __init__ is "<pkg>".
LAYERS: list[set[str]] = [
    {"<pkg>", "languages", "errors", "redact", "devices", "retry"},
    {"storage", "documents", "features", "citations", "paper_shapes"},
    {"records", "layout", "options", "runlock"},
    {"registry"},
    {"execution"},
    {"filtering"},
    {"llm"},
    {"curation"},
    {"recipe"},
    {"fingerprint", "builder"},
    {"hub"},
    {"xalpacaeval"},
    {"evaluation", "report"},
    {"commands"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Every package module this file imports, at top level or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{alias.name}" for alias in node.names]
            else:
                target = node.module or ""
                names = [f"{target}.{alias.name}" for alias in node.names]
            if target.split(".")[0] == PACKAGE:
                found.add(target)
                # `from pkg import submodule` imports the submodule itself
                found.update(n for n in names if _is_module(n))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
    # a submodule's own parent packages are imported before it runs: that is no edge of the graph
    return {target for target in found if target != name and not name.startswith(target + ".")}


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(ROOT.rglob("*.py"))}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<pkg>"


def _layer_of(top: str) -> int:
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{PACKAGE}.{top} is in no layer of {__file__}: add it where it belongs in the flow")


def test_every_top_level_module_has_a_layer():
    for module in _graph():
        _layer_of(_top(module))


def test_no_import_from_a_later_layer():
    back_arrows = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer_of(_top(target)) > _layer_of(_top(module))
    )
    assert not back_arrows, "imports that run back up the flow:\n" + "\n".join(back_arrows)


def test_no_import_cycle_between_files():
    cycles = _cycles(_graph())
    assert not cycles, "files that import each other in a loop: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_the_checker_sees_a_back_arrow():
    """The layer check can fail: an early file importing a command, even lazily, is a back-arrow."""
    path = ROOT / "curation" / "engine.py"
    source = path.read_text(encoding="utf-8") + "\n\ndef _late():\n    from ..commands import build\n"
    targets = _imports(path, source)
    assert "xinstruction_dataset.commands.build" in targets
    assert any(_layer_of(_top(t)) > _layer_of(_top(_module_name(path))) for t in targets)
