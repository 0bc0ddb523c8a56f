"""The neighbour search and edge-pruning kernels of mmrec_plugin.sparse against hand-worked
and dense references."""
import numpy as np


def test_topk_per_row_matches_a_dense_reference_across_blocks():
    from mmrec_plugin.neighbours import topk_per_row

    rng = np.random.default_rng(3)
    s = rng.normal(size=(7, 7)).astype(np.float32)
    for exclude_self in (False, True):
        ref = s.copy()
        if exclude_self:
            np.fill_diagonal(ref, -np.inf)
        want = {(r, c) for r in range(7) for c in np.argsort(-ref[r])[:3]}
        rows, cols, vals = topk_per_row(7, 3, lambda a, b: s[a:b].copy(), 2, exclude_self)
        assert rows.tolist() == [r for r in range(7) for _ in range(3)]
        assert set(zip(rows.tolist(), cols.tolist())) == want
        assert np.array_equal(vals, s[rows, cols])


def test_degree_weights_hand_worked():
    import scipy.sparse as sp

    from mmrec_plugin.neighbours import degree_weights

    # user 0: items 0, 1; user 1: item 1 -> d_u = (2, 1), d_i = (1, 2)
    r = sp.csr_matrix(np.array([[1, 1], [0, 1]], dtype=np.float32))
    users, items, w = degree_weights(r)
    assert users.tolist() == [0, 0, 1] and items.tolist() == [0, 1, 1]
    assert np.allclose(w, [1 / np.sqrt(2), 1 / 2, 1 / np.sqrt(2)])
    assert degree_weights(r, np.float32)[2].dtype == np.float32


def test_buffered_csr_product_equals_the_reduction_kernel_where_chosen():
    """Where _spmm_sum writes MKL's product into a buffer (widths the probe accepts), it is
    the reduction kernel's result bit for bit, whatever the buffer held."""
    import scipy.sparse as sp
    import torch

    from mmrec_plugin import sparse

    if not sparse._has_mkl_csr_out():
        import pytest

        pytest.skip("no MKL CSR product in this torch")
    rng = np.random.default_rng(0)
    widths = [w for w in list(range(1, 70)) + [128] if sparse._mkl_csr_out_ok(torch.float32, w)]
    assert 64 in widths or not widths  # (Baby's 2 x 64 columns, where the probe accepts MKL)
    for w in widths:
        n, m = (int(v) for v in rng.integers(1, 90, 2))
        a = sparse.to_torch_csr(sp.random(n, m, density=float(rng.random()), random_state=w, dtype=np.float32))
        x = torch.from_numpy(rng.normal(size=(m, w)).astype(np.float32))
        out = torch.full((n, w), float("nan"))
        got = sparse._spmm_sum(a, x, out=out)
        assert got.data_ptr() == out.data_ptr()
        assert torch.equal(got, torch.sparse.mm(a, x, "sum")), w


def test_lightgcn_l2_equals_the_reduction_kernel_path(monkeypatch):
    """The symmetric one-node LightGCN (buffered products, two backward buffers in turn):
    value, penalty and gradient equal to the same node on torch's reduction kernel."""
    import torch

    from mmrec_plugin import sparse

    rng = np.random.default_rng(1)
    inter = (rng.random((30, 20)) < 0.2).astype(np.float32)
    adj = sparse.to_torch_csr(sparse.bipartite_csr(inter))
    rows = torch.tensor([0, 3, 3, 45, 49])

    def run():
        x = torch.from_numpy(rng.normal(size=(50, 64)).astype(np.float32)).requires_grad_()
        g = torch.from_numpy(rng.normal(size=(50, 64)).astype(np.float32))
        out, l2 = sparse.lightgcn_l2(adj, x, 3, rows, symmetric=True)
        ((out * g).sum() + 0.3 * l2).backward()
        return out.detach(), l2.detach(), x.grad

    state = rng.bit_generator.state
    fast = run()
    rng.bit_generator.state = state
    monkeypatch.setattr(sparse, "_has_mkl_csr_out", lambda: False)
    ref = run()
    for a, b in zip(fast, ref):
        assert torch.equal(a, b)
