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


#: the layers, bottom up: a module may import modules of its own layer or below, never above
LAYERS = [
    ("mmrec_plugin.errors", "mmrec_plugin.version", "mmrec_plugin.utils", "mmrec_plugin.schema",
     "mmrec_plugin.cliargs",
     "mmrec_plugin.store", "mmrec_plugin.sparse", "mmrec_plugin.neighbours", "mmrec_plugin.eval_cache",
     "mmrec_plugin.limits",
     "mmrec_plugin.yamlio"),
    ("mmrec_plugin.registry", "mmrec_plugin.method"),
    ("mmrec_plugin.host", "mmrec_plugin.mmrec_src"),
    ("mmrec_plugin.runs",),
    ("mmrec_plugin.analysis", "mmrec_plugin.data", "mmrec_plugin.bridge", "mmrec_plugin.bench",
     "mmrec_plugin.recommend"),
    ("mmrec_plugin.cli", "mmrec_plugin.api"),
]


def _layer(module):
    if module == "mmrec_plugin":
        return len(LAYERS) - 1  # the package's top-level API
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS")


def test_imports_follow_the_layering():
    bad = [(a, b) for a, targets in _graph().items() for b in targets if _layer(b) > _layer(a)]
    assert bad == []


def test_the_method_knows_no_host_and_the_host_no_method():
    graph = _graph()
    bad = [(a, b) for a, targets in graph.items() for b in targets
           if (a.startswith("mmrec_plugin.method") and b.startswith("mmrec_plugin.host"))
           or (a.startswith("mmrec_plugin.host") and b.startswith("mmrec_plugin.method"))]
    assert bad == []


def test_only_the_run_pipeline_builds_loaders_trainers_and_evaluators():
    """Commands train, rank and reload models through mmrec_plugin.runs: none imports the
    loaders, the trainer or the evaluator itself."""
    internals = ("mmrec_plugin.host.dataloader", "mmrec_plugin.host.trainer",
                 "mmrec_plugin.host.evaluator")
    bad = [(a, b) for a, targets in _graph().items() for b in targets
           if b in internals and _layer(a) > _layer("mmrec_plugin.runs")]
    assert bad == []
