"""A trained model back from a results file: the only reader of saved models.

``load(results_json, combination)`` finds the combination (``best``, an id, a unique id
prefix, or its index in the grid), reads its model file with
``torch.load(weights_only=True)`` (tensors and plain containers only: a file that this
restricted loader refuses is never unpickled in full, since a crafted pickle runs code),
rebuilds the model through the registry from the saved config and the dataset, loads the
weights and returns the :class:`~mmrec_plugin.runs.build.Run` in eval mode. ``analyze``,
``compare``, ``recommend`` and the Python API (:func:`mmrec_plugin.load_model`) use it.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Tuple

from mmrec_plugin.errors import DataError, UserError

logger = logging.getLogger(__name__)

__all__ = ["load", "read_results", "find_combination", "resolve_model_path", "read_weights"]

#: saved-config keys that describe where the run happened, not what it learned
_NOT_FROM_SAVED = ("device", "data_path", "results_dir", "hyper_parameters", "model", "dataset")
MODEL_FORMATS = ("mmrec_plugin.model/2",)


def read_results(path: str) -> Dict[str, Any]:
    """A results JSON (a grid summary) as a dict, read and checked by
    :func:`mmrec_plugin.host.results.load_results` (regular file of bounded size, valid JSON,
    the results schema, plain-name ids); one of another format (a gamma-sweep summary) is a
    DataError naming it."""
    from mmrec_plugin.host.results import load_results

    results = load_results(path)
    if not isinstance(results.get("combinations"), list):
        raise DataError(f"{path}: not a grid results file (expected an object with 'combinations' "
                        f"and 'best')")
    return results


def find_combination(results: Dict, which: Any = "best") -> Dict:
    """The combination ``which`` (``best``, an id, a unique id prefix, or an index) of a
    results dict."""
    combos = results.get("combinations") or []
    which = "best" if which is None else which
    if which == "best":
        best = results.get("best")
        if not best:
            raise UserError("the results file has no best combination (none finished with "
                            "status ok); pick one with --combination ID")
        return best
    text = str(which)
    hits = [c for c in combos if str(c.get("id")) == text]
    if not hits and text.isdigit():
        hits = [c for c in combos if c.get("index") == int(text)]
    if not hits:
        hits = [c for c in combos if str(c.get("id", "")).startswith(text)]
    if len(hits) != 1:
        ids = ", ".join(f"{c.get('index')}: {c.get('id')}" for c in combos) or "none"
        what = "is ambiguous" if hits else "not found"
        raise UserError(f"combination {which!r} {what}; available: best, {ids}")
    return hits[0]


def resolve_model_path(combo: Dict, results_path: str) -> str:
    """The saved model file of ``combo``: the file of its ``model_path``'s name in the
    ``models/`` folder next to ``results_path`` (the results folder may have moved), else
    its ``model_path`` as recorded."""
    path = combo.get("model_path")
    if not path or not isinstance(path, str):
        raise UserError(f"combination {combo.get('id')} has no saved model (model_path is empty; "
                        "run the grid search with model saving on)")
    name = os.path.basename(path)  # (never a folder of the results file's choosing)
    here = os.path.join(os.path.dirname(os.path.abspath(results_path)), "models", name)
    if os.path.isfile(here):
        return here
    if os.path.isfile(path):
        return path
    raise DataError(f"saved model {path} of combination {combo.get('id')} not found (also looked "
                    f"for {here})")


def read_weights(path: str) -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a model file: ``{'state_dict', 'config', ...}``.
    Anything else (a file of another version, a crafted pickle, a damaged file) is a
    DataError, and nothing is unpickled in full."""
    import inspect

    import torch

    if "weights_only" not in inspect.signature(torch.load).parameters:
        raise DataError(f"cannot read the saved model {path} safely: torch {torch.__version__} has "
                        f"no weights_only loading (torch >= 1.13), and full unpickling can run code")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the saved model {path} as weights only ({first}); it is not "
                        f"unpickled in full, which could run code from the file") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or not isinstance(saved.get("config"), dict):
        raise DataError(f"{path}: not a model file of this package (expected a dict with "
                        f"'state_dict' and 'config')")
    if saved.get("format") not in MODEL_FORMATS:
        raise DataError(f"{path}: a model file of another version of mmrec-plugin (format "
                        f"{saved.get('format')!r}, this version reads {', '.join(MODEL_FORMATS)}); "
                        f"rerun the grid to retrain it")
    return saved


def saved_config(saved_cfg: Dict[str, Any], data_path: Optional[str] = None):
    """The Config a saved model was trained with, rebuilt here (``data_path`` overrides the
    recorded one: the data may have moved)."""
    from mmrec_plugin.host.config import Config

    model, dataset = saved_cfg.get("model"), saved_cfg.get("dataset")
    if not model or not dataset:
        raise DataError("the saved config names no model/dataset")
    dp = data_path or saved_cfg.get("data_path") or "data/"
    config = Config(model, dataset, config_dict={"data_path": dp})
    for key, value in saved_cfg.items():
        if key not in _NOT_FROM_SAVED:
            config[key] = value
    return config


def load(results_json: str, combination: Any = "best", data_path: Optional[str] = None):
    """The trained model of ``combination`` in ``results_json``, rebuilt (module docstring):
    a :class:`~mmrec_plugin.runs.build.Run` in eval mode, with ``run.record`` the
    combination's record."""
    run, _ = load_with_record(results_json, combination, data_path)
    return run


def load_with_record(results_json: str, combination: Any = "best",
                     data_path: Optional[str] = None) -> Tuple[Any, Dict]:
    from .build import build

    results = read_results(results_json)
    combo = find_combination(results, combination)
    path = resolve_model_path(combo, results_json)
    saved = read_weights(path)
    config = saved_config(saved["config"], data_path)
    run = build(config)
    try:
        run.model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path} does not fit {config['model']} built from its config: {first}") from None
    run.model.eval()
    run.record = combo
    run.model_path = path
    return run, combo
