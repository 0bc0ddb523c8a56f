"""modality_weights auto: the inner-validation probe (hold-out split, item-kNN recall, choice)."""
import numpy as np
import scipy.sparse as sp

from mmrec_plugin.method.probe import (
    choose_graph_weights,
    holdout_split,
    knn_probe_recall,
    weight_candidates,
)


def test_holdout_split_counts_and_partition():
    rng = np.random.default_rng(0)
    dense = (rng.random((50, 40)) < 0.3).astype(np.float32)
    dense[0] = 0
    dense[0, 3] = 1  # a user with one item keeps it
    r = sp.csr_matrix(dense)
    keep, out = holdout_split(r, frac=0.25, seed=1)
    assert (keep + out - r).nnz == 0 and keep.multiply(out).nnz == 0
    n = np.diff(r.indptr)
    expected = np.where(n >= 2, np.maximum(1, np.floor(0.25 * n)), 0)
    assert np.array_equal(np.diff(out.indptr), expected)
    k2, o2 = holdout_split(r, frac=0.25, seed=1)
    assert (o2 != out).nnz == 0  # deterministic for a seed


def test_knn_probe_recall_hand_worked():
    # user 0 trained on item 0, user 1 on item 2; graph: 0~1 (.9), 0~3 (.1), 2~3 (.5), 2~1 (.2)
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    g = sp.csr_matrix(np.array([[0, .9, 0, .1], [.9, 0, .2, 0], [0, .2, 0, .5], [.1, 0, .5, 0]],
                               dtype=np.float32))
    targets = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 1, 0, 1]], dtype=np.float32))
    # scores: user 0 -> item 1 .9, item 3 .1; user 1 -> item 3 .5, item 1 .2 (own items masked)
    # k=1: user 0 gets item 1: miss -> 0; user 1 gets item 3: 1 of 2 -> .5; mean .25
    assert abs(knn_probe_recall(train, g, targets, k=1) - 0.25) < 1e-9
    # k=2: user 0 gets {1, 3}: 1 of 1; user 1 gets {3, 1}: 2 of 2; mean 1
    assert abs(knn_probe_recall(train, g, targets, k=2) - 1.0) < 1e-9


def test_weight_candidates_cover_the_simplex():
    c = weight_candidates(2, alphas=(0.0, 0.5, 1.0), steps=4)
    assert len(c) == 5 + 5 + 1
    assert all(abs(sum(b) - 1) < 1e-9 for _, b in c)
    assert (1.0, (0.5, 0.5)) in c and (0.0, (1.0, 0.0)) in c and (0.5, (0.25, 0.75)) in c
    assert len(weight_candidates(3, alphas=(0.0,), steps=2)) == 6


def test_choice_prefers_the_informative_modality():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 300, 120, 6
    cluster = rng.integers(0, k, n_items)
    user_c = rng.integers(0, k, n_users)
    p = np.where(cluster[None, :] == user_c[:, None], 1.0, 0.02)
    dense = (rng.random((n_users, n_items)) < 0.15 * p).astype(np.float32)
    r = sp.csr_matrix(dense)
    signal = np.eye(k)[cluster] * 3 + 0.3 * rng.normal(size=(n_items, k))
    noise = rng.normal(size=(n_items, 8))
    best, scores = choose_graph_weights(r, [signal.astype(np.float32), noise.astype(np.float32)], 5,
                                        weight_candidates(2, alphas=(0.0,), steps=4), frac=0.2)
    by = {tuple(s["betas"]): s["recall"] for s in scores}
    assert by[(1.0, 0.0)] > 2 * by[(0.0, 1.0)]  # the signal graph beats the noise graph clearly
    assert best[1][0] >= 0.75  # the choice leans on the informative modality
