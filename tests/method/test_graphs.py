"""Graphs against naive dense references on small cases."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_plugin.method.graphs import knn_homogeneous, user_profiles
from mmrec_plugin.sparse import bipartite_csr


def _inter(n_users=9, n_items=13, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    d = (rng.random((n_users, n_items)) < density).astype(np.float32)
    d[0] = 0  # a user without interactions
    d[:, 1] = 0  # an item without interactions
    return sp.csr_matrix(d)


def naive_knn(rows, feats, betas, alpha, k):
    """Loop reference: sets, cosines, top-k per row, positive only, max-symmetrise, normalise."""
    rows = rows.toarray() > 0
    n = rows.shape[0]
    sets = [set(np.flatnonzero(r)) for r in rows]
    e = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if sets[a] and sets[b]:
                ov = len(sets[a] & sets[b]) / math.sqrt(len(sets[a]) * len(sets[b]))
            else:
                ov = 0.0
            cos = 0.0
            for f, beta in zip(feats, betas):
                na, nb = np.linalg.norm(f[a]), np.linalg.norm(f[b])
                c = float(f[a] @ f[b] / (na * nb)) if na > 0 and nb > 0 else 0.0
                cos += beta * c
            e[a, b] = alpha * ov + (1 - alpha) * cos
    kept = np.zeros((n, n))
    for a in range(n):
        order = [b for b in np.argsort(-e[a], kind="stable") if b != a][:k]
        for b in order:
            if e[a, b] > 0:
                kept[a, b] = e[a, b]
    s = np.maximum(kept, kept.T)
    deg = s.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1)), 0.0)
    return inv[:, None] * s * inv[None, :]


@pytest.mark.parametrize("block_size", [1, 4, 2048])
@pytest.mark.parametrize("alpha,k", [(0.2, 3), (0.4, 5), (0.0, 2), (1.0, 3)])
def test_knn_equals_dense_reference(block_size, alpha, k):
    inter = _inter()
    rows = sp.csr_matrix(inter.T)  # items
    rng = np.random.default_rng(3)
    feats = [rng.normal(size=(13, 5)), rng.normal(size=(13, 4))]
    feats[0][2] = 0.0  # a zero feature row: cosine 0
    betas = [0.9, 0.1]
    got = knn_homogeneous(rows, feats, betas, alpha, k, block_size=block_size)
    assert isinstance(got, sp.csr_matrix) and got.shape == (13, 13)
    want = naive_knn(rows, feats, betas, alpha, k)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-5, atol=1e-6)
    assert (got != got.T).nnz == 0
    assert got.diagonal().sum() == 0


def test_user_profiles_are_mean_of_training_item_features():
    inter = _inter()
    f = np.random.default_rng(1).normal(size=(13, 3)).astype(np.float32)
    got = user_profiles(inter, f)
    d = inter.toarray()
    for u in range(d.shape[0]):
        items = np.flatnonzero(d[u])
        want = f[items].mean(0) if len(items) else np.zeros(3)
        np.testing.assert_allclose(got[u], want, rtol=1e-5, atol=1e-6)


def test_user_knn_equals_dense_reference():
    inter = _inter(seed=5)
    f = np.random.default_rng(2).normal(size=(13, 6))
    prof = [user_profiles(inter, f)]
    got = knn_homogeneous(inter, prof, [1.0], 0.4, 4, block_size=2)
    np.testing.assert_allclose(got.toarray(), naive_knn(inter, prof, [1.0], 0.4, 4), rtol=1e-5, atol=1e-6)


def test_bipartite_equals_dense_normalisation():
    inter = _inter()
    # duplicates and non-unit values are binarised
    inter = sp.coo_matrix(inter)
    dup = sp.coo_matrix((np.r_[inter.data * 3, [1.0]], (np.r_[inter.row, inter.row[0]], np.r_[inter.col, inter.col[0]])),
                        shape=inter.shape)
    m = bipartite_csr(dup)
    n_u, n_i = inter.shape
    n = n_u + n_i
    got = m.toarray().astype(np.float64)
    r = (inter.toarray() > 0).astype(float)
    a = np.zeros((n, n))
    a[:n_u, n_u:] = r
    a[n_u:, :n_u] = r.T
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    np.testing.assert_allclose(got, inv[:, None] * a * inv[None, :], rtol=1e-6)
    assert m.nnz == 2 * int(r.sum())
