"""The import graph of argen_jax, as one JSON line: cycles, upward imports, function-level
imports.

    python -m experiments.tools.import_graph [--root=.] [--verbose]

Reads the sources only (ast; nothing is imported). A module's floor is the floor of its room
(the first package under argen_jax, or the top-level module) in `FLOORS`, the layer order of
docs/design.md rule 1; an import of a higher floor from a lower one is upward. Figures:
- cycles: strongly connected groups of modules (size > 1) in the graph of module-level
  imports (`cycles`) and of all imports, function-level ones included (`cycles_all`);
- upward: module-level upward imports (`upward`) and function-level ones (`upward_hidden`);
- function_level: imports of argen_jax modules inside a function (`function_level`), and
  all imports inside a function, third-party ones included (`function_level_all`).
--verbose adds the lists.
"""
from __future__ import annotations

import argparse
import ast
import json
import os

# docs/design.md rule 1, bottom to top: a room imports only rooms of its own floor or below
FLOORS = [
    ("errors", "config_lib", "xla_env", "__init__"),
    ("parallel", "io"),
    ("heads", "layers", "losses"),
    ("sampling", "data", "evaluation"),
    ("models",),
    ("registry", "inference"),
    ("train", "codec"),
    ("run", "pretrained", "sections", "viz"),
]
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def modules(root: str) -> dict[str, str]:
    """Dotted module name -> path, for every .py file under root/argen_jax."""
    out = {}
    for d, _, files in os.walk(os.path.join(root, "argen_jax")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.AST, mods: dict[str, str], current: str):
    """(target module, function_level, line) for each import of an argen_jax module, and the
    number of function-level imports of any module."""
    found, any_fn = [], 0

    def visit(node, in_fn):
        nonlocal any_fn
        for child in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                any_fn += in_fn
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                else:
                    base = child.module or ""
                    if child.level:  # relative import
                        pkg = current.split(".")
                        base = ".".join(pkg[: len(pkg) - child.level] + ([base] if base else []))
                    for a in child.names:
                        sub = f"{base}.{a.name}"
                        names.append(sub if sub in mods else base)
                for n in names:
                    while n and n not in mods:
                        n = n.rpartition(".")[0]
                    if n.startswith("argen_jax") and n in mods and n != current:
                        found.append((n, in_fn, child.lineno))
            visit(child, fn)

    visit(tree, False)
    return found, any_fn


def _sccs(graph: dict[str, set]) -> list[list[str]]:
    """Strongly connected components of size > 1 (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def analyse(root: str) -> dict:
    mods = modules(root)
    edges, fn_all = [], 0
    for name, path in sorted(mods.items()):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        found, n = _imports(tree, mods, name)
        fn_all += n
        edges += sorted(set((name, t, fn, line) for t, fn, line in found))
    unknown = sorted({room(m) for m in mods} - set(FLOOR))
    module_graph, all_graph = {}, {}
    for a, b, fn, _ in edges:
        all_graph.setdefault(a, set()).add(b)
        if not fn:
            module_graph.setdefault(a, set()).add(b)
    up = [(a, b, fn, line) for a, b, fn, line in edges
          if FLOOR.get(room(b), -1) > FLOOR.get(room(a), len(FLOORS))]
    return {
        "modules": len(mods),
        "cycles": _sccs(module_graph),
        "cycles_all": _sccs(all_graph),
        "upward": [f"{a}:{line} -> {b}" for a, b, fn, line in up if not fn],
        "upward_hidden": [f"{a}:{line} -> {b}" for a, b, fn, line in up if fn],
        "function_level": [f"{a}:{line} -> {b}" for a, b, fn, line in edges if fn],
        "function_level_all": fn_all,
        "rooms_without_floor": unknown,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="the repository root")
    ap.add_argument("--verbose", action="store_true", help="list the imports, not just counts")
    a = ap.parse_args()
    res = analyse(a.root)
    if not a.verbose:
        res = {k: len(v) if isinstance(v, list) and k != "rooms_without_floor" else v
               for k, v in res.items()}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
