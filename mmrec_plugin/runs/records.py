"""What a finished combination leaves behind: its store key, its record, its provenance, the
grid's summary, and the atomic writes of JSON and model files.

Store key of a combination (:func:`combination_key`): a digest of the model, the dataset,
the combination's values, every other effective config value that can change training or
its metrics (all keys except :data:`NOT_IN_DIGEST`: paths, device, the grid definition), the
bytes of the dataset's files (:func:`data_fingerprint`) and the code that trains it
(:func:`code_digest`). A rerun of the same command finds its results ("skipping, already
done"); changed data, settings or code train again.

Provenance (:func:`provenance`), in every record and saved model: the package version, the
code digest, Python, torch, numpy, SciPy and torch-geometric versions, the device, torch's
threads, the command line, the host, and the start and end times.
"""
from __future__ import annotations

import ast
import datetime
import hashlib
import inspect
import json
import logging
import os
import platform
import shlex
import socket
import sys
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from mmrec_plugin.errors import UserError
from mmrec_plugin.utils import atomic_write_bytes, file_mode, jsonable

logger = logging.getLogger(__name__)

__all__ = ["NOT_IN_DIGEST", "combination_key", "data_fingerprint", "code_digest", "provenance",
           "now", "select", "summary_dict", "write_json_atomic", "save_model_file"]

#: config keys that cannot change what a combination learns or scores
NOT_IN_DIGEST = frozenset({
    "data_path", "results_dir", "checkpoint_dir", "device", "use_gpu", "gpu_id",
    "hyper_parameters", "save_recommended_topk", "recommend_topk", "model", "dataset",
    "eval_batch_size",
})

#: the modules whose code trains and scores every model (besides the model's own classes)
CORE_MODULES = (
    "mmrec_plugin.sparse", "mmrec_plugin.schema", "mmrec_plugin.host.trainer",
    "mmrec_plugin.host.dataloader", "mmrec_plugin.host.dataset", "mmrec_plugin.host.evaluator",
    "mmrec_plugin.host.abstract_recommender", "mmrec_plugin.runs.build",
)
METHOD_PACKAGE = "mmrec_plugin.method"
_LIBRARIES = ("builtins", "torch", "typing", "abc", "collections")


def now() -> str:
    """The current time, ISO 8601 with the UTC offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _code_text(path: str) -> bytes:
    """A module's code without comments, docstrings or formatting (its AST), so that editing
    documentation does not make finished results stale."""
    with open(path, "rb") as fh:
        source = fh.read()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False).encode()


def _module_files(model_cls: Optional[type]) -> List[str]:
    import importlib

    names = set(CORE_MODULES)
    method = importlib.import_module(METHOD_PACKAGE)
    folder = os.path.dirname(os.path.abspath(method.__file__))
    files = {os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py")}
    for name in names:
        module = sys.modules.get(name) or importlib.import_module(name)
        files.add(os.path.abspath(module.__file__))
    for cls in (inspect.getmro(model_cls) if model_cls is not None else ()):
        name = getattr(cls, "__module__", "") or ""
        if name.split(".")[0] in _LIBRARIES:
            continue  # torch.nn.Module and the like: their versions are recorded instead
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            files.add(os.path.abspath(path))
    return sorted(files)


_CODE_CACHE: Dict[Any, str] = {}


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def code_digest(model_cls: Optional[type] = None) -> str:
    """sha256 over the code that trains ``model_cls``: its classes' modules (the whole MRO:
    a ``_BR`` model counts its parent model and the objective's mixin), the method library
    and the host modules that train, rank and score (:data:`CORE_MODULES`). Comments and
    docstrings do not count. Cached per process."""
    files = _module_files(model_cls)
    key = tuple((f, _mtime(f)) for f in files)
    if key not in _CODE_CACHE:
        h = hashlib.sha256(b"mmrec_plugin.code/v1")
        for path, mtime in key:
            # a module deleted since it was imported (code changed under a running process)
            text = _code_text(path) if mtime is not None else b"<missing>"
            h.update(os.path.basename(path).encode() + b"\0" + text + b"\0")
        _CODE_CACHE[key] = h.hexdigest()
    return _CODE_CACHE[key]


def _version(dist: str, module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed as a distribution: ask the module, if imported
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None)


def provenance(config, model_cls: Optional[type] = None, started: Optional[str] = None) -> Dict[str, Any]:
    """Where a result comes from (module docstring); ``finished`` is set when it is called."""
    import torch

    from mmrec_plugin.version import __version__

    return {
        "package": __version__, "code": code_digest(model_cls),
        "python": platform.python_version(), "torch": str(torch.__version__),
        "numpy": str(np.__version__), "scipy": _version("scipy", "scipy"),
        "torch_geometric": _version("torch-geometric", "torch_geometric"),
        "device": str(config["device"]), "threads": torch.get_num_threads(),
        "command": shlex.join(sys.argv), "host": socket.gethostname(),
        "started": started, "finished": now(),
    }


def data_fingerprint(config) -> str:
    """sha256 over the dataset's interaction file and feature files (those that exist)."""
    from mmrec_plugin.host.dataset import feature_files

    folder = os.path.join(config["data_path"], config["dataset"])
    h = hashlib.sha256()
    names = [("inter_file_name", config.get("inter_file_name"))]
    if config.get("feature_files") is None:
        names += [(k, config.get(k)) for k in ("vision_feature_file", "text_feature_file")]
    else:
        names += [(f"feature_files.{m}", f) for m, f in sorted(feature_files(config).items())]
    for name_key, name in names:
        if not name:
            continue
        path = os.path.join(folder, str(name))
        h.update(f"{name_key}={name}:".encode())
        if not os.path.isfile(path):
            h.update(b"absent")
            continue
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def combination_key(config, params: Dict[str, Any], fingerprint: str, code: str) -> str:
    """The store digest of one combination (module docstring)."""
    from mmrec_plugin.store import digest

    rest = {k: v for k, v in config.items() if k not in NOT_IN_DIGEST and k not in params}
    base = digest("mmrec_plugin.combination/v2", config["model"], config["dataset"],
                  jsonable(params), jsonable(rest), fingerprint)
    return digest(base, code) if code else base


def select(records: Iterable[Dict], metric: str) -> Optional[Dict]:
    """The ``'ok'`` record with the highest VALIDATION ``metric`` (MMRec picks by test score,
    a leak); ties go to the earlier record."""
    best = None
    for rec in records:
        if rec.get("status") != "ok" or not rec.get("valid"):
            continue
        score = rec["valid"].get(metric)
        if score is None:
            continue
        if best is None or score > best["valid"][metric]:
            best = rec
    return best


def summary_dict(config, records: List[Dict], n_total: int, json_path: str) -> Dict[str, Any]:
    """The JSON summary of a grid (see :mod:`mmrec_plugin.runs.grid`)."""
    from mmrec_plugin.version import __version__

    metric = config.valid_metric_key
    return {
        "format": "mmrec_plugin.results/2", "package": __version__,
        "model": config["model"], "dataset": config["dataset"],
        "selected_by": f"valid {metric}", "complete": len(records) == n_total,
        "n_combinations": n_total, "best": select(records, metric), "combinations": records,
        "path": json_path,
    }


def _finite(obj: Any) -> Any:
    """NaN / infinite floats -> None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN -> null) to ``path`` via a temp file and
    ``os.replace``, so a reader never sees a half-written file. An OS error (an unwritable
    folder, a full disk) is a UserError naming the file; the old file is kept."""
    text = json.dumps(_finite(jsonable(obj)), indent=2, allow_nan=False)
    try:
        atomic_write_bytes(path, (text + "\n").encode())
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc})") from None


def save_model_file(path: str, payload: Dict[str, Any]) -> str:
    """``torch.save`` ``payload`` to a temporary file next to ``path`` (returned; the caller
    moves it into place with ``os.replace`` or removes it). A full disk or an unwritable
    folder is a UserError naming the file, and nothing is left behind."""
    import tempfile

    import torch

    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc})") from None
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, file_mode())
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        try:
            os.unlink(tmp)
        except OSError:
            pass
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot write {path} ({getattr(exc, 'strerror', None) or first}); "
                        f"is the disk full?") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return tmp
