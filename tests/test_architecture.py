"""The import structure: shared services below the stages, stages in pipeline order, no circle.

Every import counts, at the top of a module or inside a function (where a circle hides), so a
stage that reaches for a later one fails here rather than in a reviewer's reading.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: Layers from the bottom up: a module may import its own layer and those below it only.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "services",
        (
            "embedtune",  # the package's face: re-exports of services
            "embedtune.errors",
            "embedtune.records",
            "embedtune.config",
            "embedtune.models",
            "embedtune.progress",
            "embedtune.artifacts",
            "embedtune.dataset",
            "embedtune.ownership",
            "embedtune.embeddings",
            "embedtune.retrieval",
            "embedtune.layout",
            "embedtune.runlock",
            "embedtune.recipe",
        ),
    ),
    ("ingest", ("embedtune.ingest",)),
    ("chunk", ("embedtune.chunk", "embedtune.cloze")),  # cloze: sentences drawn from chunks
    ("prepare", ("embedtune.prepare",)),
    ("generate", ("embedtune.generate",)),
    ("train", ("embedtune.train",)),
    ("evaluate", ("embedtune.evaluate",)),
    ("serve", ("embedtune.serve",)),
    ("pipeline", ("embedtune.pipeline",)),
    ("cli", ("embedtune.cli", "embedtune.__main__")),
]


def module_files(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``src``."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(src: Path) -> dict[str, set[str]]:
    """Each module's imports of other modules under ``src``, wherever in the file they stand."""
    modules = module_files(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")
    return rank


def backward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a later layer (a stage reaching forward in the pipeline)."""
    return sorted(
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a loop (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_stage_imports_a_later_stage():
    assert backward_imports(imports(SRC)) == []


def test_no_modules_import_each_other_in_a_circle():
    assert circles(imports(SRC)) == []


def test_the_checks_catch_a_forward_import_and_a_circle_inside_functions(tmp_path):
    pkg = tmp_path / "embedtune"
    for name, body in {
        "__init__.py": "",
        "config.py": "",
        "generate/__init__.py": "",
        "generate/runner.py": "def judge():\n    from embedtune.train.recipe import x\n",
        "train/__init__.py": "",
        "train/recipe.py": "from ..config import y\n",
        "evaluate/__init__.py": "",
        "evaluate/a.py": "def f():\n    from . import b\n",
        "evaluate/b.py": "from embedtune.evaluate.a import f\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    graph = imports(tmp_path)
    assert graph["embedtune.train.recipe"] == {"embedtune.config"}
    assert backward_imports(graph) == [
        "embedtune.generate.runner (generate) imports embedtune.train.recipe (train)"
    ]
    assert circles(graph) == [["embedtune.evaluate.a", "embedtune.evaluate.b"]]


@pytest.mark.parametrize("module", sorted(module_files(SRC)))
def test_every_module_has_a_layer(module):
    layer_of(module)
