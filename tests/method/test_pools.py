"""Candidate pools (uniform over I minus O_u, never a training positive) and negative strategies."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from mmrec_plugin.method.pools import sample_candidate_pool, select_negatives
from mmrec_plugin.sparse import binarize


def train_csr_tensors(inter):
    m = binarize(inter)
    return torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64))


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
    with pytest.raises(ValueError, match="pool_size"):
        sample_candidate_pool(torch.zeros(2, dtype=torch.long), 0, indptr, indices, 3)
    with pytest.raises(ValueError, match="every item"):
        sample_candidate_pool(torch.zeros(2, dtype=torch.long), 4, indptr, indices, 3)


POOL = torch.tensor([[10, 11, 12], [20, 21, 22]])
S_T = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.3]])  # argmax: 0, 2
S_V = torch.tensor([[0.0, 0.5, 0.4], [0.7, 0.1, 0.0]])  # argmax: 1, 0
S_F = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # argmax: 2, 1


def test_cross_trains_each_branch_on_the_other_branch_hardest():
    """M = 2: the paper's eq. 10-11, text on argmax s_v, visual on argmax s_t."""
    neg = select_negatives("cross", {"text": S_T, "visual": S_V}, POOL)
    assert neg["text"].tolist() == [11, 20]  # argmax of s_v
    assert neg["visual"].tolist() == [10, 22]  # argmax of s_t


def test_cross_with_three_branches_uses_the_sum_of_the_others():
    """M = 3, worked by hand: branch a's negative maximises s_b + s_c, etc."""
    s_a = torch.tensor([[0.0, 0.3, 0.1]])
    s_b = torch.tensor([[0.5, 0.0, 0.0]])
    s_c = torch.tensor([[0.0, 0.4, 0.45]])
    pool = torch.tensor([[7, 8, 9]])
    # s_b + s_c = [0.5, 0.4, 0.45] -> 7; s_a + s_c = [0.0, 0.7, 0.55] -> 8; s_a + s_b = [0.5, 0.3, 0.1] -> 7
    neg = select_negatives("cross", {"a": s_a, "b": s_b, "c": s_c}, pool)
    assert {m: n.tolist() for m, n in neg.items()} == {"a": [7], "b": [8], "c": [7]}
    # the single hardest item of the other two (item 9 for a: s_c alone) is NOT what counts
    assert neg["a"].item() != pool[0, s_c.argmax()].item()


def test_same_fused_uniform():
    both = {"text": S_T, "visual": S_V}
    neg = select_negatives("same", both, POOL)
    assert neg["text"].tolist() == [10, 22] and neg["visual"].tolist() == [11, 20]
    neg = select_negatives("fused", {"text": None, "visual": None}, POOL, fused=S_F)
    assert neg["text"].tolist() == [12, 21] and neg["visual"].tolist() == [12, 21]
    neg = select_negatives("uniform", {"text": None, "visual": None}, POOL)
    assert neg["text"].tolist() == [10, 20] and neg["visual"].tolist() == [10, 20]  # a pool item, itself uniform


def test_selection_has_no_gradient_and_rejects_unknown():
    s = S_T.clone().requires_grad_(True)
    neg = select_negatives("same", {"text": s, "visual": S_V}, POOL)
    assert not neg["text"].requires_grad and not neg["visual"].requires_grad
    with pytest.raises(ValueError, match="crosss.*cross, same, fused, uniform"):
        select_negatives("crosss", {"text": S_T, "visual": S_V}, POOL)
    with pytest.raises(ValueError, match="fused pool scores"):
        select_negatives("fused", {"text": S_T, "visual": S_V}, POOL)
    with pytest.raises(ValueError, match="two branches"):
        select_negatives("cross", {"text": S_T}, POOL)
