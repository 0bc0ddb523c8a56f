"""Graph building blocks shared by the host's models and BR-MRS (the floor: torch, numpy and
scipy only). The one implementation FREEDOM's and BR-MRS's graphs use:

- :func:`unit_rows`, :func:`topk_per_row`: the ``k`` largest entries of each row of a score
  matrix computed in row blocks (never a dense ``n x n`` array);
- :func:`empty_columns`, :func:`zero_rows`: the items without a training interaction and an id
  table with their rows zeroed, so that such items (cold-start items) are scored from content
  and not from id vectors that training never fitted;
- :func:`degree_weights`, :func:`prune_edges`: degree-sensitive edge pruning (FREEDOM, Zhou &
  Shen 2023): ``floor((1 - dropout) |E|)`` edges drawn without replacement with probability
  proportional to ``1 / sqrt(d_u d_i)``.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["unit_rows", "topk_per_row", "degree_weights", "prune_edges", "empty_columns", "zero_rows"]


def unit_rows(x) -> np.ndarray:
    """The rows of ``x`` scaled to unit length, float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    return x / norm


def topk_per_row(n_rows: int, k: int, block_scores: Callable[[int, int], np.ndarray],
                 block_size: int, exclude_self: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of an ``[n_rows, n_cols]`` score matrix, in no
    particular order within a row, computed ``block_size`` rows at a time.

    Args:
        n_rows: rows of the matrix.
        k: entries kept per row (``1 <= k <= n_cols``, minus one with ``exclude_self``).
        block_scores: ``(start, stop) -> [stop - start, n_cols]`` float32 scores of those rows
            (a fresh array: it may be changed in place).
        block_size: rows scored at once (at most one block is alive).
        exclude_self: the diagonal ``(r, r)`` is never kept (square matrices).

    Returns:
        ``(rows, cols, values)``, each of length ``n_rows * k``, row ``r`` repeated ``k`` times.
    """
    rows, cols, vals = [], [], []
    for start in range(0, n_rows, block_size):
        stop = min(start + block_size, n_rows)
        e = block_scores(start, stop)
        if exclude_self:
            local = np.arange(stop - start)
            e[local, start + local] = -np.inf
        top = np.argpartition(-e, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(top.ravel())
        vals.append(np.take_along_axis(e, top, axis=1).ravel())
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def degree_weights(inter, dtype=np.float64) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, w)`` of the interactions of a binary scipy matrix ``inter`` (its COO
    order), with ``w = 1 / sqrt(d_u d_i)`` (training degrees) computed in ``dtype``."""
    coo = sp.coo_matrix(inter)
    d_u = np.bincount(coo.row, minlength=inter.shape[0]).astype(dtype)
    d_i = np.bincount(coo.col, minlength=inter.shape[1]).astype(dtype)
    return coo.row, coo.col, 1.0 / np.sqrt(d_u[coo.row] * d_i[coo.col])


def prune_edges(weights: Tensor, dropout: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices of the edges kept by degree-sensitive pruning: ``floor((1 - dropout) E)`` of
    the ``E`` edges drawn without replacement with probability proportional to ``weights``
    (:func:`degree_weights`); all indices, in order, when nothing is pruned."""
    n_keep = int(weights.numel() * (1.0 - dropout))
    if n_keep >= weights.numel():
        return torch.arange(weights.numel(), device=weights.device)
    return torch.multinomial(weights, n_keep, replacement=False, generator=generator)


def empty_columns(inter) -> np.ndarray:
    """Indices of the columns (items) of a scipy matrix without a nonzero entry."""
    m = sp.csc_matrix(inter)
    m.eliminate_zeros()
    return np.flatnonzero(np.diff(m.indptr) == 0)


def zero_rows(weight: Tensor, rows: Optional[Tensor]) -> Tensor:
    """``weight`` with the rows ``rows`` set to zero (differentiable; their gradient is zero);
    ``weight`` itself when ``rows`` is None or empty."""
    if rows is None or rows.numel() == 0:
        return weight
    return weight.index_fill(0, rows, 0.0)
