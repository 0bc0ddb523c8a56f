"""evaluator.topk_rows / topk_indices against torch.topk and a numpy sort, and Trainer.evaluate."""
import numpy as np
import pytest
import torch

from mmrec_plugin.host import evaluator as evaluator_mod
from mmrec_plugin.host import trainer as trainer_mod
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
from mmrec_plugin.host.dataset import RecDataset
from mmrec_plugin.host.evaluator import topk_indices, topk_rows
from mmrec_plugin.host.trainer import Trainer

REAL_TOPK = torch.topk  # the reference, also while a test guards torch.topk


def check_topk(scores, k, v, i):
    """v equals a numpy reference (sorted descending) and torch.topk; i points at those values."""
    ref = -np.sort(-scores.numpy(), axis=1)[:, :k]
    assert v.shape == i.shape == (scores.shape[0], k)
    assert i.dtype == torch.int64
    np.testing.assert_array_equal(v.numpy(), ref)
    assert torch.equal(v, REAL_TOPK(scores, k, dim=1).values)
    assert torch.equal(scores.gather(1, i), v)
    srt = i.sort(dim=1).values
    assert (srt[:, 1:] != srt[:, :-1]).all(), "an index was returned twice"


@pytest.fixture
def no_torch_topk(monkeypatch):
    """Fail if torch.topk is called on a large input (the two-stage path must run)."""
    def guarded(x, k, *a, **kw):
        assert x.shape[-1] < 1000 or x.shape[-1] < 4 * k, f"fallback to torch.topk on {tuple(x.shape)}"
        return REAL_TOPK(x, k, *a, **kw)

    monkeypatch.setattr(torch, "topk", guarded)


@pytest.mark.parametrize("n", [1000, 1003, 2048, 7050])
@pytest.mark.parametrize("k", [1, 5, 20, 50])
def test_matches_reference_random(n, k, no_torch_topk):
    gen = torch.Generator().manual_seed(n * 100 + k)
    scores = torch.randn(37, 16, generator=gen) @ torch.randn(16, n, generator=gen)
    v, i = topk_rows(scores, k)
    check_topk(scores, k, v, i)
    assert torch.equal(topk_indices(scores, k), i)


def test_ties_masked_rows_and_tail(no_torch_topk):
    gen = torch.Generator().manual_seed(1)
    n, k = 1003, 50  # 1003 = 5 * 200 + 3: a tail window
    scores = torch.randint(0, 4, (12, n), generator=gen).float()  # heavy ties everywhere
    scores[1, :] = -1e10  # a row with everything masked
    scores[2, :] = -1e10
    scores[2, [0, 7, 500, 1001, 1002]] = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0])  # fewer than k left
    scores[3, :-2] = -1e10  # only the tail is unmasked
    scores[4, 1000:] = 100.0  # the tail holds the best
    scores[5, :] = 7.0  # one value
    v, i = topk_rows(scores, k)
    check_topk(scores, k, v, i)
    assert set(i[2, :5].tolist()) == {0, 7, 500, 1001, 1002} and i[2, 0] == 1001
    assert set(i[4, :3].tolist()) == {1000, 1001, 1002}


def test_small_and_edge_k():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(5, 30, generator=gen)
    for k in (1, 7, 30):  # n < 4k and k = n: torch.topk itself
        v, i = topk_rows(scores, k)
        check_topk(scores, k, v, i)
    with pytest.raises(RuntimeError):
        topk_rows(scores, 31)  # k > n, as torch.topk
    big = torch.randn(3, 4000, generator=gen)
    check_topk(big, 1, *topk_rows(big, 1))
    check_topk(big, 4000, *topk_rows(big, 4000))
    empty = torch.zeros(0, 4000)
    v, i = topk_rows(empty, 10)
    assert v.shape == i.shape == (0, 10)


def test_dtypes_views_and_specials(no_torch_topk):
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(20, 3001, generator=gen, dtype=torch.float64)
    check_topk(base, 20, *topk_rows(base, 20))
    sliced = base.float()[7:]  # a storage offset
    assert sliced.storage_offset() > 0
    check_topk(sliced, 20, *topk_rows(sliced, 20))
    t = torch.randn(3001, 9, generator=gen).t()  # not contiguous
    check_topk(t, 20, *topk_rows(t, 20))
    plus_inf = base.clone()
    plus_inf[0, [3, 2000]] = float("inf")
    check_topk(plus_inf, 20, *topk_rows(plus_inf, 20))


def test_row_blocks(monkeypatch, no_torch_topk):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # row blocks are single-thread only
    monkeypatch.setattr(evaluator_mod, "_BLOCK_ELEMS", 4 * 1003)  # blocks of 4 rows
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(39, 8, generator=gen) @ torch.randn(8, 1003, generator=gen)
    scores[10, :] = -1e10
    check_topk(scores, 50, *topk_rows(scores, 50))


def test_nan_and_neg_inf_rows_follow_torch(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(evaluator_mod, "_BLOCK_ELEMS", 2 * 3000)  # the NaN row's block falls back
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(6, 3000, generator=gen)
    s[0, 5] = float("nan")
    v, i = topk_rows(s, 10)
    rv, ri = torch.topk(s, 10, dim=1)
    assert torch.equal(i, ri) and torch.equal(v.isnan(), rv.isnan())
    s = torch.randn(6, 3000, generator=gen)
    s[1, :] = float("-inf")
    s[1, [10, 2999]] = 1.0
    check_topk(s, 10, *topk_rows(s, 10))


class RandomScores(GeneralRecommender):
    """Fixed random scores per (user, item): distinct values, so the top-K lists are unique."""

    def __init__(self, config, train_data):
        super().__init__(config, train_data)
        self.w = torch.nn.Parameter(torch.zeros(1))
        gen = torch.Generator().manual_seed(5)
        self.table = torch.randn(self.n_users, self.n_items, generator=gen)

    def calculate_loss(self, interaction):
        return (self.w ** 2).sum()

    def full_sort_predict(self, interaction):
        return self.table[interaction[0]].clone()


def test_trainer_evaluate_unchanged(tmp_path, h, monkeypatch):
    n_items = 1200
    rows = h.random_rows(n_users=70, n_items=n_items, per_user=(5, 40), seed=6)
    rows.append((0, n_items - 1, 0))
    h.write_inter(tmp_path, "wide", rows)
    cfg = h.make_config(tmp_path, "wide", is_multimodal_model=False, topk=[5, 10, 20, 50])
    train, valid, test = RecDataset(cfg).split()
    assert train.get_item_num() == n_items
    tr = TrainDataLoader(cfg, train, 64)
    te = EvalDataLoader(cfg, test, train, 32)
    trainer = Trainer(cfg, RandomScores(cfg, tr))
    calls = []
    real = evaluator_mod.topk_rows
    monkeypatch.setattr(evaluator_mod, "topk_rows", lambda s, k: calls.append(k) or real(s, k))
    ours = trainer.evaluate(te)
    assert calls and all(k == 50 for k in calls)
    monkeypatch.setattr(evaluator_mod, "topk_rows", lambda s, k: torch.topk(s, k, dim=-1))
    assert trainer.evaluate(te) == ours
    assert ours["recall@50"] > 0
