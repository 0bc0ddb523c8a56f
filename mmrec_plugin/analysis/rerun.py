"""Analysis of runs: the subset analysis recorded with a finished combination
(:func:`record_analysis`, the ``analyze`` hook of :func:`mmrec_plugin.runs.grid`) and of a
saved model rebuilt from a results file (:func:`analyze_results`, ``mmrec-plugin analyze``).

The six-way partition of :mod:`mmrec_plugin.analysis.subsets` is defined for two modalities
(branches ``t``, ``v`` and the fused ``f``); a model with more modalities is analysed on its
text and visual branches, its other branches are not part of the partition.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

import numpy as np

from mmrec_plugin.errors import UserError

__all__ = ["pair_types_for", "analyze_results", "record_analysis"]

logger = logging.getLogger(__name__)


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
    """Rebuild the saved model of one combination (:func:`mmrec_plugin.runs.load`) and run
    the subset analysis on the ``split`` pairs.

    Returns the JSON-able dict written by ``analyze``: ``results``, ``combination``, ``params``,
    ``model``, ``dataset``, ``split`` and the :func:`analyze_model` keys.
    """
    from mmrec_plugin.analysis.subsets import analyze_model
    from mmrec_plugin.runs import load

    if split not in ("test", "valid"):
        raise UserError(f"--split must be test or valid, got {split!r}")
    run = load(results_path, combination, data_path=data_path)
    combo, config = run.record, run.config
    if not hasattr(run.model, "branch_scores"):
        raise UserError(f"{config['model']} has no per-modality branches (branch_scores): the "
                        f"subset analysis needs a multimodal model with text, visual and fused scores")
    logger.info("analyze: %s on %s, combination %s, %s split, K=%d",
                config["model"], config["dataset"], combo.get("id"), split, k)
    eval_ds = run.data.split(split)
    users = np.asarray(eval_ds.users, dtype=np.int64)
    items = np.asarray(eval_ds.items, dtype=np.int64)
    folder = os.path.join(config["data_path"], config["dataset"])
    types = pair_types_for(folder, config["dataset"], users, items)
    result = analyze_model(run.model, run.data.train.inter_matrix(form="csr"), users, items, k=k,
                           pair_types=types, batch_size=batch_size)
    head = {"results": os.path.abspath(results_path), "combination": combo.get("id"),
            "params": combo.get("params"), "model": config["model"], "dataset": config["dataset"],
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
    from mmrec_plugin.host.schema import parse_metric
    from mmrec_plugin.utils import jsonable

    k = parse_metric(config["valid_metric"])[1]
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
