"""Choosing the homogeneous graphs' weights by an inner validation (``modality_weights: auto``).

A modality whose features carry no signal about what users like must not shape the item and
user graphs. Fixed weights (Baby's ``beta_t = 0.9``) cannot know that, so ``auto`` measures
it on the training data alone (a model sees only the training interactions, in MMRec too):

1. :func:`holdout_split`: per user, a random ``frac`` of the training items (at least one
   for a user with two or more) is held out as probe targets; the rest is the probe's
   training matrix ``R'``.
2. For each candidate ``(alpha, beta)`` the item graph ``G`` is built from ``R'`` exactly as
   the model builds ``G_ii`` (:func:`~mmrec_plugin.method.graphs.knn_homogeneous`), and
   scored by item-kNN recommendation: ``scores = R' G``, training items masked, Recall@K of
   the held-out targets (:func:`knn_probe_recall`).
3. The candidate with the highest probe recall wins (ties: the earlier candidate).

Candidates (:func:`weight_candidates`): ``alpha`` (the co-interaction weight) in
``alphas``, and per ``alpha < 1`` the modality weights on a grid of the simplex (step
``1 / steps``); ``alpha = 1`` is the co-interaction graph alone. The item graph's kNN build
costs about a second per candidate on Baby (7k items).
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from mmrec_plugin.method.graphs import binarize, knn_homogeneous

__all__ = ["holdout_split", "knn_probe_recall", "weight_candidates", "choose_graph_weights",
           "cached_graph_weights"]


def holdout_split(inter, frac: float = 0.1, seed: int = 0) -> Tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(R', H)``: the training matrix without, and with only, the held-out pairs.

    Per user with ``n >= 2`` training items, ``max(1, floor(frac * n))`` of them (uniformly at
    random) are held out; users with one item keep it. Vectorised: one random key per pair,
    ranked within its row.
    """
    r = binarize(inter)
    n_rows = r.shape[0]
    counts = np.diff(r.indptr)
    rows = np.repeat(np.arange(n_rows), counts)
    keys = np.random.default_rng(seed).random(r.nnz)
    order = np.lexsort((keys, rows))  # by row, then random key
    rank = np.empty(r.nnz, dtype=np.int64)
    rank[order] = np.arange(r.nnz) - np.repeat(r.indptr[:-1], counts)[order]
    n_out = np.where(counts >= 2, np.maximum(1, np.floor(frac * counts)).astype(np.int64), 0)
    held = rank < n_out[rows]
    shape = r.shape
    keep = sp.csr_matrix((r.data[~held], (rows[~held], r.indices[~held])), shape=shape)
    out = sp.csr_matrix((r.data[held], (rows[held], r.indices[held])), shape=shape)
    return keep, out


def knn_probe_recall(train, graph, targets, k: int = 20, block_size: int = 1024) -> float:
    """Recall@``k`` of item-kNN scores ``train @ graph`` (training items masked) for the users
    with targets: ``mean_u |top_k(u) ∩ T_u| / |T_u|``. Dense ``block_size x n_items`` blocks."""
    train = sp.csr_matrix(train, dtype=np.float32)
    graph = sp.csr_matrix(graph, dtype=np.float32)
    targets = binarize(targets)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    n_items = train.shape[1]
    kk = min(k, n_items)
    total = 0.0
    for start in range(0, users.size, block_size):
        u = users[start:start + block_size]
        s = np.asarray((train[u] @ graph).todense(), dtype=np.float32)
        s += np.random.default_rng(start).random(s.shape, dtype=np.float32) * 1e-6  # ties: random
        t = train[u].tocoo()
        s[t.row, t.col] = -np.inf
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        hit = np.asarray(targets[u].todense(), dtype=bool)
        hits = np.take_along_axis(hit, top, axis=1).sum(axis=1)
        total += float((hits / hit.sum(axis=1)).sum())
    return total / max(users.size, 1)


def weight_candidates(n_modalities: int, alphas: Sequence[float] = (0.0, 0.2, 0.5, 1.0),
                      steps: int = 4) -> List[Tuple[float, Tuple[float, ...]]]:
    """``[(alpha, betas), ...]``: every ``alpha`` with every point of the simplex grid
    ``betas in {0, 1/steps, ..., 1}^M, sum = 1`` (only ``alpha = 1`` takes a single, unused,
    uniform ``betas``)."""
    grid = [b for b in itertools.product(range(steps + 1), repeat=n_modalities) if sum(b) == steps]
    out = []
    for a in alphas:
        if a >= 1.0:
            out.append((1.0, tuple([1.0 / n_modalities] * n_modalities)))
        else:
            out.extend((float(a), tuple(x / steps for x in b)) for b in grid)
    return out


def choose_graph_weights(inter, feats: Sequence[np.ndarray], k: int,
                         candidates: Sequence[Tuple[float, Sequence[float]]],
                         frac: float = 0.1, seed: int = 0, top_k: int = 20,
                         block_size: int = 2048) -> Tuple[Tuple[float, Tuple[float, ...]], List[Dict]]:
    """The candidate ``(alpha, betas)`` whose item graph (``k`` neighbours) gives the highest
    probe Recall@``top_k``, and every candidate's score (module docstring).

    Args:
        inter: the training matrix ``(n_users, n_items)``.
        feats: one ``[n_items, d_m]`` array per modality (the order of ``betas``).
    """
    train, targets = holdout_split(inter, frac, seed)
    item_rows = sp.csr_matrix(train.T)
    scores = []
    best, best_recall = None, -1.0
    for alpha, betas in candidates:
        g = knn_homogeneous(item_rows, feats, list(betas), alpha, k, block_size)
        recall = knn_probe_recall(train, g, targets, top_k)
        scores.append({"alpha": alpha, "betas": list(betas), "recall": recall})
        if recall > best_recall:
            best, best_recall = (alpha, tuple(betas)), recall
    return best, scores


def cached_graph_weights(path, inter, feats: Sequence[np.ndarray], k: int,
                         candidates: Sequence[Tuple[float, Sequence[float]]],
                         frac: float = 0.1, seed: int = 0) -> Tuple[Tuple[float, Tuple[float, ...]], List[Dict]]:
    """:func:`choose_graph_weights` through the graph cache at ``path`` (``None``: no cache),
    keyed by every input; an unusable cache only costs the probe."""
    from mmrec_plugin.method.cache import CODE_VERSION
    from mmrec_plugin.store import Store, digest

    rows = binarize(inter)
    feats = [np.ascontiguousarray(np.asarray(f, dtype=np.float32)) for f in feats]
    cands = [(float(a), tuple(float(b) for b in bs)) for a, bs in candidates]
    key = "probe/" + digest(CODE_VERSION, "probe-1", rows, feats, int(k), [list(c) for c in cands],
                            float(frac), int(seed))
    store = None
    if path is not None:
        try:
            store = Store(path)
            hit = store.get_json(key)
            if hit is not None:
                return (float(hit["best"][0]), tuple(hit["best"][1])), hit["scores"]
        except Exception:  # unusable cache: probe without it
            store = None
    try:
        best, scores = choose_graph_weights(rows, feats, k, cands, frac, seed)
        if store is not None:
            try:
                store.put_json(key, {"best": [best[0], list(best[1])], "scores": scores})
            except Exception:
                pass
        return best, scores
    finally:
        if store is not None:
            store.close()
