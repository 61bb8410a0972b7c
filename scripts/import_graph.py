#!/usr/bin/env python3
"""Print the import graph of pie_retriever and check that data flows one way, from the bottom room up.

    python scripts/import_graph.py               # summary: rooms, arrows between rooms, plug-ins, violations, cycles
    python scripts/import_graph.py --modules     # every module -> the package modules it imports
    python scripts/import_graph.py --root DIR    # check another checkout (default: the repo this script lives in)

Reads the source with ``ast`` (nothing is imported) from ``<root>/pie_retriever``; on the old layout a top-level
``<root>/integrations/`` folder is read as ``pie_retriever.integrations`` (its pyproject package-dir).

Three kinds of edge are collected:

* static: every import statement, module-level or inside a function (lazy imports are still dependencies);
* import_module: ``importlib.import_module("pie_retriever.x")``, ``import_module("...")`` and
  ``__import__("...")`` with a literal name. They load a module as surely as an import statement, so they
  join the static edges in the room check and in the cycle check;
  (an upward edge declared in ``ALLOWED`` is left out of the cycle check: the loop it closes is by design);
* plug-in lookups: registry entries ``"pie_retriever.mod:Name"`` and the lazy-export table of a package
  ``__init__`` (``_EXPORTS``). They are resolved by name at run time, are listed on their own and are not part
  of the cycle check; one that points to a higher room must be declared in ``ALLOWED_PLUGINS``.

Other strings that merely look like module names (docstrings, messages) are not edges.

Exit code 1 on an upward static or import_module edge not in ``ALLOWED``, an undeclared upward plug-in
lookup, an import cycle, or a module that is in no room.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "pie_retriever"
REPO = Path(__file__).resolve().parents[1]

# Rooms from the bottom up; a module may import its own room and lower rooms only. A module belongs to the room
# of its longest listed prefix (``evaluation.bench`` beats ``evaluation``); "" is the package ``__init__`` alone.
# Old flat names (before the stage folders) are kept so that an old checkout is classified too.
ROOMS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "types", "_util", "_cache", "_rwlock", "_threads", "_compat")),
    ("pool", ("pool", "pools", "datasets")),
    ("encoders", ("encoders", "models", "prompts", "artifact", "export", "export_card", "onnx_export", "server_client",
                  "split_zip", "llm")),
    ("index", ("index",)),
    ("retrieval", ("retrieval", "retriever", "content", "filters", "bm25", "persistence", "manifest", "distributed",
                   "pool_cli")),
    ("prompting", ("prompting", "fewshot", "prompt_builder")),
    ("labeling", ("labeling",)),
    ("training", ("training",)),
    ("evaluation", ("evaluation",)),
    ("bench", ("evaluation.bench", "bench")),
    ("downstream", ("downstream",)),
    ("integrations", ("integrations",)),
    ("service", ("service", "client")),
    ("app", ("", "cli", "demo", "__main__")),
]
PREFIXES: dict[str, str] = {f"{PACKAGE}.{p}" if p else PACKAGE: room for room, prefixes in ROOMS for p in prefixes}
RANK: dict[str, int] = {room: i for i, (room, _) in enumerate(ROOMS)}

#: Upward static / import_module edges allowed on purpose: ``PIERetriever.as_langchain_retriever()``, a
#: documented convenience that loads the LangChain adapter only when called (new name, then the old one).
ALLOWED: set[tuple[str, str]] = {
    ("pie_retriever.retrieval.retriever", "pie_retriever.integrations.langchain"),
    ("pie_retriever.retriever", "pie_retriever.integrations.langchain"),
}
#: Upward plug-in lookups declared on purpose: the ``vllm`` entry of ``ENCODER_TYPES`` (an encoder served by
#: vLLM is rebuilt from an index manifest by name; the vllm room is never imported otherwise).
ALLOWED_PLUGINS: set[tuple[str, str]] = {
    ("pie_retriever.encoders.base", "pie_retriever.integrations.vllm"),
}

_PLUGIN = re.compile(r"(pie_retriever(?:\.[A-Za-z_][A-Za-z0-9_]*)*):[A-Za-z_][A-Za-z0-9_]*")
_IMPORT_CALLS = {"import_module", "__import__"}


@dataclass
class Graph:
    modules: dict[str, Path]
    static: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dynamic: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # import_module, not also static
    plugins: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # target -> kind
    unresolved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def edges(self, module: str) -> set[str]:
        return self.static[module] | self.dynamic[module]


def sources(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Package name -> folder: the package, plus the old top-level ``integrations/`` when it is not moved yet."""
    found = {PACKAGE: root / PACKAGE}
    notes = []
    old, new = root / "integrations", root / PACKAGE / "integrations"
    if old.is_dir() and not new.is_dir():
        found[f"{PACKAGE}.integrations"] = old
        notes.append(f"old layout: {old} is read as {PACKAGE}.integrations")
    elif old.is_dir():
        notes.append(f"both {old} and {new} exist: the top-level folder is ignored")
    return found, notes


def discover(root: Path) -> tuple[dict[str, Path], list[str]]:
    found, notes = sources(root)
    if not found[PACKAGE].is_dir():
        raise SystemExit(f"no package folder {found[PACKAGE]}")
    modules: dict[str, Path] = {}
    for package, folder in found.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
            if package == PACKAGE and parts and parts[0] == "integrations" and len(found) > 1:
                continue
            modules[".".join([package, *parts])] = path
    return modules, notes


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _static_targets(module: str, is_package: bool, node: ast.AST, known: set[str]) -> tuple[list[str], list[str]]:
    """(package modules an import statement loads, names it asks for that are no module of the tree)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if _ours(a.name)]
        return [n for n in names if n in known], [n for n in names if n not in known]
    if not isinstance(node, ast.ImportFrom):
        return [], []
    target = _resolve(module, is_package, node)
    if not _ours(target):
        return [], []
    if target not in known:
        return [], [target]
    subs = [f"{target}.{a.name}" for a in node.names]
    # `from pkg import submodule` imports the submodule; `from pkg import name` imports pkg itself
    names = [n for n in subs if n in known] + ([target] if any(n not in known for n in subs) else [])
    return names, []


def _call_target(module: str, is_package: bool, call: ast.Call) -> str | None:
    """The literal module name of an ``import_module(...)`` / ``__import__(...)`` call, or None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in _IMPORT_CALLS or not call.args:
        return None
    first = call.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    text = first.value
    if name == "import_module" and text.startswith("."):
        package = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "package"), None)
        own = module if is_package else module.rpartition(".")[0]
        anchor = {"__name__": module, "__package__": own}.get(getattr(package, "id", ""))
        if isinstance(package, ast.Constant) and isinstance(package.value, str):
            anchor = package.value
        if anchor is None:
            return None
        level = len(text) - len(text.lstrip("."))
        base = anchor.rsplit(".", level - 1)[0] if level > 1 else anchor
        text = f"{base}.{text[level:]}" if text[level:] else base
    return text


def _export_tables(tree: ast.Module) -> list[ast.Dict]:
    """Module-level dict literals assigned to a name containing EXPORTS (a package's lazy-export table)."""
    out = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if isinstance(getattr(node, "value", None), ast.Dict) and any("EXPORTS" in n.upper() for n in names):
            out.append(node.value)
    return out


def _plugin_lookups(tree: ast.Module, is_package: bool) -> dict[str, str]:
    """Plug-in target module -> kind: ``"pie_retriever.mod:Name"`` strings, and lazy-export table values."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _PLUGIN.fullmatch(node.value)
            if match:
                found.setdefault(match.group(1), "registry")
    for table in _export_tables(tree) if is_package else []:
        for value in table.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and _ours(value.value):
                found.setdefault(value.value, "lazy export")
    return found


def scan_module(graph: Graph, module: str, path: Path, known: set[str]) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    where = f"{module} ({path.name}:%d)"
    calls: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            text = _call_target(module, is_package, node)
            if text is None or not _ours(text):
                continue
            if text in known:
                calls.add(text)
            else:
                graph.unresolved.append(f"{where % node.lineno} import_module {text!r}")
            continue
        names, missing = _static_targets(module, is_package, node, known)
        graph.unresolved += [f"{where % node.lineno} import {m}" for m in missing]
        graph.static[module] |= {n for n in names if n != module}
    graph.dynamic[module] = {c for c in calls if c != module and c not in graph.static[module]}
    for target, kind in _plugin_lookups(tree, is_package).items():
        if target not in known:
            graph.unresolved.append(f"{module} plug-in ({kind}) {target!r}")
        elif target != module:
            graph.plugins[module][target] = kind


def scan(root: Path) -> Graph:
    modules, notes = discover(root)
    graph = Graph(modules, notes=notes)
    known = set(modules)
    for module, path in modules.items():
        scan_module(graph, module, path, known)
    return graph


def room_of(module: str) -> str | None:
    """Room of the longest listed prefix of ``module`` (the bare package name matches the package only)."""
    name = module
    while name:
        if name in PREFIXES and (name != PACKAGE or module == PACKAGE):
            return PREFIXES[name]
        name = name.rpartition(".")[0]
    return None


def upward(a: str, b: str) -> bool:
    ra, rb = room_of(a), room_of(b)
    return ra is not None and rb is not None and RANK[rb] > RANK[ra]


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


def shortest_path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """Breadth-first path start -> ... -> goal through ``within`` (empty when there is none)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = [v]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for w in sorted(graph.get(v, ())):
            if w in within and w not in parent:
                parent[w] = v
                queue.append(w)
    return []


def print_modules(g: Graph) -> None:
    for module in sorted(g.modules):
        deps = ", ".join(sorted(g.static[module])) or "-"
        extra = f"   (import_module: {', '.join(sorted(g.dynamic[module]))})" if g.dynamic[module] else ""
        plug = f"   (plug-in: {', '.join(sorted(g.plugins.get(module, ())))})" if g.plugins.get(module) else ""
        print(f"{module} [{room_of(module) or '?'}] -> {deps}{extra}{plug}")
    print()


def print_rooms(g: Graph) -> None:
    n_static = sum(len(d) for d in g.static.values())
    n_dynamic = sum(len(d) for d in g.dynamic.values())
    rooms = {room_of(m) for m in g.modules} - {None}
    print(f"{len(g.modules)} modules in {len(rooms)} rooms; {n_static} static edges (incl. lazy ones), "
          f"{n_dynamic} import_module/__import__ edges, {sum(len(p) for p in g.plugins.values())} plug-in lookups")
    for note in g.notes:
        print(f"note: {note}")
    print("rooms, bottom up: " + " < ".join(name for name, _ in ROOMS))
    arrows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for module in g.modules:
        for kind, deps in enumerate((g.static[module], g.dynamic[module])):
            for dep in deps:
                a, b = room_of(module), room_of(dep)
                if a and b and a != b:
                    arrows[(a, b)][kind] += 1
    print("arrows between rooms (count of module edges):")
    for (a, b), (s, d) in sorted(arrows.items(), key=lambda kv: (RANK[kv[0][0]], RANK[kv[0][1]])):
        print(f"  {a:12s} -> {b:12s} {s + d}" + (f" ({d} import_module)" if d else ""))


def check_rooms(g: Graph) -> list[str]:
    violations = [f"unplaced module {m} ({g.modules[m]}): in no room" for m in sorted(g.modules) if room_of(m) is None]
    allowed = []
    for module in sorted(g.modules):
        for dep in sorted(g.edges(module)):
            if not upward(module, dep):
                continue
            arrow = "~>" if dep in g.dynamic[module] else "->"
            line = f"{module} {arrow} {dep} ({room_of(module)} imports higher room {room_of(dep)})"
            (allowed if (module, dep) in ALLOWED else violations).append(line)
    for line in allowed:
        print(f"allowed upward edge (by design): {line}")
    return violations


def check_plugins(g: Graph) -> list[str]:
    total = sum(len(p) for p in g.plugins.values())
    print(f"plug-in lookups (resolved by name at run time; not in the cycle check): {total}")
    violations = []
    for module in sorted(m for m in g.plugins if g.plugins[m]):
        marks = []
        for target in sorted(g.plugins[module]):
            kind = g.plugins[module][target]
            if not upward(module, target):
                marks.append(target)
            elif (module, target) in ALLOWED_PLUGINS:
                marks.append(f"{target} [upward, declared]")
            else:
                marks.append(f"{target} [UPWARD, undeclared]")
                violations.append(f"{module} ~> {target} (undeclared upward plug-in lookup, {kind}: "
                                  f"{room_of(module)} -> {room_of(target)}; declare it in ALLOWED_PLUGINS)")
        kinds = "/".join(sorted(set(g.plugins[module].values())))
        print(f"  {module} ({kinds}) ~> " + ", ".join(marks))
    return violations


def cycle_graph(g: Graph) -> dict[str, set[str]]:
    """Static + import_module edges, less the ``ALLOWED`` upward edges (a declared back edge is not a cycle)."""
    return {m: {d for d in g.edges(m) if (m, d) not in ALLOWED} for m in g.modules}


def _loop_text(g: Graph, loop: list[str]) -> str:
    return "".join(f"{a} {'~>' if b in g.dynamic[a] else '->'} " for a, b in zip(loop, loop[1:])) + loop[-1]


def print_cycles(g: Graph, found: list[list[str]]) -> None:
    full = {m: g.edges(m) for m in g.modules}
    for a, b in sorted(ALLOWED):
        back = shortest_path(full, b, a, set(full)) if b in full.get(a, ()) else []
        if back:
            print(f"loop closed only by an allowed edge (not a failure): {_loop_text(g, [a, *back])}")
    print(f"import cycles (static + import_module edges): {len(found)}")
    graph = cycle_graph(g)
    for comp in found:
        members = set(comp)
        print(f"  cycle of {len(comp)} modules: " + ", ".join(comp))
        dyn = [(a, b) for a in comp for b in sorted(g.dynamic[a]) if b in members]
        print("    dynamic edges in it: " + (", ".join(f"{a} ~> {b}" for a, b in dyn) or "none (all static)"))
        for a, b in dyn or [(comp[0], min(graph[comp[0]] & members))]:
            print("    e.g. " + _loop_text(g, [a, *shortest_path(graph, b, a, members)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help=f"repository holding {PACKAGE}/ (default: {REPO})")
    parser.add_argument("--modules", action="store_true", help="print every module and what it imports")
    args = parser.parse_args()
    g = scan(args.root.resolve())
    if args.modules:
        print_modules(g)
    print_rooms(g)
    violations = check_rooms(g)
    violations += check_plugins(g)
    if g.unresolved:
        print(f"warning: package names that are no module of this tree (stale after a move?): {len(g.unresolved)}")
        for line in g.unresolved:
            print(f"  {line}")
    found = cycles(cycle_graph(g))
    print(f"violations (upward edges, undeclared upward plug-ins, unplaced modules): {len(violations)}")
    for v in violations:
        print(f"  {v}")
    print_cycles(g, found)
    return 1 if violations or found else 0


if __name__ == "__main__":
    sys.exit(main())
