"""The neighbour search and edge-pruning kernels of mmrec_plugin.sparse against hand-worked
and dense references."""
import numpy as np


def test_topk_per_row_matches_a_dense_reference_across_blocks():
    from mmrec_plugin.sparse import topk_per_row

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

    from mmrec_plugin.sparse import degree_weights

    # user 0: items 0, 1; user 1: item 1 -> d_u = (2, 1), d_i = (1, 2)
    r = sp.csr_matrix(np.array([[1, 1], [0, 1]], dtype=np.float32))
    users, items, w = degree_weights(r)
    assert users.tolist() == [0, 0, 1] and items.tolist() == [0, 1, 1]
    assert np.allclose(w, [1 / np.sqrt(2), 1 / 2, 1 / np.sqrt(2)])
    assert degree_weights(r, np.float32)[2].dtype == np.float32
