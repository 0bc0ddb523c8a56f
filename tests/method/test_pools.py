"""Candidate pools (uniform over I minus O_u, never a training positive) and negative strategies."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.method.pools import sample_candidate_pool, select_negatives, train_csr_tensors


def _train(n_users=6, n_items=12, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        k = int(rng.integers(0, n_items - 1))  # 0 .. n_items-2 positives (user 0 may have none)
        items = rng.choice(n_items, size=k, replace=False)
        rows += [u] * k
        cols += list(items)
    m = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    return m.tocsr()


def test_pool_never_contains_a_training_positive():
    inter = _train(n_users=8, n_items=12, seed=1)
    indptr, indices = train_csr_tensors(inter)
    gen = torch.Generator().manual_seed(0)
    users = torch.arange(8).repeat(50)  # every user, many times
    dense = inter.toarray() > 0
    for _ in range(20):
        pool = sample_candidate_pool(users, 16, indptr, indices, 12, generator=gen)
        assert pool.shape == (400, 16) and pool.dtype == torch.long
        assert pool.min() >= 0 and pool.max() < 12
        hits = dense[users.numpy()[:, None], pool.numpy()]
        assert not hits.any()


def test_pool_is_uniform_over_allowed_items():
    n_items = 10
    positives = [0, 3, 7]
    inter = sp.csr_matrix((np.ones(3), ([0, 0, 0], positives)), shape=(2, n_items))
    indptr, indices = train_csr_tensors(inter)
    gen = torch.Generator().manual_seed(123)
    pool = sample_candidate_pool(torch.zeros(700, dtype=torch.long), 40, indptr, indices, n_items, gen)
    counts = np.bincount(pool.numpy().ravel(), minlength=n_items)
    assert counts[positives].sum() == 0
    allowed = counts[[i for i in range(n_items) if i not in positives]]
    chi2, p = stats.chisquare(allowed)  # H0: uniform over the 7 allowed items
    assert p > 0.001, (allowed, chi2)
    # user 1 has no training items: uniform over all items
    pool = sample_candidate_pool(torch.ones(700, dtype=torch.long), 40, indptr, indices, n_items, gen)
    counts = np.bincount(pool.numpy().ravel(), minlength=n_items)
    assert stats.chisquare(counts)[1] > 0.001


def test_pool_with_a_nearly_full_user_terminates():
    inter = sp.csr_matrix((np.ones(9), ([0] * 9, list(range(9)))), shape=(1, 10))
    indptr, indices = train_csr_tensors(inter)
    pool = sample_candidate_pool(torch.zeros(50, dtype=torch.long), 8, indptr, indices, 10,
                                 torch.Generator().manual_seed(0))
    assert (pool == 9).all()


def test_pool_rejects_bad_size_and_full_user():
    inter = sp.csr_matrix((np.ones(3), ([0, 0, 0], [0, 1, 2])), shape=(1, 3))
    indptr, indices = train_csr_tensors(inter)
    with pytest.raises(ConfigError, match="pool_size"):
        sample_candidate_pool(torch.zeros(2, dtype=torch.long), 0, indptr, indices, 3)
    with pytest.raises(ValueError, match="every item"):
        sample_candidate_pool(torch.zeros(2, dtype=torch.long), 4, indptr, indices, 3)


POOL = torch.tensor([[10, 11, 12], [20, 21, 22]])
S_T = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.3]])  # argmax: 0, 2
S_V = torch.tensor([[0.0, 0.5, 0.4], [0.7, 0.1, 0.0]])  # argmax: 1, 0
S_F = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # argmax: 2, 1


def test_cross_trains_each_branch_on_the_other_branch_hardest():
    neg_text, neg_visual = select_negatives("cross", S_T, S_V, S_F, POOL)
    assert neg_text.tolist() == [11, 20]  # argmax of s_v
    assert neg_visual.tolist() == [10, 22]  # argmax of s_t


def test_same_fused_uniform():
    t, v = select_negatives("same", S_T, S_V, None, POOL)
    assert t.tolist() == [10, 22] and v.tolist() == [11, 20]
    t, v = select_negatives("fused", None, None, S_F, POOL)
    assert t.tolist() == [12, 21] and v.tolist() == [12, 21]
    t, v = select_negatives("uniform", None, None, None, POOL)
    assert t.tolist() == [10, 20] and v.tolist() == [10, 20]  # a pool item, itself uniform


def test_selection_has_no_gradient_and_rejects_unknown():
    s = S_T.clone().requires_grad_(True)
    t, v = select_negatives("same", s, S_V, None, POOL)
    assert not t.requires_grad and not v.requires_grad
    with pytest.raises(ConfigError, match="neg_strategy.*cross, same, fused, uniform"):
        select_negatives("crosss", S_T, S_V, S_F, POOL)


def test_hardness_topk_and_softmax_limits_equal_argmax():
    g = torch.Generator().manual_seed(0)
    t, v = select_negatives("cross", S_T, S_V, S_F, POOL, "topk", topk=1, generator=g)
    assert t.tolist() == [11, 20] and v.tolist() == [10, 22]
    t, v = select_negatives("cross", S_T, S_V, S_F, POOL, "softmax", temperature=1e-4, generator=g)
    assert t.tolist() == [11, 20] and v.tolist() == [10, 22]


def test_hardness_topk_draws_uniformly_among_the_k_best():
    from mmrec_plugin.method.pools import pick_from_pool
    scores = torch.tensor([[0.3, 0.9, 0.1, 0.5]]).repeat(4000, 1)
    pool = torch.tensor([[40, 41, 42, 43]]).repeat(4000, 1)
    picked = pick_from_pool(scores, pool, "topk", topk=2, generator=torch.Generator().manual_seed(1))
    counts = {i: int((picked == i).sum()) for i in (40, 41, 42, 43)}
    assert counts[40] == 0 and counts[42] == 0  # not among the 2 best (0.9, 0.5)
    assert abs(counts[41] - 2000) < 150 and abs(counts[43] - 2000) < 150  # 4.7 sd of Bin(4000, .5)


def test_hardness_softmax_matches_its_probabilities():
    from mmrec_plugin.method.pools import pick_from_pool
    scores = torch.tensor([[0.0, 1.0, 2.0]]).repeat(6000, 1)
    pool = torch.tensor([[0, 1, 2]]).repeat(6000, 1)
    picked = pick_from_pool(scores, pool, "softmax", temperature=1.0, generator=torch.Generator().manual_seed(2))
    e = np.exp([0.0, 1.0, 2.0])
    expected = 6000 * e / e.sum()  # 540, 1468, 3991
    got = np.bincount(picked.numpy(), minlength=3)
    sd = np.sqrt(expected * (1 - e / e.sum()))
    assert np.all(np.abs(got - expected) < 5 * sd)
    with pytest.raises(ValueError, match="hardness"):
        pick_from_pool(scores, pool, "hardest")
