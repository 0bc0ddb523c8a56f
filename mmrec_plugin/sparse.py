"""Sparse kernels shared by the host's models and the method (the bottom floor: it imports
nothing from the rest of the package but :mod:`mmrec_plugin.utils`-free torch / scipy).

Graphs:

- :func:`binarize`, :func:`sym_normalize` (``D^-1/2 A D^-1/2``), :func:`bipartite_csr`: the
  LightGCN graph over ``n_users + n_items`` nodes (users first, item ``i`` is node
  ``n_users + i``), ``A = [[0, R], [R^T, 0]]``, edge ``(u, i)`` weighted ``1/sqrt(|O_u| |N_i|)``;
- :func:`to_torch_csr`: a scipy matrix as a float32 torch sparse CSR tensor.

Products (``adj [N, M]`` sparse CSR, ``x [M, F]`` dense):

- :func:`sparse_mm` ``adj @ x``, differentiable in ``x``. On CPU a CSR product runs MKL
  into an uninitialised output (``torch.addmm(out, adj, x, beta=0, out=out)``: no zero-fill,
  no copy; 1.5x faster than the reduction kernel on Baby's graphs) for the column counts
  where a probe finds it equal bit for bit to torch's row-parallel reduction kernel
  (``torch.sparse.mm(adj, x, "sum")``, torch >= 2.0), which runs otherwise (the path
  ``torch_geometric.utils.spmm`` takes for ``'sum'`` copies an ``[N, F]`` tensor per call
  and took twice the CPU time on Baby); elsewhere ``torch_geometric.utils.spmm``.
  ``symmetric=True`` declares ``adj = adj^T``: the backward multiplies by ``adj`` itself
  instead of a transpose (:func:`transpose_csr`, one stable sort);
- :func:`lightgcn` / :func:`lightgcn_l2`: ``mean_{l=0..L} G^l x``, for a symmetric ``G`` one
  autograd node whose backward runs Horner's rule in place, optionally with the squared norm
  of some input rows (a batch's L2 penalty) folded into it;
- :func:`csr_rows`: rows of a CSR matrix (optionally of ``I + adj``);
- :func:`pair_scores`: ``<u_b, q_j>`` for a ``[B, K]`` table of items ``j`` per row ``b``
  (candidate pools): on CPU ``torch.sparse.sampled_addmm`` evaluates only those products
  without a ``[B, K, d]`` gather (4x cheaper on Baby's pools), elsewhere a gather.

Neighbour search, edge pruning and cold-item rows: :mod:`mmrec_plugin.neighbours`.
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["binarize", "sym_normalize", "bipartite_csr", "to_torch_csr", "has_csr_sum_kernel",
           "sparse_mm", "lightgcn", "lightgcn_l2", "csr_rows", "transpose_csr", "pair_scores"]


# -- graphs (scipy) ------------------------------------------------------------------------
def binarize(inter) -> sp.csr_matrix:
    """The training matrix as a float32 CSR of ones (duplicates merged, explicit zeros dropped,
    column indices sorted within rows)."""
    m = sp.csr_matrix(inter, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def sym_normalize(adj: sp.spmatrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` with ``D = diag(A 1)``; rows/columns of zero degree stay zero."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1), dtype=np.float64).ravel()
    inv = np.zeros_like(deg)
    nz = deg > 0
    inv[nz] = deg[nz] ** -0.5
    coo = adj.tocoo()
    # data * (d_r d_c): the scalar product is commutative, so a symmetric A stays exactly symmetric
    scale = (inv[coo.row] * inv[coo.col]).astype(np.float32)
    out = sp.csr_matrix((coo.data * scale, (coo.row, coo.col)), shape=adj.shape, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def bipartite_csr(inter) -> sp.csr_matrix:
    """The normalised LightGCN graph of the training matrix ``inter`` (any values; binarised)
    as a scipy CSR of shape ``(n_users + n_items,) * 2``."""
    r = binarize(inter)
    return sym_normalize(sp.bmat([[None, r], [r.T, None]], format="csr"))


def _csr(crow: Tensor, col: Tensor, val: Tensor, shape) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": nothing to act on
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=tuple(shape), dtype=val.dtype, device=val.device)


def to_torch_csr(adj, device=None) -> Tensor:
    """A scipy sparse matrix as a float32 torch sparse CSR tensor on ``device``."""
    m = sp.csr_matrix(adj, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    t = _csr(torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
             torch.from_numpy(m.data), m.shape)
    return t.to(device) if device is not None else t


# -- products ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def has_csr_sum_kernel() -> bool:
    """Whether ``torch.sparse.mm(csr, dense, "sum")`` (torch's CPU reduction kernel for CSR
    products, torch >= 2.0) works here; older torch takes the default path."""
    try:
        a = _csr(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([2.0, 3.0]), (2, 2))
        out = torch.sparse.mm(a, torch.tensor([[1.0], [10.0]]), "sum")
        return out.flatten().tolist() == [20.0, 3.0]
    except (TypeError, RuntimeError, NotImplementedError):
        return False


@functools.lru_cache(maxsize=None)
def _has_cpu_sddmm() -> bool:
    """Whether this torch has ``torch.sparse.sampled_addmm`` for CPU CSR tensors (1.13+).
    Probed on first use, not at import."""
    try:
        pattern = _csr(torch.tensor([0, 2]), torch.tensor([1, 1]), torch.zeros(2), (1, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = torch.sparse.sampled_addmm(pattern, torch.ones(1, 1), torch.tensor([[1.0, 2.0]]), beta=0.0)
        return out.values().tolist() == [2.0, 2.0]
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False


def _has_mkl_csr_out() -> bool:
    """Whether this torch has MKL and the reduction kernel (:func:`_mkl_csr_out_ok`)."""
    return torch.backends.mkl.is_available() and has_csr_sum_kernel()


@functools.lru_cache(maxsize=None)
def _mkl_csr_out_ok(dtype: torch.dtype, width: int) -> bool:
    """Whether ``torch.addmm(out, csr, dense, beta=0, out=out)`` (MKL's CSR product into an
    uninitialised ``out``) gives the reduction kernel's result bit for bit for ``width``
    dense columns of ``dtype``: probed once per width on a random matrix (torch's generator
    untouched). MKL takes other code paths for some widths (on one Xeon: 4, 8, .., 24 differ
    in the last bit, 1 to 3 and 25 to 256 agree), so a width that differs keeps the kernel."""
    if not _has_mkl_csr_out():
        return False
    try:
        g = torch.Generator().manual_seed(width)
        dense = torch.randn(53, 61, generator=g, dtype=dtype) * (torch.rand(53, 61, generator=g) < 0.3)
        dense[7] = 0.0  # an empty row
        a, x = dense.to_sparse_csr(), torch.randn(61, width, generator=g, dtype=dtype)
        out = torch.full((53, width), float("nan"), dtype=dtype)
        torch.addmm(out, a, x, beta=0.0, out=out)
        return torch.equal(out, torch.sparse.mm(a, x, "sum"))
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def _spmm_sum(adj: Tensor, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``adj @ x`` without autograd (kernel choice: module docstring), written into ``out``
    (``[N, F]``, not ``x``; its contents are not read) where the kernel can: the result is
    the returned tensor either way."""
    if adj.layout == torch.sparse_csr and not adj.is_cuda and not x.is_cuda:
        if (adj.dtype == x.dtype and x.dim() == 2 and _has_mkl_csr_out()
                and _mkl_csr_out_ok(x.dtype, x.shape[1])):
            if out is None:
                out = x.new_empty((adj.shape[0], x.shape[1]))
            return torch.addmm(out, adj, x, beta=0.0, out=out)
        if has_csr_sum_kernel():
            return torch.sparse.mm(adj, x, "sum")
    from torch_geometric.utils import spmm  # CUDA / COO / torch < 2.0

    return spmm(adj, x, reduce="sum")


class _CsrSpmm(torch.autograd.Function):
    """``G x_k`` for a sparse CSR ``G`` and one or more ``x_k``; the gradient w.r.t. ``x_k`` is
    ``G^T g_k``: ``G g_k`` itself when ``G`` is symmetric, else a product with
    :func:`transpose_csr` (cheaper on CPU than autograd's own CSC-to-CSR conversion followed
    by the MKL product), built once for all ``x_k``."""

    @staticmethod
    def forward(ctx, adj: Tensor, symmetric: bool, *xs: Tensor):  # type: ignore[override]
        ctx.adj, ctx.symmetric = adj, symmetric
        return tuple(_spmm_sum(adj, x) for x in xs)

    @staticmethod
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        adj_t = ctx.adj if ctx.symmetric else transpose_csr(ctx.adj)
        return (None, None, *(_spmm_sum(adj_t, g.contiguous()) if need else None
                              for g, need in zip(grads, ctx.needs_input_grad[2:])))


def sparse_mm(adj: Tensor, x, symmetric: bool = False):
    """``adj @ x``, differentiable in ``x`` (module docstring); ``x`` may be a sequence of
    tensors: then the list of their products (one autograd node)."""
    xs = [x] if torch.is_tensor(x) else list(x)
    if not any(t.requires_grad for t in xs):
        outs = [_spmm_sum(adj, t) for t in xs]
    elif adj.layout == torch.sparse_csr:
        outs = list(_CsrSpmm.apply(adj, symmetric, *xs))
    else:
        from torch_geometric.utils import spmm

        outs = [spmm(adj, t, reduce="sum") for t in xs]
    return outs[0] if torch.is_tensor(x) else outs


def _rows_l2(xs, rows: Tensor) -> Tensor:
    """``sum_{r in rows} ||[x_1 .. x_M]_r||^2``, summed as one ``[R, sum d_m]`` block (so M
    column blocks give the bits of the same rows of one matrix)."""
    picked = [x.index_select(0, rows) for x in xs]
    return (picked[0] if len(picked) == 1 else torch.cat(picked, 1)).pow(2).sum()


class _SymmetricLightGCN(torch.autograd.Function):
    """``out_k = mean_{l=0..L} G^l x_k`` for a symmetric ``G`` and one or more ``x_k`` (column
    blocks of one input: propagation is column-wise), as one autograd node, plus an optional
    ``l2 = sum_{r in rows} ||[x_1 .. x_M]_r||^2`` (rows may repeat).

    Forward: ``L`` sparse products per block, summed in place into the last one. Backward
    (``G = G^T``): ``dx = 1/(L+1) * sum_l G^l g``, by Horner's rule (``t = G t + g``, ``L``
    products, in place, two buffers in turn), then ``dx[rows] += 2 * dl2 * x[rows]`` in
    place. Built from autograd pieces the same step allocates, zero-fills and adds several
    more ``[N, F]`` tensors, and a separate penalty on rows of ``x`` makes autograd add one
    more full ``[N, F]`` gradient. Blocks of 64 columns multiply faster one by one than
    side by side (MKL on Baby: 2 x 0.9 ms against 2.3 ms for 128 columns)."""

    @staticmethod
    def forward(ctx, adj: Tensor, n_layers: int, rows: Optional[Tensor], *xs: Tensor):  # type: ignore[override]
        ctx.adj, ctx.n_layers, ctx.rows = adj, n_layers, rows
        outs = []
        for x in xs:
            hs = [x]
            for _ in range(n_layers):
                hs.append(_spmm_sum(adj, hs[-1]))
            out = hs.pop()  # the last product's buffer becomes the sum
            for h in hs:
                out.add_(h)
            outs.append(out.mul_(1.0 / (n_layers + 1)))
            del hs
        if rows is None:
            l2 = xs[0].new_zeros(())
        else:
            ctx.save_for_backward(*xs)
            l2 = _rows_l2(xs, rows)
        return (*outs, l2)

    @staticmethod
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        grad_l2 = grads[-1]
        xs = ctx.saved_tensors if ctx.rows is not None else None
        dxs = []
        for k, grad in enumerate(grads[:-1]):
            g = grad.contiguous()
            t = _spmm_sum(ctx.adj, g)
            t.add_(g)
            spare = None  # two buffers in turn: a product cannot be written into its input
            for _ in range(ctx.n_layers - 1):
                t, spare = _spmm_sum(ctx.adj, t, out=spare), t
                t.add_(g)
            del spare
            t.mul_(1.0 / (ctx.n_layers + 1))
            if xs is not None:
                t.index_add_(0, ctx.rows, xs[k].index_select(0, ctx.rows) * (2.0 * grad_l2))
            dxs.append(t)
        return (None, None, None, *dxs)


def lightgcn(adj: Tensor, x, n_layers: int, symmetric: bool = False):
    """Mean of ``G^l x`` over ``l = 0..n_layers``.

    Args:
        adj: normalised graph ``[N, N]`` (torch sparse).
        x: layer-0 embeddings ``[N, F]``, or a sequence of column blocks ``[N, F_k]`` (then
            a list of the blocks' results).
        n_layers: number of propagation layers (``>= 0``).
        symmetric: ``adj`` is symmetric (one autograd node with a cheaper backward).
    """
    return lightgcn_l2(adj, x, n_layers, None, symmetric)[0]


def lightgcn_l2(adj: Tensor, x, n_layers: int, rows: Optional[Tensor],
                symmetric: bool = False) -> Tuple:
    """``(lightgcn(adj, x, n_layers), sum_{r in rows} ||x_r||^2)``: the LightGCN mean and
    the squared norm of rows of its input (e.g. the L2 penalty of a batch's layer-0
    embeddings), whose gradient is then added in place into the propagation's.

    Args:
        rows: LongTensor ``[R]`` (a repeated row counts once per occurrence), or None (then
            the second value is None).
        x: as in :func:`lightgcn`; for column blocks the norm is that of the rows of
            ``[x_1 .. x_M]``, summed as one block.
        Others as in :func:`lightgcn`.
    """
    if n_layers < 0:
        raise ValueError(f"lightgcn: n_layers must be >= 0, got {n_layers}")
    xs = [x] if torch.is_tensor(x) else list(x)
    if symmetric and n_layers > 0:
        *outs, l2 = _SymmetricLightGCN.apply(adj, n_layers, rows, *xs)
        l2 = l2 if rows is not None else None
    else:
        l2 = _rows_l2(xs, rows) if rows is not None else None
        outs = xs
        if n_layers > 0:
            h = sparse_mm(adj, xs, symmetric)
            outs = [a + b for a, b in zip(xs, h)]
            for _ in range(n_layers - 1):
                h = sparse_mm(adj, h, symmetric)
                for o, hk in zip(outs, h):
                    o += hk  # in place: out is not saved for backward
            outs = [o.mul_(1.0 / (n_layers + 1)) for o in outs]
    return (outs[0] if torch.is_tensor(x) else list(outs)), l2


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


def pair_scores(u: Tensor, q: Tensor, items: Tensor) -> Tensor:
    """``out[b, k] = <u[b], q[items[b, k]]>``: scores of a ``[B, K]`` table of item ids.

    Args:
        u: ``[B, d]`` (one row per table row); q: ``[n_items, d]`` (may be a column slice).
        items: LongTensor ``[B, K]`` (repeats allowed).

    Without autograd on CPU (torch >= 1.13) this is ``torch.sparse.sampled_addmm`` at the
    table's ``(b, item)`` positions (no ``[B, K, d]`` copy of item rows; 4x cheaper on Baby's
    pools); otherwise (CUDA, gradients needed, more entries per row than items) a gather.
    """
    b, k = items.shape
    if (items.device.type == "cpu" and not (u.requires_grad or q.requires_grad)
            and k <= q.shape[0] and _has_cpu_sddmm()):
        crow = torch.arange(0, b * k + 1, k, device=items.device)
        pattern = _csr(crow, items.reshape(-1), q.new_zeros(b * k), (b, q.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse.sampled_addmm(pattern, u, q.t(), beta=0.0).values().view(b, k)
    rows = q.index_select(0, items.reshape(-1)).view(b, k, -1)
    return (u.unsqueeze(1) * rows).sum(-1)
