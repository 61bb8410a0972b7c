#!/usr/bin/env python3
"""Print the import graph of pie_retriever and check that data flows one way.

    python scripts/import_graph.py            # summary: rooms, arrows between rooms, violations, cycles
    python scripts/import_graph.py --modules  # every module -> the package modules it imports

Reads the source with ``ast`` (nothing is imported), counts every import statement, module-level or inside
a function (lazy imports are still dependencies). ``integrations/`` is installed as
``pie_retriever.integrations`` and is read from there. String lookups such as
``importlib.import_module("pie_retriever.llm.gguf")`` and registry entries ``"pie_retriever.x:Name"`` are
listed separately as *dynamic* edges: they are plug-in points resolved at run time by name.

Exit code 1 when a core module imports a higher room or when the module graph has a cycle.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"pie_retriever": ROOT / "pie_retriever", "pie_retriever.integrations": ROOT / "integrations"}

# Rooms from the bottom up; a room may import its own and lower rooms only.
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"errors", "_util", "types", "prompts", "pools", "fewshot", "prompt_builder", "datasets", "models",
              "artifact", "encoders", "index", "retriever", "persistence", "bm25", "__init__"}),
    ("llm", {"llm"}),
    ("labeling", {"labeling"}),
    ("training", {"training"}),
    ("evaluation", {"evaluation"}),
    ("downstream", {"downstream"}),
    ("bench", {"bench"}),
    ("integrations", {"integrations"}),
    ("app", {"cli", "pool_cli", "demo", "__main__"}),
]
#: Static arrows that the design allows on purpose (none today).
ALLOWED: set[tuple[str, str]] = set()
_DYNAMIC = re.compile(r"""["'](pie_retriever(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_]+)?["']""")


def discover() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
            if package == "pie_retriever" and parts and parts[0] == "integrations":
                continue
            modules[".".join([package, *parts])] = path
    return modules


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    static: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            subs = [f"{target}.{a.name}" for a in node.names]
            # `from pkg import submodule` imports the submodule; `from pkg import name` imports pkg itself
            names = [n for n in subs if n in known] + ([target] if any(n not in known for n in subs) else [])
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("pie_retriever"):
                static.add(name)
    dynamic = set()
    for match in _DYNAMIC.finditer(path.read_text(encoding="utf-8")):
        name = match.group(1)
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module and name not in static and name != "pie_retriever":
            dynamic.add(name)
    return static, dynamic


def room_of(module: str) -> str:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    for name, members in LAYERS:
        if head in members:
            return name
    return "core"


def rank(room: str) -> int:
    return [name for name, _ in LAYERS].index(room)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="print every module and what it imports")
    args = parser.parse_args()
    modules = discover()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    dynamic: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module], dynamic[module] = imports_of(module, path, known)
    # a package's __init__ importing its own submodules is not an arrow between rooms
    if args.modules:
        for module in sorted(graph):
            deps = ", ".join(sorted(graph[module])) or "-"
            extra = f"   (dynamic: {', '.join(sorted(dynamic[module]))})" if dynamic[module] else ""
            print(f"{module} -> {deps}{extra}")
        print()
    arrows: dict[tuple[str, str], int] = defaultdict(int)
    violations = []
    for module, deps in graph.items():
        for dep in deps:
            a, b = room_of(module), room_of(dep)
            if a != b:
                arrows[(a, b)] += 1
            if rank(b) > rank(a) and (module, dep) not in ALLOWED:
                violations.append(f"{module} -> {dep} ({a} imports higher room {b})")
    print(f"{len(modules)} modules in {len({room_of(m) for m in modules})} rooms; "
          f"{sum(len(d) for d in graph.values())} import edges (static, incl. lazy ones)")
    print("rooms, bottom up: " + " < ".join(name for name, _ in LAYERS))
    print("arrows between rooms (count of module edges):")
    for (a, b), n in sorted(arrows.items(), key=lambda kv: (rank(kv[0][0]), rank(kv[0][1]))):
        print(f"  {a:12s} -> {b:12s} {n}")
    allowed = [f"{a} -> {b}" for a, b in ALLOWED if b in graph.get(a, ())]
    if allowed:
        print("allowed upward arrows (by design): " + "; ".join(allowed))
    dyn = [f"{m} ~> {d}" for m in sorted(dynamic) for d in sorted(dynamic[m]) if rank(room_of(d)) > rank(room_of(m))]
    if dyn:
        print("dynamic upward lookups (plug-in registries, resolved by name at run time):")
        for line in dyn:
            print(f"  {line}")
    cyc = cycles(graph)
    print(f"upward imports from a lower room: {len(violations)}")
    for v in violations:
        print(f"  {v}")
    print(f"import cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    return 1 if violations or cyc else 0


if __name__ == "__main__":
    sys.exit(main())
