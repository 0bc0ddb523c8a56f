"""Analysis of runs: the subset analysis recorded with a finished combination
(:func:`record_analysis`, the ``analyze`` hook of the host's ``quick_start``) and of a saved
model rebuilt from a results file (:func:`analyze_results`, ``mmrec-plugin analyze``).

The six-way partition of :mod:`mmrec_plugin.analysis.subsets` is defined for two modalities
(branches ``t``, ``v`` and the fused ``f``); a model with more modalities is analysed on its
text and visual branches, its other branches are not part of the partition.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

import numpy as np

from mmrec_plugin.errors import DataError, UserError

__all__ = ["find_combination", "pair_types_for", "analyze_results", "record_analysis"]

logger = logging.getLogger(__name__)


def find_combination(results: Dict, which: str = "best") -> Dict:
    """The combination ``which`` (an id, a unique id prefix, or ``best``) of a results dict."""
    combos = results.get("combinations") or []
    if which == "best":
        best = results.get("best")
        if not best:
            raise UserError("the results file has no best combination (none finished); "
                            "pick one with --combination ID")
        return best
    hits = [c for c in combos if str(c.get("id")) == which]
    if not hits:
        hits = [c for c in combos if str(c.get("id", "")).startswith(which)]
    if len(hits) != 1:
        ids = ", ".join(str(c.get("id")) for c in combos) or "none"
        what = "is ambiguous" if hits else "not found"
        raise UserError(f"combination {which!r} {what}; available: best, {ids}")
    return hits[0]


def resolve_model_path(combo: Dict, results_path: str) -> str:
    """The saved model file of ``combo``: its ``model_path``, or, for a results folder moved
    elsewhere, the file of that name in ``models/`` next to ``results_path``."""
    path = combo.get("model_path")
    if not path:
        raise UserError(f"combination {combo.get('id')} has no saved model (model_path is empty; "
                        "run the grid search with model saving on)")
    if os.path.isfile(path):
        return path
    # a results folder moved elsewhere: look next to the results file
    alt = os.path.join(os.path.dirname(os.path.abspath(results_path)), "models", os.path.basename(path))
    if os.path.isfile(alt):
        return alt
    raise DataError(f"saved model {path} of combination {combo.get('id')} not found (also looked for {alt})")


def _torch_load(path: str):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only. A file
    that this restricted loader refuses (or fails on, with any error) is never unpickled in
    full, since a crafted pickle runs code when it is; a torch without ``weights_only``
    (< 1.13) cannot read saved models here at all."""
    import inspect

    import torch

    if "weights_only" not in inspect.signature(torch.load).parameters:
        raise DataError(
            f"cannot read the saved model {path} safely: torch {torch.__version__} has no "
            f"weights_only loading (torch >= 1.13), and full unpickling can run code from the file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read the saved model {path} as weights only ({first}); it is not "
            f"unpickled in full, which could run code from the file"
        ) from None


def pair_types_for(folder: str, name: str, users: np.ndarray, items: np.ndarray) -> Optional[np.ndarray]:
    """Ground-truth types of (user, item) pairs from ``<folder>/<name>.types``, or None when
    the file is absent. Pairs missing from the file get ``'unknown'`` (logged)."""
    path = os.path.join(folder, f"{name}.types")
    if not os.path.isfile(path):
        return None
    from mmrec_plugin.data.synthetic import read_types

    table = read_types(folder, name)
    n_items = int(max(table["items"].max(initial=0), np.max(items, initial=0))) + 1
    keys = table["users"] * n_items + table["items"]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    types = np.asarray(table["types"])[order]
    q = np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)
    out = np.full(len(q), "unknown", dtype=object)
    found = np.zeros(len(q), dtype=bool)
    if len(keys):
        pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        found = keys[pos] == q
        out[found] = types[pos[found]]
    if (~found).any():
        logger.warning("%d of %d pairs have no type in %s", int((~found).sum()), len(q), path)
    return out


def analyze_results(
    results_path: str,
    combination: str = "best",
    k: int = 20,
    data_path: Optional[str] = None,
    split: str = "test",
    batch_size: int = 1024,
) -> Dict:
    """Rebuild the saved model of one combination and run the subset analysis.

    Returns the JSON-able dict written by ``analyze``: ``results``, ``combination``, ``params``,
    ``model``, ``dataset``, ``split`` and the :func:`analyze_model` keys.
    """
    from mmrec_plugin.analysis.report import load_results
    from mmrec_plugin.analysis.subsets import analyze_model
    from mmrec_plugin.host.config import Config
    from mmrec_plugin.host.dataloader import TrainDataLoader
    from mmrec_plugin.host.dataset import RecDataset
    from mmrec_plugin.registry import get_model

    if split not in ("test", "valid"):
        raise UserError(f"--split must be test or valid, got {split!r}")
    results = load_results(results_path)
    combo = find_combination(results, combination)
    model_path = resolve_model_path(combo, results_path)
    saved = _torch_load(model_path)
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise DataError(f"{model_path}: expected a dict with 'state_dict' and 'config'")
    saved_cfg = dict(saved.get("config") or combo.get("config") or {})
    model_name = saved_cfg.get("model") or results.get("model")
    dataset_name = saved_cfg.get("dataset") or results.get("dataset")
    if not model_name or not dataset_name:
        raise DataError(f"{model_path}: the saved config names no model/dataset")
    data_path = data_path or saved_cfg.get("data_path") or "data/"
    config = Config(model_name, dataset_name, config_dict={"data_path": data_path})
    for key, value in saved_cfg.items():
        if key not in ("device", "data_path", "hyper_parameters", "results_dir", "model", "dataset"):
            config[key] = value
    logger.info("analyze: %s on %s, combination %s, %s split, K=%d",
                model_name, dataset_name, combo.get("id"), split, k)
    full = RecDataset(config)
    train_ds, valid_ds, test_ds = full.split()
    eval_ds = test_ds if split == "test" else valid_ds
    train_loader = TrainDataLoader(config, train_ds, batch_size=config["train_batch_size"], shuffle=False)
    model = get_model(model_name)(config, train_loader).to(config["device"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{model_path} does not fit {model_name} built from its config: {exc}") from None
    users = np.asarray(eval_ds.users, dtype=np.int64)
    items = np.asarray(eval_ds.items, dtype=np.int64)
    folder = os.path.join(config["data_path"], dataset_name)
    types = pair_types_for(folder, dataset_name, users, items)
    result = analyze_model(model, train_ds.inter_matrix(form="csr"), users, items, k=k,
                           pair_types=types, batch_size=batch_size)
    head = {"results": os.path.abspath(results_path), "combination": combo.get("id"),
            "params": combo.get("params"), "model": model_name, "dataset": dataset_name,
            "split": split}
    head.update(result)
    return head


def record_analysis(model, config, train_dataset, test_dataset) -> Optional[Dict]:
    """The subset analysis of a finished combination's best model on its test pairs, at the
    K of ``valid_metric``; None for a model without ``branch_scores``."""
    if not hasattr(model, "branch_scores"):
        return None
    import torch

    from mmrec_plugin.analysis.subsets import analyze_model
    from mmrec_plugin.host.config import jsonable, valid_metric_key

    k = int(valid_metric_key(config).split("@")[1])
    users = np.asarray(test_dataset.users, dtype=np.int64)
    items = np.asarray(test_dataset.items, dtype=np.int64)
    try:
        types = pair_types_for(os.path.join(config["data_path"], config["dataset"]), config["dataset"],
                               users, items)
    except Exception as exc:  # analysis extras must never fail a finished run
        logger.warning("could not read pair types: %s", exc)
        types = None
    model.eval()
    with torch.no_grad():
        result = analyze_model(model, train_dataset.inter_matrix(form="csr"), users, items, k=k,
                               pair_types=None if types is None else [str(t) for t in types])
    return jsonable(result)
