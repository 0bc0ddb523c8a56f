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

Full ranking needs the ``K`` best items of every row of a ``[B, n]`` score block.
:func:`topk_rows` computes exactly what ``torch.topk(scores, K, dim=1)`` gives, cheaper on
CPU, in two stages with chunks of ``c ~ sqrt(n / K)`` contiguous columns:

1. ``cmax[b, j] = max(scores[b, j*c:(j+1)*c])`` (one ``max_pool1d`` pass) and the ``K``
   chunks with the largest maxima, ``S_b``. Let ``tau_b = min_{j in S_b} cmax[b, j]``.
   Every column outside ``S_b`` (and outside the ``n mod c`` tail columns, which are always
   kept) scores ``<= tau_b``, while ``S_b`` holds ``K`` columns scoring ``>= tau_b`` (its
   maxima); so the ``K`` largest values of the row are the ``K`` largest among the
   ``K*c (+ tail)`` candidate columns.
2. an exact selection among the candidates, then a sort of the ``K`` winners.

Values equal ``torch.topk``'s exactly (sorted descending); among tied values the indices may
differ. CUDA tensors, other dtypes, small ``n``, NaN and rows whose ``K``-th value is ``-inf``
use ``torch.topk``.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Union

import math

import numpy as np
import torch
import torch.nn.functional as F

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


_BLOCK_ELEMS = 1 << 23  # topk_rows works on row blocks of about this many scores


def topk_rows(scores: torch.Tensor, k: int):
    """``(values, indices)`` of the ``k`` largest entries of each row of ``scores`` ``[B, n]``.

    Same as ``torch.topk(scores, k, dim=1)`` (values sorted descending, exactly equal; ties may
    pick or order other indices of the same value), two-stage on CPU (see the module
    docstring). No autograd through the values. ``k > n`` raises like ``torch.topk``.
    """
    if scores.dim() != 2:
        raise ValueError(f"topk_rows expects a [B, n] score matrix, got shape {tuple(scores.shape)}")
    k = int(k)
    b, n = scores.shape
    c = int(round(math.sqrt(n / k))) if 0 < k <= n else 0
    if (scores.is_cuda or c < 2 or n // c < 2 * k or b == 0
            or scores.dtype not in (torch.float32, torch.float64) or scores.device.type != "cpu"):
        return torch.topk(scores, k, dim=1)
    x = scores.detach().contiguous()
    # single-threaded, row blocks are ~5% faster (smaller temporaries); with several threads
    # the extra parallel calls cost more than that on a loaded machine (measured: 2x slower)
    step = max(1, _BLOCK_ELEMS // n) if torch.get_num_threads() == 1 else b
    if step >= b:
        return _topk_block(x, k, c)
    parts = [_topk_block(x[i:i + step], k, c) for i in range(0, b, step)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _topk_block(x: torch.Tensor, k: int, c: int):
    """:func:`topk_rows` on a contiguous CPU float block ``[b, n]``, chunks of ``c`` columns."""
    b, n = x.shape
    m = n // c
    # stage 1: chunk maxima and the k chunks with the largest ones
    cmax = F.max_pool1d(x.unsqueeze(1), c, c).squeeze(1).numpy()  # [B, m]
    chunks = np.ascontiguousarray(np.argpartition(cmax, m - k, axis=1)[:, m - k:])  # [B, k]
    # candidates: the columns of those chunks, plus a last window [n - c, n) for the tail
    r = n - m * c
    w = k + (1 if r else 0)
    starts = np.empty((b, w), dtype=np.int64)
    np.multiply(chunks, c, out=starts[:, :k])
    if r:
        starts[:, k] = n - c
    starts += np.arange(0, b * n, n, dtype=np.int64)[:, None]
    windows = x.view(-1).as_strided((b * n - c + 1, c), (1, 1))  # row i = flat[i:i+c]
    cand = windows.index_select(0, torch.from_numpy(starts.reshape(-1))).numpy().reshape(b, w * c)
    if r:  # the tail window's first c - r columns belong to chunk m - 1: not candidates twice
        cand[:, k * c:k * c + c - r] = -np.inf
    # stage 2: the k best candidates, sorted descending
    width = w * c
    pos = np.argpartition(cand, width - k, axis=1)[:, width - k:]
    pos = pos + np.arange(0, b * width, width, dtype=np.int64)[:, None]  # flat positions
    vals = cand.reshape(-1)[pos]
    order = np.argsort(vals, axis=1)[:, ::-1] + np.arange(0, b * k, k, dtype=np.int64)[:, None]
    vals = vals.reshape(-1)[order]  # [b, k], descending
    if np.isnan(vals).any() or (vals[:, -1] == -np.inf).any():
        return torch.topk(x, k, dim=1)  # torch's NaN order; -inf ties with the fillers
    pos = pos.reshape(-1)[order] - np.arange(0, b * width, width, dtype=np.int64)[:, None]
    slot = pos // c
    row_k = np.arange(0, b * k, k, dtype=np.int64)[:, None]
    cols = chunks.reshape(-1)[np.minimum(slot, k - 1) + row_k]
    cols = cols * c + (pos - slot * c)
    if r:
        cols = np.where(slot < k, cols, pos - k * c + (n - c))
    return torch.from_numpy(vals), torch.from_numpy(cols)


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``LongTensor[B, k]``: the columns of each row's ``k`` largest scores, best first.

    Equals ``torch.topk(scores, k, dim=1).indices`` up to the order of tied scores; see
    :func:`topk_rows`.
    """
    return topk_rows(scores, k)[1]


#: the score that masks an item out of a ranking (the trainer's and MMRec's value)
MASKED = -1e10


def rank_batch(model, batch, k: int, with_scores: bool = False):
    """``LongTensor[B, k]`` (CPU): the ``k`` best items of each user of an evaluation batch
    ``[users, mask]`` under ``model.full_sort_predict``, with the ``mask`` (row, item) pairs
    set to :data:`MASKED` first (with ``with_scores``: also their scores, ``[B, k]``). The one
    ranking rule: evaluation, per-user analysis and recommendations all call it."""
    scores = model.full_sort_predict(batch)
    mask = batch[1]
    scores[mask[0], mask[1]] = MASKED
    values, top = topk_rows(scores, min(int(k), scores.shape[1]))
    if with_scores:
        return top.cpu(), values.detach().float().cpu()
    return top.cpu()


def rank_loader(model, eval_loader, k: int):
    """:func:`rank_batch` over every batch of ``eval_loader``: ``LongTensor[N, k]`` rows in
    ``eval_loader.eval_users`` order, or None for a loader without users. Call under
    ``torch.no_grad()`` with the model in eval mode."""
    tops = [rank_batch(model, batch, k) for batch in eval_loader]
    return torch.cat(tops, dim=0) if tops else None


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


def per_user_metrics(
    hits: np.ndarray,
    n_targets: np.ndarray,
    topk: Sequence[int],
    metrics: Iterable[str],
) -> Dict[str, np.ndarray]:
    """Each evaluated user's metrics from a hits matrix (see the module docstring).

    Args:
        hits: bool ``[N, maxK]``, ``hits[u, i]`` = the item at rank ``i + 1`` is relevant.
        n_targets: ``[N]`` the ground-truth sizes ``|T_u|`` (all >= 1).
        topk: cut-offs, each <= ``maxK``.
        metrics: names among Recall, NDCG, Precision, MAP.

    Returns:
        ``{'recall@10': float64[N], ...}`` (keys ``<metric>@<K>``, lower-case), in the order
        metrics x topk; :func:`metrics_from_hits` is their mean.
    """
    metrics = check_metrics(metrics)
    topk = check_topk(topk)
    hits = np.asarray(hits, dtype=bool)
    n_targets = np.asarray(n_targets, dtype=np.float64)
    n, max_k = hits.shape
    if max(topk) > max_k:
        raise ValueError(f"topk {max(topk)} exceeds the {max_k} ranked items given")
    if n and (n_targets <= 0).any():
        raise ValueError("every evaluated user needs at least one ground-truth item")
    rel = hits.astype(np.float64)
    ranks = np.arange(1, max_k + 1, dtype=np.float64)
    cum_hits = np.cumsum(rel, axis=1)  # hits@i
    out: Dict[str, np.ndarray] = {}
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
            out[f"{m}@{k}"] = v
    return out


def _means(per_user: Dict[str, np.ndarray]) -> Dict[str, float]:
    return {key: float(v.mean()) if len(v) else 0.0 for key, v in per_user.items()}


def metrics_from_hits(
    hits: np.ndarray,
    n_targets: np.ndarray,
    topk: Sequence[int],
    metrics: Iterable[str],
) -> Dict[str, float]:
    """Average metrics over users from a hits matrix: the mean of :func:`per_user_metrics`
    (same arguments); 0.0 for every key when no user is evaluated.

    Returns:
        ``{'recall@10': ..., ...}`` (keys ``<metric>@<K>``, lower-case), in the order
        metrics x topk.
    """
    return _means(per_user_metrics(hits, n_targets, topk, metrics))


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
        return _means(self.evaluate_per_user(topk_index, eval_loader))

    def evaluate_per_user(self, topk_index, eval_loader) -> Dict[str, np.ndarray]:
        """Like :meth:`evaluate`, but each user's values (``float64[N]`` per key, rows in
        ``eval_loader.eval_users`` order), whose means are :meth:`evaluate`'s result."""
        if isinstance(topk_index, (list, tuple)):
            topk_index = torch.cat([t.detach().cpu() for t in topk_index], dim=0)
        indptr, indices = eval_loader.eval_items_per_user
        hits = topk_hits(topk_index, indptr, indices, eval_loader.n_items)
        return per_user_metrics(hits, np.diff(indptr), self.topk, self.metrics)
