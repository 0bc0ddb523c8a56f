"""BR-MRS propagation on top of :mod:`mmrec_plugin.sparse` (docs/METHOD.md, "Backbone").

LightGCN over ``G_ui`` is :func:`mmrec_plugin.sparse.lightgcn_l2`. Here:

Homogeneous smoothing (``G_ii`` on items, ``G_uu`` on users)::

    out = X + G^L X          (L = 0: out = X, no smoothing)

:func:`smooth_rows` gives the rows ``R`` of that result only, ``X[R] + G[R] (G^{L-1} X)``,
which a training step needs for its batch users: the last product touches only the rows
of ``G`` in ``R`` (:func:`~mmrec_plugin.sparse.csr_rows`), not the whole graph.

:func:`channel_blocks` writes the layer-0 matrix of M modality channels once: users over
items, channel ``m`` in columns ``m*d .. (m+1)*d``. All channels then propagate together
(propagation is linear and column-wise, so one ``[N, M d]`` pass equals M separate ones).

Shapes:
    adj ``[N, N]`` sparse, x ``[N, F]`` -> ``[N, F]``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mmrec_plugin.sparse import csr_rows, sparse_mm

__all__ = ["channel_blocks", "smooth", "smooth_rows"]


def smooth(adj: Tensor, x: Tensor, n_layers: int, symmetric: bool = False) -> Tensor:
    """``x + adj^L x`` (``x`` unchanged when ``n_layers == 0``).

    Args:
        adj: normalised homogeneous graph ``[N, N]`` (torch sparse).
        x: representations ``[N, F]``, or a sequence of column blocks ``[N, F_k]`` (then a
            list of the blocks' results).
        n_layers: ``L >= 0``.
        symmetric: ``adj`` is symmetric (cheaper backward).
    """
    if n_layers < 0:
        raise ValueError(f"smooth: n_layers must be >= 0, got {n_layers}")
    if n_layers == 0:
        return x
    h = x
    for _ in range(n_layers):
        h = sparse_mm(adj, h, symmetric)
    return x + h if torch.is_tensor(x) else [a + b for a, b in zip(x, h)]


class _ChannelBlocks(torch.autograd.Function):
    """``[[u_1 .. u_M], [i_1 .. i_M]]`` written once into one ``[U + I, sum d_m]`` tensor;
    the gradients are the blocks of the output's gradient (views, no copies)."""

    @staticmethod
    def forward(ctx, n_ch: int, *blocks: Tensor) -> Tensor:  # type: ignore[override]
        users, items = blocks[:n_ch], blocks[n_ch:]
        n_u = users[0].shape[0]
        widths = [u.shape[1] for u in users]
        out = users[0].new_empty((n_u + items[0].shape[0], sum(widths)))
        col = 0
        for u, i, w in zip(users, items, widths):
            out[:n_u, col:col + w] = u
            out[n_u:, col:col + w] = i
            col += w
        ctx.n_u, ctx.widths = n_u, widths
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        n_u = ctx.n_u
        cols = grad.split(ctx.widths, dim=1)
        return (None, *(c[:n_u] for c in cols), *(c[n_u:] for c in cols))


def channel_blocks(users: Sequence[Tensor], items: Sequence[Tensor]) -> Tensor:
    """The M-channel layer-0 matrix: ``torch.cat([torch.cat(users, 1), torch.cat(items, 1)], 0)``
    without the intermediate copies.

    Args:
        users: M tensors ``[U, d_m]``; items: M tensors ``[I, d_m]`` (same order).
    """
    users, items = list(users), list(items)
    ok = len(users) == len(items) and len(users) >= 1
    if ok:
        ok = all(u.shape[0] == users[0].shape[0] for u in users) and \
            all(i.shape[0] == items[0].shape[0] for i in items) and \
            all(u.shape[1] == i.shape[1] for u, i in zip(users, items))
    if not ok:
        raise ValueError(
            f"channel_blocks: block shapes do not fit: users {[tuple(u.shape) for u in users]}, "
            f"items {[tuple(i.shape) for i in items]}"
        )
    return _ChannelBlocks.apply(len(users), *users, *items)


def smooth_rows(adj: Tensor, x: Tensor, n_layers: int, rows: Tensor, symmetric: bool = False) -> Tensor:
    """``(x + adj^L x)[rows]`` without propagating the rows that are not asked for in the
    last layer.

    For ``L = 1`` this is one product with the rows of ``I + adj``, so the backward pass
    is one sparse product too (no separate gather of ``x[rows]`` whose gradient would be a
    zero-filled ``[N, F]`` tensor).

    Args:
        adj: normalised homogeneous graph ``[N, N]`` (torch sparse CSR).
        x: representations ``[N, F]``, or a sequence of column blocks ``[N, F_k]`` (then a
            list of results; the rows of ``adj`` are gathered, and in the backward pass
            transposed, once for all blocks).
        n_layers: ``L >= 0``.
        rows: LongTensor ``[R]``.
        symmetric: ``adj`` is symmetric (cheaper backward in the full layers).

    Returns:
        ``[R, F]``.
    """
    if n_layers < 0:
        raise ValueError(f"smooth_rows: n_layers must be >= 0, got {n_layers}")
    if n_layers == 0:
        return x.index_select(0, rows) if torch.is_tensor(x) else [t.index_select(0, rows) for t in x]
    if n_layers == 1:
        return sparse_mm(csr_rows(adj, rows, add_self=True), x)
    h = x
    for _ in range(n_layers - 1):
        h = sparse_mm(adj, h, symmetric)
    last = sparse_mm(csr_rows(adj, rows), h)
    if torch.is_tensor(x):
        return x.index_select(0, rows) + last
    return [t.index_select(0, rows) + lt for t, lt in zip(x, last)]
