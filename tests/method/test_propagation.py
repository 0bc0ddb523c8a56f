"""Propagation equals dense-matrix references (values and gradients)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_plugin.method.graphs import knn_homogeneous
from mmrec_plugin.method.propagation import channel_blocks, smooth, smooth_rows
from mmrec_plugin.sparse import (
    bipartite_csr,
    csr_rows,
    lightgcn,
    lightgcn_l2,
    sparse_mm,
    to_torch_csr,
    transpose_csr,
)


def to_torch_sparse(adj):
    """A scipy matrix, or an (edge_index, weight, n) triple, as a torch CSR tensor."""
    if isinstance(adj, tuple):
        ei, w, n = adj
        adj = sp.csr_matrix((w.numpy(), (ei[0].numpy(), ei[1].numpy())), shape=(n, n))
    return to_torch_csr(adj)


def _graph(seed=0):
    rng = np.random.default_rng(seed)
    inter = sp.csr_matrix((rng.random((7, 9)) < 0.35).astype(np.float32))
    a = bipartite_csr(inter).tocoo()
    return torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64)), torch.from_numpy(a.data), 16


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_lightgcn_matches_dense(symmetric, layers):
    ei, w, n = _graph()
    adj = to_torch_sparse((ei, w, n))
    dense = torch.zeros(n, n, dtype=torch.float64)
    dense[ei[0], ei[1]] = w.double()
    x = torch.randn(n, 5, dtype=torch.float64)
    x1 = x.float().clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    got = lightgcn(adj, x1, layers, symmetric=symmetric)
    want = torch.stack([torch.linalg.matrix_power(dense, l) @ x2 for l in range(layers + 1)]).mean(0)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    g = torch.randn(n, 5, dtype=torch.float64)
    (got.double() * g).sum().backward()
    (want * g).sum().backward()
    torch.testing.assert_close(x1.grad.double(), x2.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_smooth_matches_dense(layers):
    rng = np.random.default_rng(1)
    g = knn_homogeneous(sp.csr_matrix((rng.random((11, 6)) < 0.4).astype(float)),
                        [rng.normal(size=(11, 3))], [1.0], 0.3, 3)
    adj = to_torch_sparse(g)
    dense = torch.from_numpy(g.toarray()).double()
    x = torch.randn(11, 4, dtype=torch.float64)
    x1 = x.float().clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    got = smooth(adj, x1, layers, symmetric=True)
    want = x2 if layers == 0 else x2 + torch.linalg.matrix_power(dense, layers) @ x2
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    got.double().pow(2).sum().backward()
    want.pow(2).sum().backward()
    torch.testing.assert_close(x1.grad.double(), x2.grad, rtol=1e-5, atol=1e-6)


def test_non_symmetric_graph_gradient():
    m = sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, 1.0], [3.0, 0, 0]]))
    adj = to_torch_sparse(m)
    x = torch.randn(3, 2, requires_grad=True)
    sparse_mm(adj, x).sum().backward()
    want = torch.from_numpy(m.toarray().T).float() @ torch.ones(3, 2)
    torch.testing.assert_close(x.grad, want)


def test_negative_layers_rejected():
    ei, w, n = _graph()
    with pytest.raises(ValueError, match="n_layers"):
        lightgcn(to_torch_sparse((ei, w, n)), torch.zeros(n, 2), -1)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_smooth_rows_equals_rows_of_smooth(layers):
    rng = np.random.default_rng(4)
    g = knn_homogeneous(sp.csr_matrix((rng.random((15, 6)) < 0.4).astype(float)),
                        [rng.normal(size=(15, 3))], [1.0], 0.3, 4)
    adj = to_torch_sparse(g)
    rows = torch.tensor([3, 0, 14, 3, 7])  # repeats allowed
    x = torch.randn(15, 4)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    got = smooth_rows(adj, x1, layers, rows, symmetric=True)
    want = smooth(adj, x2, layers, symmetric=True)[rows]
    torch.testing.assert_close(got, want)
    w = torch.randn_like(got)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    sub = csr_rows(adj, rows)
    torch.testing.assert_close(sub.to_dense(), torch.from_numpy(g.toarray()).float()[rows])


def _random_csr(n_rows, n_cols, density, seed):
    rng = np.random.default_rng(seed)
    m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    return m, to_torch_sparse(m) if n_rows == n_cols else torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data), size=m.shape)


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (1, 1), (6, 6)])
def test_transpose_csr_matches_dense_transpose(shape):
    m, t = _random_csr(*shape, 0.4, seed=shape[0] * 10 + shape[1])
    tt = transpose_csr(t)
    assert tt.shape == (shape[1], shape[0])
    torch.testing.assert_close(tt.to_dense(), torch.from_numpy(m.toarray().T))
    # rows of the transpose list their columns in increasing order
    crow, col = tt.crow_indices(), tt.col_indices()
    for r in range(shape[1]):
        seg = col[crow[r]:crow[r + 1]]
        assert torch.all(seg[1:] > seg[:-1])


def test_csr_rows_add_self_is_rows_of_identity_plus_graph():
    m, adj = _random_csr(8, 8, 0.3, seed=1)
    rows = torch.tensor([2, 7, 2, 0])
    sub = csr_rows(adj, rows, add_self=True)
    want = (np.eye(8, dtype=np.float32) + m.toarray())[rows.numpy()]
    torch.testing.assert_close(sub.to_dense(), torch.from_numpy(want))
    with pytest.raises(ValueError, match="square"):
        csr_rows(_random_csr(3, 5, 0.5, seed=2)[1], torch.tensor([0]), add_self=True)


def test_row_block_product_value_and_gradient_match_dense():
    m, adj = _random_csr(10, 10, 0.3, seed=3)
    rows = torch.tensor([9, 1, 1, 4])  # a repeated row sums its gradient
    sub = csr_rows(adj, rows)
    dense = torch.from_numpy(m.toarray())[rows]
    x1 = torch.randn(10, 3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    got, want = sparse_mm(sub, x1), dense @ x2  # non-symmetric: transposed backward
    torch.testing.assert_close(got, want)
    g = torch.randn(4, 3)
    (got * g).sum().backward()
    (want * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_lightgcn_l2_value_and_gradient_match_dense(symmetric, layers):
    ei, w, n = _graph(seed=5)
    adj = to_torch_sparse((ei, w, n))
    dense = torch.zeros(n, n, dtype=torch.float64)
    dense[ei[0], ei[1]] = w.double()
    rows = torch.tensor([0, 5, 5, 15])
    x1 = torch.randn(n, 3, requires_grad=True)
    x2 = x1.detach().double().requires_grad_(True)
    out, l2 = lightgcn_l2(adj, x1, layers, rows, symmetric=symmetric)
    want = torch.stack([torch.linalg.matrix_power(dense, l) @ x2 for l in range(layers + 1)]).mean(0)
    want_l2 = sum(float(x2[r].detach().pow(2).sum()) for r in rows.tolist())
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)
    assert float(l2.detach()) == pytest.approx(want_l2, rel=1e-5)
    g = torch.randn(n, 3, dtype=torch.float64)
    ((out.double() * g).sum() + 0.3 * l2).backward()
    ((want * g).sum() + 0.3 * (x2[rows] ** 2).sum()).backward()
    torch.testing.assert_close(x1.grad.double(), x2.grad, rtol=1e-5, atol=1e-6)
    assert lightgcn_l2(adj, x1, layers, None, symmetric=symmetric)[1] is None


@pytest.mark.parametrize("widths", [(3, 2), (3, 2, 4)])
def test_channel_blocks_equals_nested_cat_with_gradients(widths):
    users = [torch.randn(4, w, requires_grad=True) for w in widths]
    items = [torch.randn(5, w, requires_grad=True) for w in widths]
    b_users = [u.detach().clone().requires_grad_(True) for u in users]
    b_items = [i.detach().clone().requires_grad_(True) for i in items]
    got = channel_blocks(users, items)
    want = torch.cat([torch.cat(b_users, 1), torch.cat(b_items, 1)], 0)
    assert torch.equal(got, want)
    g = torch.randn(9, sum(widths))
    (got * g).sum().backward()
    (want * g).sum().backward()
    for x, y in zip(users + items, b_users + b_items):
        assert torch.equal(x.grad, y.grad)
    with pytest.raises(ValueError, match="do not fit"):
        channel_blocks(users, items[::-1])
