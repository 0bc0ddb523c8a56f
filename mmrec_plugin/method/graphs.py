"""The block-wise top-k homogeneous graphs of BR-MRS (item-item, user-user; docs/METHOD.md,
"Graphs"). The user-item graph ``G_ui`` is :func:`mmrec_plugin.sparse.bipartite_csr`.

Homogeneous graph (``G_ii`` or ``G_uu``). For entities ``a, b`` (items, or users) with
interaction sets ``N_a, N_b`` (the rows of ``inter_rows``) and modality vectors
``x_a^(m)``::

    e_ab = alpha * overlap(N_a, N_b) + (1 - alpha) * sum_m beta_m * cos(x_a^(m), x_b^(m))
    overlap(A, B) = |A ∩ B| / sqrt(|A| |B|)      (0 when either set is empty)
    cos(x, y)     = <x, y> / (|x| |y|)           (0 when either vector is zero)

Per row ``a`` the ``k`` largest ``e_ab`` with ``b != a`` are kept, then only the positive
ones among them (a non-positive weight is no evidence of similarity, and it would break the
degree normalisation). The kept matrix ``K`` is symmetrised element-wise,
``S = max(K, K^T)`` (an edge kept by either endpoint, with its weight), and normalised
``D^-1/2 S D^-1/2`` with ``D = diag(S 1)`` (isolated rows stay zero).

Similarities are computed in row blocks of ``block_size`` rows: at most one dense
``block_size x n_entities`` float32 array per term is alive at a time, never an
``n_entities x n_entities`` one.

For users the modality vector is the mean of the features of their training items
(:func:`user_profiles`, a sparse row-normalised ``R @ X``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from mmrec_plugin.sparse import binarize, sym_normalize
from mmrec_plugin.neighbours import topk_per_row, unit_rows

__all__ = ["user_profiles", "knn_homogeneous"]


def user_profiles(inter, feats: np.ndarray) -> np.ndarray:
    """Mean of the features of each user's training items, ``[n_users, d]`` float32
    (a zero row for a user without training items)."""
    r = binarize(inter)
    deg = np.asarray(r.sum(axis=1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = 1.0 / deg[deg > 0]
    r = sp.diags(inv) @ r
    return np.asarray(r @ np.asarray(feats, dtype=np.float32), dtype=np.float32)


def knn_homogeneous(
    inter_rows,
    feats: Sequence[np.ndarray],
    modality_weights: Sequence[float],
    co_weight: float,
    k: int,
    block_size: int = 2048,
) -> sp.csr_matrix:
    """Block-wise top-k homogeneous graph (see the module docstring for the math).

    Args:
        inter_rows: scipy sparse ``(n_entities, n_other)``: row ``a`` is the interaction set
            ``N_a`` (items: the transposed training matrix; users: the training matrix).
        feats: one ``[n_entities, d_m]`` array per modality.
        modality_weights: ``beta_m``, one per entry of ``feats``.
        co_weight: ``alpha`` in ``[0, 1]``, the weight of the co-interaction overlap.
        k: number of neighbours kept per row (``>= 1``; self excluded).
        block_size: rows per block (default 2048).

    Returns:
        scipy CSR ``(n_entities, n_entities)``, symmetric, normalised ``D^-1/2 S D^-1/2``.
    """
    b = binarize(inter_rows)
    n = b.shape[0]
    feats = [np.asarray(f) for f in feats]
    if len(feats) != len(modality_weights):
        raise ValueError(
            f"knn_homogeneous: {len(feats)} feature arrays but {len(modality_weights)} modality weights"
        )
    for f in feats:
        if f.ndim != 2 or f.shape[0] != n:
            raise ValueError(f"knn_homogeneous: features of shape {f.shape}, expected ({n}, d)")
    if k < 1:
        raise ValueError(f"knn_homogeneous: k must be >= 1, got {k}")
    if block_size < 1:
        raise ValueError(f"knn_homogeneous: block_size must be >= 1, got {block_size}")
    kk = min(k, n - 1)
    if kk <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)

    alpha = float(co_weight)
    units = [unit_rows(f) for f in feats]
    betas = [(1.0 - alpha) * float(w) for w in modality_weights]
    deg = np.asarray(b.sum(axis=1), dtype=np.float32).ravel()
    inv_sqrt = np.zeros(n, dtype=np.float32)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    bt = sp.csr_matrix(b.T)

    def block_scores(start: int, stop: int) -> np.ndarray:
        e = np.zeros((stop - start, n), dtype=np.float32)
        for u, beta in zip(units, betas):
            if beta != 0.0:
                e += beta * (u[start:stop] @ u.T)
        if alpha != 0.0:
            co = (b[start:stop] @ bt).tocoo()  # |N_a ∩ N_b|, sparse
            e[co.row, co.col] += (
                alpha * co.data.astype(np.float32) * inv_sqrt[start + co.row] * inv_sqrt[co.col]
            )
        return e

    rows, cols, vals = topk_per_row(n, kk, block_scores, block_size, exclude_self=True)
    keep = vals > 0
    knn = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    return sym_normalize(knn.maximum(knn.T))
