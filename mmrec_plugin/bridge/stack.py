"""What an MMRec checkout needs on the running Python stack (:func:`check_stack`).

:func:`check_stack` reads the checkout's source text and the installed package versions of
the running interpreter and reports the known incompatibilities of old MMRec code with
current libraries, each with its fix:

- ``np.float`` and the other aliases removed in numpy 1.24 (MMRec's ``utils/metrics.py``:
  every evaluation fails) -> ``pip install "numpy<1.24"`` (wheels exist for Python <= 3.11);
- ``dok_matrix._update``, removed in SciPy 1.13 (the graph builder of LightGCN, FREEDOM and
  others) -> ``pip install "scipy<1.13"``;
- ``torchvision`` imported by its dataset module (``utils/data_utils.py``, imported on every
  run) -> install the torchvision matching torch;
- ``.cuda()`` hard-coded in some models (they fail without a GPU; BRMRS has none);
- packages the core modules or BRMRS import that are not installed (``yaml``, ``lmdb``,
  ``torch_geometric``, ...).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import platform
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from mmrec_plugin.bridge.checkout import (BLOCKER, MODELS, OK, InstallReport, PathLike,
                                          StackIssue, find_mmrec_src)

__all__ = ["check_stack", "PIP_NAMES"]

#: import name -> pip distribution name, where they differ.
PIP_NAMES: Dict[str, str] = {
    "yaml": "pyyaml",
    "PIL": "pillow",
    "torch_geometric": "torch-geometric",
    "torch_scatter": "torch-scatter",
    "torch_sparse": "torch-sparse",
    "sklearn": "scikit-learn",
}

# numpy aliases removed in 1.24 (deprecated in 1.20): np.float, np.int, np.bool, ...
_NP_ALIAS = re.compile(r"\bnp\.(float|int|bool|object|complex|str|long|unicode)\b")
_DOK_UPDATE = re.compile(r"\._update\s*\(")
_CUDA_CALL = re.compile(r"\.cuda\s*\(\s*\)")

def _installed_version(dist: str) -> Optional[str]:
    """The installed version of a distribution in this interpreter, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    if not _module_available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _vtuple(version: Optional[str]) -> Optional[Tuple[int, int]]:
    """(major, minor) of a version string, or None when absent/unparseable."""
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _scan(files: Sequence[Path], pattern: "re.Pattern[str]", root: Path) -> List[str]:
    """'relpath:line' of each line of ``files`` matching ``pattern`` (comments skipped)."""
    hits = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                hits.append(f"{f.relative_to(root).as_posix()}:{i}")
    return hits


def _where(hits: List[str], limit: int = 3) -> str:
    shown = ", ".join(hits[:limit])
    return shown + (f" (+{len(hits) - limit} more)" if len(hits) > limit else "")


def _model_names(hits: List[str]) -> List[str]:
    return sorted({h.split(":")[0] for h in hits})


def _top_imports(path: Path) -> List[str]:
    """Top-level module names a Python file imports when it is imported.

    Only module-level statements count (also inside module-level ``if``/``try``); an import
    inside a function runs only when that function is called. Relative imports are skipped.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError):
        return []
    stack, nodes = list(tree.body), []
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            for part in ("body", "orelse", "finalbody"):
                stack.extend(getattr(node, part, []))
            for h in getattr(node, "handlers", []):
                stack.extend(h.body)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(names)


def _pip_name(module: str) -> str:
    return PIP_NAMES.get(module, module)


def check_stack(mmrec_path: PathLike, report: Optional[InstallReport] = None,
                versions: Optional[Mapping[str, Optional[str]]] = None,
                module_available: Optional[Callable[[str], bool]] = None,
                cuda_available: Optional[bool] = None) -> InstallReport:
    """What an MMRec checkout needs to run (BRMRS) on the running interpreter's stack.

    Reads the checkout's source text only. The checks run against the interpreter that
    calls this function: run ``mmrec-plugin install`` with the Python that runs MMRec.

    Args:
        mmrec_path: checkout root or its ``src/``.
        report: append to this report (default: a new one).
        versions: distribution -> version overrides (``numpy``, ``scipy``, ``torch``,
            ``torchvision``); default: the installed versions.
        module_available: predicate for importable top-level modules (default: find_spec).
        cuda_available: whether a CUDA device is usable (default: ask torch, if installed).

    Returns:
        The report with ``stack`` filled (FAIL / WARN / ok lines, each with its fix).
    """
    src = find_mmrec_src(mmrec_path)
    report = report if report is not None else InstallReport(src=src)
    ver = dict(versions) if versions is not None else {}

    def version(dist: str) -> Optional[str]:
        return ver[dist] if dist in ver else _installed_version(dist)

    available = module_available or _module_available
    py = platform.python_version()
    report.python = (f"Python {py} at {sys.executable}; numpy {version('numpy')}, "
                     f"scipy {version('scipy')}, torch {version('torch')}, "
                     f"torchvision {version('torchvision')}")
    core = sorted([src / "main.py"] + list((src / "utils").glob("*.py"))
                  + list((src / "common").glob("*.py")))
    models = sorted(p for p in (src / "models").glob("*.py") if p.name != "brmrs.py")
    issues: List[StackIssue] = []

    # numpy aliases removed in 1.24 ---------------------------------------------------
    np_v = _vtuple(version("numpy"))
    core_hits, model_hits = _scan(core, _NP_ALIAS, src), _scan(models, _NP_ALIAS, src)
    if core_hits or model_hits:
        old_py = sys.version_info[:2] <= (3, 11)
        fix = ('pip install "numpy<1.24"' + ("" if old_py else
               "  (numpy < 1.24 has no wheels for Python >= 3.12: use a Python 3.11 "
               "environment, or edit those lines to use float/int/bool in your checkout)"))
        if np_v is None:
            issues.append(StackIssue(BLOCKER, "numpy", "numpy is not installed", fix))
        elif np_v >= (1, 24):
            where = core_hits or model_hits
            level = BLOCKER if core_hits else MODELS
            what = ("every evaluation fails (AttributeError: module 'numpy' has no attribute "
                    "'float')" if core_hits else "these models fail: "
                    + ", ".join(_model_names(model_hits)))
            issues.append(StackIssue(level, "numpy", f"numpy {version('numpy')} removed np.float "
                                     f"and its siblings (in 1.24), used at {_where(where)}: {what}",
                                     fix))
        else:
            issues.append(StackIssue(OK, "numpy", f"numpy {version('numpy')} still has np.float "
                                     f"(used at {_where(core_hits or model_hits, 1)})"))
    elif np_v is None:
        issues.append(StackIssue(BLOCKER, "numpy", "numpy is not installed", "pip install numpy"))

    # scipy dok_matrix._update removed in 1.13 ---------------------------------------
    sp_v = _vtuple(version("scipy"))
    dok_core, dok_models = _scan(core, _DOK_UPDATE, src), _scan(models, _DOK_UPDATE, src)
    if dok_core or dok_models:
        names = ", ".join(_model_names(dok_models + dok_core))
        if sp_v is None:
            issues.append(StackIssue(BLOCKER, "scipy", "scipy is not installed",
                                     'pip install "scipy<1.13"'))
        elif sp_v >= (1, 13):
            issues.append(StackIssue(
                MODELS, "scipy", f"SciPy {version('scipy')} removed dok_matrix._update (in 1.13), "
                f"used at {_where(dok_models + dok_core)}: graph building fails in {names} "
                "(BRMRS does not use it)", 'pip install "scipy<1.13"'))
        else:
            issues.append(StackIssue(OK, "scipy", f"SciPy {version('scipy')} still has "
                                     "dok_matrix._update"))

    # torchvision imported by the data pipeline ---------------------------------------
    tv_hits = [f for f in core if "torchvision" in _top_imports(f)]
    if tv_hits:
        rel = ", ".join(f.relative_to(src).as_posix() for f in tv_hits)
        if version("torchvision") is None and not available("torchvision"):
            t_v = _vtuple(version("torch"))
            want = (f'"torchvision==0.{t_v[1] + 15}.*"' if t_v and t_v[0] == 2
                    else "torchvision (the release matching your torch)")
            issues.append(StackIssue(BLOCKER, "torchvision",
                                     f"{rel} imports torchvision (imported by the dataset "
                                     "module on every run), which is not installed",
                                     f"pip install {want}"))
        else:
            issues.append(StackIssue(OK, "torchvision", f"torchvision {version('torchvision')} "
                                     f"installed (imported by {rel})"))

    # packages imported by MMRec's core and by BRMRS -----------------------------------
    local = {p.stem for p in src.glob("*.py")} | {p.name for p in src.iterdir() if p.is_dir()}
    needed: Dict[str, List[str]] = {}
    ours = src / "models" / "brmrs.py"
    for f in core + ([ours] if ours.is_file() else []):
        for mod in _top_imports(f):
            if mod in local or mod in sys.builtin_module_names or mod == "torchvision":
                continue
            if mod in getattr(sys, "stdlib_module_names", ()):
                continue
            needed.setdefault(mod, []).append(f.relative_to(src).as_posix())
    missing = sorted(m for m in needed if not available(m))
    if missing:
        pips = [_pip_name(m) for m in missing if m != "mmrec_plugin"]
        fixes = (["pip install " + " ".join(pips)] if pips else []) + (
            ["install this plugin into the Python that runs MMRec (pip install <BR-MRS folder>)"]
            if "mmrec_plugin" in missing else [])
        issues.append(StackIssue(
            BLOCKER, "packages", "not installed: " + "; ".join(
                f"{m} (imported by {', '.join(needed[m][:2])})" for m in missing),
            "; ".join(fixes)))
    else:
        issues.append(StackIssue(OK, "packages", "all packages imported by MMRec's core"
                                 + (" and BRMRS" if ours.is_file() else "") + " are installed"))
    tg_models = [f for f in models if {"torch_geometric", "torch_scatter"} & set(_top_imports(f))]
    if tg_models and not available("torch_geometric"):
        issues.append(StackIssue(MODELS, "packages", "torch_geometric is not installed; needed by "
                                 + ", ".join(f.relative_to(src).as_posix() for f in tg_models),
                                 "pip install torch-geometric"))

    # .cuda() hard-coded -----------------------------------------------------------------
    cuda_hits = _scan(models, _CUDA_CALL, src)
    if cuda_hits:
        has_cuda = _cuda_available() if cuda_available is None else cuda_available
        if not has_cuda:
            issues.append(StackIssue(MODELS, "cuda", "no CUDA device here, and .cuda() is "
                                     f"hard-coded at {_where(cuda_hits)}: these models fail on "
                                     f"CPU: {', '.join(_model_names(cuda_hits))} (BRMRS "
                                     "follows the config's device)", "run those models on a GPU"))
        else:
            issues.append(StackIssue(OK, "cuda", "CUDA available; models with hard-coded .cuda() "
                                     f"({', '.join(_model_names(cuda_hits))}) can run"))

    order = {BLOCKER: 0, MODELS: 1, OK: 2}
    report.stack.extend(sorted(issues, key=lambda s: order[s.level]))
    return report
