"""Subset analysis: ranks, the six-way partition, seed subsets, per-type recall, analyze_model."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_plugin.analysis import subsets
from mmrec_plugin.analysis.subsets import (
    CLASSES,
    analyze_model,
    branch_ranks,
    class_masks,
    partition,
    per_type_recall,
    ranks_of_targets,
    seed_subsets,
)
from mmrec_plugin.errors import UserError


# ---------------------------------------------------------------- partition on hand-made triples
def test_partition_every_success_pattern_by_hand():
    k = 20
    ok, no = 5, 50
    # one pair per (t, v, f) success pattern, in the order of itertools.product
    pats = list(itertools.product([True, False], repeat=3))
    r_t = [ok if t else no for t, _, _ in pats]
    r_v = [ok if v else no for _, v, _ in pats]
    r_f = [ok if f else no for _, _, f in pats]
    expected_class = {
        (True, True, True): "redundant",
        (True, True, False): "fusion_degraded",
        (True, False, True): "text_unique",
        (True, False, False): "text_unique",
        (False, True, True): "visual_unique",
        (False, True, False): "visual_unique",
        (False, False, True): "synergy",
        (False, False, False): "all_fail",
    }
    masks = class_masks(r_t, r_v, r_f, k)
    for j, pat in enumerate(pats):
        in_classes = [c for c in CLASSES if masks[c][j]]
        assert in_classes == [expected_class[pat]], (pat, in_classes)
    part = partition(r_t, r_v, r_f, k)
    assert {c: part[c]["count"] for c in CLASSES} == {
        "redundant": 1, "fusion_degraded": 1, "visual_unique": 2,
        "text_unique": 2, "synergy": 1, "all_fail": 1,
    }
    assert part["text_unique"]["ratio"] == pytest.approx(2 / 8)
    seeds = seed_subsets(r_t, r_v, r_f, k)
    assert {s: seeds[s]["count"] for s in seeds} == {"U_t": 1, "U_v": 1, "U_tv": 1, "U_r": 1}
    assert seeds["U_t"]["ratio"] == pytest.approx(1 / 8)


def test_partition_boundary_is_inclusive():
    # rank == k succeeds, k + 1 fails
    part = partition([20, 21], [21, 20], [21, 21], k=20)
    assert part["text_unique"]["count"] == 1
    assert part["visual_unique"]["count"] == 1


def test_partition_random_triples_is_a_partition_and_seeds_match_definitions():
    rng = np.random.default_rng(0)
    r_t, r_v, r_f = (rng.integers(1, 60, size=500) for _ in range(3))
    k = 20
    masks = class_masks(r_t, r_v, r_f, k)
    stacked = np.stack([masks[c] for c in CLASSES])
    assert (stacked.sum(0) == 1).all()
    part = partition(r_t, r_v, r_f, k)
    assert sum(part[c]["count"] for c in CLASSES) == 500
    assert sum(part[c]["ratio"] for c in CLASSES) == pytest.approx(1.0)
    t, v, f = r_t <= k, r_v <= k, r_f <= k
    seeds = seed_subsets(r_t, r_v, r_f, k)
    # definitions written out pair by pair
    naive = {"U_t": 0, "U_v": 0, "U_tv": 0, "U_r": 0}
    for a, b, c in zip(t, v, f):
        naive["U_t"] += a and not b and not c
        naive["U_v"] += b and not a and not c
        naive["U_tv"] += c and not a and not b
        naive["U_r"] += a and b and not c
    assert {s: seeds[s]["count"] for s in naive} == naive
    assert seeds["U_tv"]["count"] == part["synergy"]["count"]
    assert seeds["U_r"]["count"] == part["fusion_degraded"]["count"]


def test_partition_empty_and_bad_k():
    part = partition([], [], [], k=20)
    assert all(part[c]["count"] == 0 and part[c]["ratio"] == 0.0 for c in CLASSES)
    with pytest.raises(UserError, match="k"):
        partition([1], [1], [1], k=0)


# ---------------------------------------------------------------- ranks
def naive_rank(scores, train_set, row, item):
    s = scores[row]
    return 1 + sum(1 for j in range(len(s)) if (row, j) not in train_set and s[j] > s[item])


def test_ranks_of_targets_matches_naive_loop_with_masking():
    rng = np.random.default_rng(1)
    B, n = 6, 15
    scores = torch.tensor(rng.integers(0, 6, size=(B, n)).astype(np.float32))  # many ties
    train = [(r, j) for r in range(B) for j in range(n) if rng.random() < 0.3]
    train_set = set(train)
    targets = [(r, j) for r in range(B) for j in range(n) if (r, j) not in train_set and rng.random() < 0.3]
    tr = np.array([p[0] for p in train]); tc = np.array([p[1] for p in train])
    rows = np.array([p[0] for p in targets]); items = np.array([p[1] for p in targets])
    before = scores.clone()
    got = ranks_of_targets(scores, tr, tc, rows, items)
    assert torch.equal(scores, before)  # input not modified
    expected = [naive_rank(scores.numpy(), train_set, r, j) for r, j in targets]
    assert got.tolist() == expected


def test_ranks_other_targets_not_masked_and_small_chunks(monkeypatch):
    # row 0: items 0..4 scores 5,4,3,2,1; item 0 is training (masked); targets 1 and 3
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    monkeypatch.setattr(subsets, "_COMPARE_BUDGET", 1)  # one pair per chunk
    got = ranks_of_targets(scores, [0], [0], [0, 0], [1, 3])
    # target 1: nothing above after masking -> 1; target 3: items 1, 2 above (1 is a target, not masked) -> 3
    assert got.tolist() == [1, 3]


# ---------------------------------------------------------------- per-type recall
def test_per_type_recall_by_hand():
    hit = [True, False, True, True, False, False]
    types = ["text", "text", "synergy", "redundant", "redundant", "redundant"]
    got = per_type_recall(hit, types)
    assert got["text"] == {"recall": 0.5, "hits": 1, "n_pairs": 2}
    assert got["synergy"] == {"recall": 1.0, "hits": 1, "n_pairs": 1}
    assert got["redundant"]["recall"] == pytest.approx(1 / 3)
    assert got["visual"] == {"recall": None, "hits": 0, "n_pairs": 0}


# ---------------------------------------------------------------- analyze_model with a fake model
class FakeModel(torch.nn.Module):
    """branch_scores from fixed [n_users, n_items] matrices; records the blocks it saw."""

    def __init__(self, mats):
        super().__init__()
        self.mats = {m: torch.as_tensor(a, dtype=torch.float32) for m, a in mats.items()}
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.blocks = []
        self.modes = []

    def branch_scores(self, users):
        self.blocks.append(len(users))
        self.modes.append((self.training, torch.is_grad_enabled()))
        return {m: a[users] for m, a in self.mats.items()}


def _fake_case(seed=2, n_users=9, n_items=12):
    rng = np.random.default_rng(seed)
    mats = {m: rng.integers(0, 8, size=(n_users, n_items)).astype(np.float32) for m in "tvf"}
    train = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if not train[u, i] and rng.random() < 0.25]
    rng.shuffle(pairs)  # users out of order
    users = np.array([p[0] for p in pairs]); items = np.array([p[1] for p in pairs])
    return mats, train, users, items


def test_branch_ranks_and_analyze_model_match_naive():
    mats, train, users, items = _fake_case()
    model = FakeModel(mats)
    model.train()
    train_csr = sp.csr_matrix(train)
    ranks = branch_ranks(model, train_csr, users, items, batch_size=4)
    train_set = {(int(u), int(i)) for u, i in zip(*np.nonzero(train))}
    for m in "tvf":
        expected = [naive_rank(mats[m], train_set, u, i) for u, i in zip(users, items)]
        assert ranks[m].tolist() == expected
    assert max(model.blocks) <= 4 and sum(model.blocks) == len(np.unique(users))
    assert all(mode == (False, False) for mode in model.modes)  # eval mode, no grad
    assert model.training  # mode restored

    k = 3
    types = np.array(["text", "visual", "synergy", "redundant"])[np.arange(len(users)) % 4]
    res = analyze_model(model, train_csr, users, items, k=k, pair_types=types, batch_size=4)
    exp_t = np.array([naive_rank(mats["t"], train_set, u, i) for u, i in zip(users, items)])
    exp_v = np.array([naive_rank(mats["v"], train_set, u, i) for u, i in zip(users, items)])
    exp_f = np.array([naive_rank(mats["f"], train_set, u, i) for u, i in zip(users, items)])
    assert res["n_pairs"] == len(users) and res["k"] == k
    assert res["partition"] == partition(exp_t, exp_v, exp_f, k)
    assert res["seed_subsets"] == seed_subsets(exp_t, exp_v, exp_f, k)
    for name in ("text", "synergy"):
        sel = types == name
        assert res["per_type_recall"][name]["recall"] == pytest.approx((exp_f[sel] <= k).mean())
    assert res["branch_hit_rate"]["v"] == pytest.approx((exp_v <= k).mean())
    import json
    json.dumps(res)  # JSON-able


def test_analyze_model_without_branch_scores_is_user_error():
    with pytest.raises(UserError, match="branch_scores"):
        analyze_model(torch.nn.Linear(1, 1), sp.csr_matrix((2, 2)), [0], [1])
