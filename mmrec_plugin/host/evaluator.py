"""Top-K ranking metrics, vectorised over users (MMRec's formulas).

For a user ``u`` with ground-truth set ``T_u`` and top-K list with relevance ``rel_i`` (1 if
the item at rank ``i`` is in ``T_u``), ``hits@K = sum_{i<=K} rel_i`` and

- Recall@K    = hits@K / |T_u|
- Precision@K = hits@K / K
- NDCG@K      = DCG@K / IDCG@K, ``DCG@K = sum_{i<=K} rel_i / log2(i + 1)``,
  ``IDCG@K = sum_{i<=min(|T_u|, K)} 1 / log2(i + 1)``
- MAP@K       = sum_{i<=K} P@i * rel_i / min(|T_u|, K), ``P@i = hits@i / i``

each averaged over the evaluated users (users with at least one ground-truth item). Keys are
lower-case, as in MMRec: ``'recall@20'``.

Args (config keys):
    metrics (list of str): any of Recall, NDCG, Precision, MAP (case-insensitive).
    topk (int or list of int): the cut-offs K.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Union

import numpy as np
import torch

from mmrec_plugin.errors import ConfigError, did_you_mean

METRICS = ("recall", "ndcg", "precision", "map")


def check_metrics(metrics) -> List[str]:
    """Normalise ``metrics`` to lower-case names; an unknown name is a ConfigError."""
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        name = str(m).lower()
        if name not in METRICS:
            raise ConfigError(
                f"config key 'metrics': unknown metric {m!r}{did_you_mean(str(m), METRICS)}; "
                f"accepted: Recall, NDCG, Precision, MAP"
            )
        out.append(name)
    if not out:
        raise ConfigError("config key 'metrics' is empty; accepted: Recall, NDCG, Precision, MAP")
    return out


def check_topk(topk) -> List[int]:
    """Normalise ``topk`` to a list of positive ints; anything else is a ConfigError."""
    if isinstance(topk, (int, np.integer)):
        topk = [topk]
    try:
        ks = [int(k) for k in topk]
        ok = all(int(k) == k and k > 0 for k in topk) and len(ks) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"config key 'topk' must be a positive integer or a list of them, got {topk!r}")
    return ks


def topk_hits(
    topk_index: Union[np.ndarray, torch.Tensor],
    indptr: np.ndarray,
    indices: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """``hits[r, k]`` = whether ``topk_index[r, k]`` is a ground-truth item of row ``r``.

    Args:
        topk_index: ``[N, K]`` item ids, row ``r`` for the ``r``-th evaluated user.
        indptr, indices: the ground truth as CSR arrays over the same ``N`` rows.
        n_items: the number of items (for the ``row * n_items + item`` codes).

    Returns:
        bool array ``[N, K]``.
    """
    if isinstance(topk_index, torch.Tensor):
        topk_index = topk_index.detach().cpu().numpy()
    topk_index = np.asarray(topk_index, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    n = topk_index.shape[0]
    if len(indptr) != n + 1:
        raise ValueError(f"topk_index has {n} rows but the ground truth has {len(indptr) - 1}")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    gt_codes = np.sort(rows * n_items + np.asarray(indices, dtype=np.int64))
    codes = np.arange(n, dtype=np.int64)[:, None] * n_items + topk_index
    if len(gt_codes) == 0:
        return np.zeros(codes.shape, dtype=bool)
    pos = np.searchsorted(gt_codes, codes)
    pos[pos == len(gt_codes)] = 0
    return gt_codes[pos] == codes


def metrics_from_hits(
    hits: np.ndarray,
    n_targets: np.ndarray,
    topk: Sequence[int],
    metrics: Iterable[str],
) -> Dict[str, float]:
    """Average metrics over users from a hits matrix (see the module docstring).

    Args:
        hits: bool ``[N, maxK]``, ``hits[u, i]`` = the item at rank ``i + 1`` is relevant.
        n_targets: ``[N]`` the ground-truth sizes ``|T_u|`` (all >= 1).
        topk: cut-offs, each <= ``maxK``.
        metrics: names among Recall, NDCG, Precision, MAP.

    Returns:
        ``{'recall@10': ..., ...}`` (keys ``<metric>@<K>``, lower-case), in the order
        metrics x topk.
    """
    metrics = check_metrics(metrics)
    topk = check_topk(topk)
    hits = np.asarray(hits, dtype=bool)
    n_targets = np.asarray(n_targets, dtype=np.float64)
    n, max_k = hits.shape
    if max(topk) > max_k:
        raise ValueError(f"topk {max(topk)} exceeds the {max_k} ranked items given")
    if n == 0:
        return {f"{m}@{k}": 0.0 for m in metrics for k in topk}
    if (n_targets <= 0).any():
        raise ValueError("every evaluated user needs at least one ground-truth item")
    rel = hits.astype(np.float64)
    ranks = np.arange(1, max_k + 1, dtype=np.float64)
    cum_hits = np.cumsum(rel, axis=1)  # hits@i
    out: Dict[str, float] = {}
    need = set(metrics)
    if "ndcg" in need:
        disc = 1.0 / np.log2(ranks + 1.0)
        dcg = np.cumsum(rel * disc, axis=1)
        idcg_table = np.cumsum(disc)
    if "map" in need:
        sum_prec = np.cumsum(cum_hits / ranks * rel, axis=1)
    for m in metrics:
        for k in topk:
            col = k - 1
            if m == "recall":
                v = cum_hits[:, col] / n_targets
            elif m == "precision":
                v = cum_hits[:, col] / k
            elif m == "ndcg":
                ideal = np.minimum(n_targets, k).astype(np.int64) - 1
                v = dcg[:, col] / idcg_table[ideal]
            else:  # map
                v = sum_prec[:, col] / np.minimum(n_targets, k)
            out[f"{m}@{k}"] = float(v.mean())
    return out


class Evaluator:
    """Computes the configured metrics from top-K item ids and an evaluation loader.

    Args:
        config: uses ``metrics`` and ``topk``.
    """

    def __init__(self, config):
        self.metrics = check_metrics(config["metrics"] if "metrics" in config else ["Recall", "NDCG"])
        self.topk = check_topk(config["topk"] if "topk" in config else [10, 20])
        self.max_k = max(self.topk)

    def evaluate(self, topk_index, eval_loader) -> Dict[str, float]:
        """Metrics for ``topk_index`` (``LongTensor[N, maxK]``, or a list of batch tensors).

        Rows follow ``eval_loader.eval_users``; the ground truth is
        ``eval_loader.eval_items_per_user`` (CSR ``indptr, indices``).
        """
        if isinstance(topk_index, (list, tuple)):
            topk_index = torch.cat([t.detach().cpu() for t in topk_index], dim=0)
        indptr, indices = eval_loader.eval_items_per_user
        hits = topk_hits(topk_index, indptr, indices, eval_loader.n_items)
        return metrics_from_hits(hits, np.diff(indptr), self.topk, self.metrics)
