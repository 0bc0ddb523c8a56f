"""Sparse graph propagation for BR-MRS (SPEC section 2), with torch-geometric.

LightGCN over a normalised graph ``G`` (``L`` layers, mean over layers, layer 0 included)::

    E^(0) = X,   E^(l+1) = G E^(l),   out = 1/(L+1) * sum_{l=0..L} E^(l)

Homogeneous smoothing (``G_ii`` on items, ``G_uu`` on users)::

    out = X + G^L X          (L = 0: out = X, no smoothing)

:func:`smooth_rows` gives the rows ``R`` of that result only, ``X[R] + G[R] (G^{L-1} X)``,
which a training step needs for its batch users: the last product touches only the rows
of ``G`` in ``R`` (:func:`csr_rows`), not the whole graph.

The graph is an argument (a torch sparse CSR or COO tensor, or a scipy sparse matrix that
is converted with :func:`to_torch_sparse`). Products use ``torch_geometric.utils.spmm``
with ``reduce='sum'``, which runs on CPU and CUDA without pyg-lib, torch-scatter or
torch-sparse; on CPU, a CSR product goes to the reduction kernel that PyG contributed to
torch (``torch.sparse.mm(G, X, "sum")``) instead of the MKL path ``spmm`` picks for
``'sum'`` (half the CPU time on Baby; :func:`_spmm_sum`).

``symmetric=True`` declares ``G = G^T`` (true for every graph BR-MRS builds): the backward
pass then multiplies by ``G`` itself instead of transposing a sparse CSR tensor, which is
noticeably cheaper on CPU, and :func:`lightgcn` / :func:`lightgcn_l2` run as one autograd
node (:class:`_SymmetricLightGCN`). The result and its gradient are the same.

Shapes:
    adj ``[N, N]`` sparse, x ``[N, F]`` -> ``[N, F]``.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.utils import spmm

from mmrec_plugin.utils import has_csr_sum_kernel

__all__ = ["to_torch_sparse", "channel_blocks", "csr_rows", "transpose_csr", "sparse_mm",
           "lightgcn", "lightgcn_l2", "smooth", "smooth_rows"]


def to_torch_sparse(adj, device=None) -> Tensor:
    """A scipy sparse matrix (or an ``(edge_index, edge_weight, num_nodes)`` triple) as a
    float32 torch sparse CSR tensor on ``device``."""
    if isinstance(adj, tuple):
        edge_index, edge_weight, n = adj
        ei = edge_index.detach().cpu().numpy()
        adj = sp.csr_matrix((edge_weight.detach().cpu().numpy(), (ei[0], ei[1])), shape=(n, n))
    m = sp.csr_matrix(adj, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": nothing to act on
        warnings.simplefilter("ignore", UserWarning)
        t = torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data),
            size=m.shape,
            dtype=torch.float32,
        )
        return t.to(device) if device is not None else t


def _spmm_sum(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` without autograd. On CPU with a CSR ``adj`` this is the row-parallel
    reduction kernel (``torch.sparse.mm(adj, x, "sum")``, PyG's ``spmm_reduce`` upstreamed
    into PyTorch); ``torch_geometric.utils.spmm`` sends ``reduce='sum'`` to the MKL path,
    which on top of its product copies an ``[N, F]`` tensor per call (profiled; the
    reduce kernel took half the CPU time, page faults included, on Baby). Elsewhere (CUDA, COO):
    ``torch_geometric.utils.spmm`` (also on a torch < 2.0 without the reduce kernel)."""
    if adj.layout == torch.sparse_csr and not adj.is_cuda and not x.is_cuda and has_csr_sum_kernel():
        return torch.sparse.mm(adj, x, "sum")
    return spmm(adj, x, reduce="sum")


class _CsrSpmm(torch.autograd.Function):
    """``G x`` for a sparse CSR ``G``; the gradient w.r.t. ``x`` is ``G^T g``: ``G g`` itself
    when ``G`` is symmetric, else a product with :func:`transpose_csr` (cheaper on CPU than
    autograd's own CSC-to-CSR conversion followed by the MKL product)."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor, symmetric: bool) -> Tensor:  # type: ignore[override]
        ctx.adj, ctx.symmetric = adj, symmetric
        return _spmm_sum(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        adj_t = ctx.adj if ctx.symmetric else transpose_csr(ctx.adj)
        return None, _spmm_sum(adj_t, grad.contiguous()), None


def sparse_mm(adj: Tensor, x: Tensor, symmetric: bool = False) -> Tensor:
    """``adj @ x`` (:func:`_spmm_sum`), differentiable in ``x`` (:class:`_CsrSpmm` for a CSR
    ``adj``). ``symmetric`` as in the module docstring."""
    if not x.requires_grad:
        return _spmm_sum(adj, x)
    if adj.layout == torch.sparse_csr:
        return _CsrSpmm.apply(adj, x, symmetric)
    return spmm(adj, x, reduce="sum")


class _SymmetricLightGCN(torch.autograd.Function):
    """``out = mean_{l=0..L} G^l x`` for a symmetric ``G``, as one autograd node, plus an
    optional ``l2 = sum_{r in rows} ||x_r||^2`` (rows may repeat).

    Forward: ``L`` sparse products, summed in place into the last one. Backward (``G = G^T``):
    ``dx = 1/(L+1) * sum_l G^l g``, by Horner's rule (``t = G t + g``, ``L`` products, in
    place), then ``dx[rows] += 2 * dl2 * x[rows]`` in place. Built from autograd pieces the
    same step allocates, zero-fills and adds several more ``[N, F]`` tensors, and a separate
    penalty on rows of ``x`` makes autograd add one more full ``[N, F]`` gradient."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor, n_layers: int, rows: Optional[Tensor]):  # type: ignore[override]
        ctx.adj, ctx.n_layers = adj, n_layers
        hs = [x]
        for _ in range(n_layers):
            hs.append(_spmm_sum(adj, hs[-1]))
        out = hs.pop()  # the last product's buffer becomes the sum
        for h in hs:
            out.add_(h)
        out.mul_(1.0 / (n_layers + 1))
        if rows is None:
            ctx.rows = None
            l2 = x.new_zeros(())
        else:
            ctx.rows = rows
            ctx.save_for_backward(x)
            l2 = x.index_select(0, rows).pow(2).sum()
        return out, l2

    @staticmethod
    def backward(ctx, grad: Tensor, grad_l2: Tensor):  # type: ignore[override]
        g = grad.contiguous()
        t = _spmm_sum(ctx.adj, g)
        t.add_(g)
        for _ in range(ctx.n_layers - 1):
            t = _spmm_sum(ctx.adj, t)
            t.add_(g)
        t.mul_(1.0 / (ctx.n_layers + 1))
        if ctx.rows is not None:
            (x,) = ctx.saved_tensors
            t.index_add_(0, ctx.rows, x.index_select(0, ctx.rows) * (2.0 * grad_l2))
        return None, t, None, None


def lightgcn(adj: Tensor, x: Tensor, n_layers: int, symmetric: bool = False) -> Tensor:
    """Mean of ``G^l x`` over ``l = 0..n_layers``.

    Args:
        adj: normalised graph ``[N, N]`` (torch sparse).
        x: layer-0 embeddings ``[N, F]``.
        n_layers: number of propagation layers (``>= 0``).
        symmetric: ``adj`` is symmetric (one autograd node with a cheaper backward).
    """
    return lightgcn_l2(adj, x, n_layers, None, symmetric)[0]


def lightgcn_l2(adj: Tensor, x: Tensor, n_layers: int, rows: Optional[Tensor],
                symmetric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """``(lightgcn(adj, x, n_layers), sum_{r in rows} ||x_r||^2)``: the LightGCN mean and
    the squared norm of rows of its input (e.g. the L2 penalty of a batch's layer-0
    embeddings), whose gradient is then added in place into the propagation's.

    Args:
        rows: LongTensor ``[R]`` (a repeated row counts once per occurrence), or None (then
            the second value is None).
        Others as in :func:`lightgcn`.
    """
    if n_layers < 0:
        raise ValueError(f"lightgcn: n_layers must be >= 0, got {n_layers}")
    if symmetric and n_layers > 0:
        out, l2 = _SymmetricLightGCN.apply(adj, x, n_layers, rows)
        return out, (l2 if rows is not None else None)
    l2 = x.index_select(0, rows).pow(2).sum() if rows is not None else None
    if n_layers == 0:
        return x, l2
    h = sparse_mm(adj, x, symmetric)
    out = x + h
    for _ in range(n_layers - 1):
        h = sparse_mm(adj, h, symmetric)
        out += h  # in place: out is not saved for backward
    return out.mul_(1.0 / (n_layers + 1)), l2


def smooth(adj: Tensor, x: Tensor, n_layers: int, symmetric: bool = False) -> Tensor:
    """``x + adj^L x`` (``x`` unchanged when ``n_layers == 0``).

    Args:
        adj: normalised homogeneous graph ``[N, N]`` (torch sparse).
        x: representations ``[N, F]``.
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
    return x + h


class _ChannelBlocks(torch.autograd.Function):
    """``[[u_t, u_v], [i_t, i_v]]`` written once into one ``[U + I, d_t + d_v]`` tensor; the
    gradients are the four blocks of the output's gradient (views, no copies)."""

    @staticmethod
    def forward(ctx, u_t: Tensor, u_v: Tensor, i_t: Tensor, i_v: Tensor) -> Tensor:  # type: ignore[override]
        n_u, d_t = u_t.shape
        out = u_t.new_empty((n_u + i_t.shape[0], d_t + u_v.shape[1]))
        out[:n_u, :d_t] = u_t
        out[:n_u, d_t:] = u_v
        out[n_u:, :d_t] = i_t
        out[n_u:, d_t:] = i_v
        ctx.n_u, ctx.d_t = n_u, d_t
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        n_u, d_t = ctx.n_u, ctx.d_t
        return grad[:n_u, :d_t], grad[:n_u, d_t:], grad[n_u:, :d_t], grad[n_u:, d_t:]


def channel_blocks(u_t: Tensor, u_v: Tensor, i_t: Tensor, i_v: Tensor) -> Tensor:
    """The two-channel layer-0 matrix ``[[u_t, u_v], [i_t, i_v]]`` (users over items, text
    channel left of visual), equal to ``torch.cat([torch.cat([u_t, u_v], 1),
    torch.cat([i_t, i_v], 1)], 0)`` without the two intermediate copies.

    Args:
        u_t, u_v: ``[U, d_t]``, ``[U, d_v]``; i_t, i_v: ``[I, d_t]``, ``[I, d_v]``.
    """
    if u_t.shape[0] != u_v.shape[0] or i_t.shape[0] != i_v.shape[0] \
            or u_t.shape[1] != i_t.shape[1] or u_v.shape[1] != i_v.shape[1]:
        raise ValueError(
            f"channel_blocks: block shapes do not fit: {tuple(u_t.shape)}, {tuple(u_v.shape)}, "
            f"{tuple(i_t.shape)}, {tuple(i_v.shape)}"
        )
    return _ChannelBlocks.apply(u_t, u_v, i_t, i_v)


def _csr(crow: Tensor, col: Tensor, val: Tensor, shape) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=tuple(shape), dtype=val.dtype, device=val.device)


def csr_rows(adj: Tensor, rows: Tensor, add_self: bool = False) -> Tensor:
    """The rows ``rows`` (LongTensor ``[R]``, repeats allowed) of a torch sparse CSR matrix
    ``[N, M]`` as a sparse CSR ``[R, M]``, gathered with vectorised index arithmetic on
    ``adj``'s device. ``add_self``: the rows of ``I + adj`` instead (``N == M``; each row
    ``r`` gets one more entry, ``(r, rows[r]) = 1``, stored first in the row)."""
    crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
    dev = crow.device
    rows = rows.to(dev).long()
    start = crow[rows]
    counts = crow[rows + 1] - start
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    row_of = torch.repeat_interleave(torch.arange(rows.numel(), device=dev), counts, output_size=total)
    idx = start[row_of] + torch.arange(total, device=dev) - (ends - counts)[row_of]
    new_crow = torch.cat([ends.new_zeros(1), ends])
    if not add_self:
        return _csr(new_crow, col[idx], val[idx], (rows.numel(), adj.shape[1]))
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"csr_rows: add_self needs a square matrix, got {tuple(adj.shape)}")
    r = rows.numel()
    new_crow = new_crow + torch.arange(r + 1, device=dev)
    col2 = torch.empty(total + r, dtype=col.dtype, device=dev)
    val2 = torch.empty(total + r, dtype=val.dtype, device=dev)
    diag = new_crow[:-1]
    col2[diag] = rows.to(col.dtype)
    val2[diag] = 1.0
    moved = torch.arange(total, device=dev) + row_of + 1
    col2[moved] = col[idx]
    val2[moved] = val[idx]
    return _csr(new_crow, col2, val2, (r, adj.shape[1]))


def transpose_csr(m: Tensor) -> Tensor:
    """``m^T`` of a torch sparse CSR ``[R, M]`` as a sparse CSR ``[M, R]`` (entries of a row
    in increasing column order), by one stable sort of the column indices."""
    crow, col, val = m.crow_indices(), m.col_indices(), m.values()
    n_rows, n_cols = m.shape
    dev = crow.device
    row_of = torch.repeat_interleave(torch.arange(n_rows, device=dev), crow[1:] - crow[:-1],
                                     output_size=col.numel())
    # int32 keys sort about 2x faster than int64 on CPU
    key = col.to(torch.int32) if n_cols < 2**31 - 1 else col
    order = torch.argsort(key, stable=True)
    new_crow = torch.zeros(n_cols + 1, dtype=crow.dtype, device=dev)
    torch.cumsum(torch.bincount(col, minlength=n_cols), 0, out=new_crow[1:])
    return _csr(new_crow, row_of[order], val[order], (n_cols, n_rows))


def smooth_rows(adj: Tensor, x: Tensor, n_layers: int, rows: Tensor, symmetric: bool = False) -> Tensor:
    """``(x + adj^L x)[rows]`` without propagating the rows that are not asked for in the
    last layer.

    For ``L = 1`` this is one product with the rows of ``I + adj``, so the backward pass
    is one sparse product too (no separate gather of ``x[rows]`` whose gradient would be a
    zero-filled ``[N, F]`` tensor).

    Args:
        adj: normalised homogeneous graph ``[N, N]`` (torch sparse CSR).
        x: representations ``[N, F]``.
        n_layers: ``L >= 0``.
        rows: LongTensor ``[R]``.
        symmetric: ``adj`` is symmetric (cheaper backward in the full layers).

    Returns:
        ``[R, F]``.
    """
    if n_layers < 0:
        raise ValueError(f"smooth_rows: n_layers must be >= 0, got {n_layers}")
    if n_layers == 0:
        return x.index_select(0, rows)
    if n_layers == 1:
        return sparse_mm(csr_rows(adj, rows, add_self=True), x)
    h = x
    for _ in range(n_layers - 1):
        h = sparse_mm(adj, h, symmetric)
    return x.index_select(0, rows) + sparse_mm(csr_rows(adj, rows), h)
