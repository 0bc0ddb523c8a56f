"""No import loops between the package's modules, and imports follow the layering: the
registry and the floor (errors, utils, store, sparse) never import the host, the method never
imports the host or analysis, the host never imports the method or analysis. Imports inside
functions count too (read from the source, nothing is imported)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules():
    mods = {}
    for path in sorted((ROOT / "mmrec_plugin").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def _graph():
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[m].update(n for n in names if n in mods and n != m)
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_loops():
    assert _cycles(_graph()) == []


def test_imports_follow_the_layering():
    forbidden = {
        "mmrec_plugin.registry": ("mmrec_plugin.host",),
        "mmrec_plugin.sparse": ("mmrec_plugin.host", "mmrec_plugin.method", "mmrec_plugin.analysis"),
        "mmrec_plugin.method": ("mmrec_plugin.host", "mmrec_plugin.analysis"),
        "mmrec_plugin.host": ("mmrec_plugin.method", "mmrec_plugin.analysis"),
    }
    bad = [(a, b) for a, targets in _graph().items() for b in targets
           for low, high in forbidden.items() if a.startswith(low) and b.startswith(high)]
    assert bad == []
