"""BRObjective against a naive reference: pools fixed by a seed, negatives chosen by the
other modalities, every term recomputed with Python loops and math.log1p(exp)."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.method.config import BRMRSConfig
from mmrec_plugin.method.objective import OBJECTIVE_KEYS, BRObjective


def _setup(n_mod=2, n_users=8, n_items=15, d=4, seed=0):
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    names = ["text", "visual", "audio"][:n_mod]
    users_rep = {m: torch.randn(n_users, d, generator=g, requires_grad=True) for m in names}
    items_rep = {m: torch.randn(n_items, d, generator=g, requires_grad=True) for m in names}
    return train, names, users_rep, items_rep


def softplus(x):
    return math.log1p(math.exp(x)) if x < 30 else x


def reference(train, names, U, I, users, pos, neg, pool, w, margin):
    """Row by row: CHNS negatives = argmax over the pool of the other branches' summed scores."""
    dense = train.toarray() > 0
    chns = syn = bpr = 0.0
    for b, u in enumerate(users):
        assert not dense[u, pool[b]].any()
        s = {m: lambda j, m=m: float(U[m][u] @ I[m][j]) for m in names}
        pool_s = {m: [s[m](j) for j in pool[b]] for m in names}
        for m in names:
            others = [sum(pool_s[o][k] for o in names if o != m) for k in range(len(pool[b]))]
            hard = pool[b][int(np.argmax(others))]
            chns += softplus(-(s[m](pos[b]) - s[m](hard)))
        d = {m: s[m](pos[b]) - s[m](neg[b]) for m in names}
        d_f = sum(d.values())  # concat fusion: s_f = sum of branch scores
        syn += softplus(-(d_f - max(d.values()) - margin))
        bpr += softplus(-d_f)
    n = len(users)
    return {"chns": w["chns"] * chns / n, "syn": w["syn"] * syn / n, "bpr": w["bpr"] * bpr / n}


@pytest.mark.parametrize("n_mod", [2, 3])
@pytest.mark.parametrize("pool_size", [5, 40])  # 5: the sampled-product kernel; 40 > n_items: gather
def test_objective_equals_naive_reference(n_mod, pool_size):
    train, names, U, I = _setup(n_mod)
    obj = BRObjective(train, {"chns_weight": 0.7, "syn_weight": 0.4, "bpr_weight": 0.3,
                              "syn_margin": 0.2, "pool_size": [pool_size], "chns_hardness": "argmax"})
    users, pos, neg = torch.tensor([0, 1, 3, 3, 7]), torch.tensor([2, 4, 6, 1, 0]), torch.tensor([5, 5, 9, 10, 14])
    branches = {m: (U[m][users], I[m]) for m in names}
    torch.manual_seed(5)
    pool = obj.candidate_pool(users)
    torch.manual_seed(5)
    terms = obj(users, pos, neg, branches)
    assert list(terms) == ["chns", "syn", "bpr"]
    with torch.no_grad():
        want = reference(train, names, {m: U[m].detach() for m in names}, {m: I[m].detach() for m in names},
                         users.tolist(), pos.tolist(), neg.tolist(), pool.tolist(),
                         {"chns": 0.7, "syn": 0.4, "bpr": 0.3}, 0.2)
    for k in want:
        assert float(terms[k].detach()) == pytest.approx(want[k], rel=1e-5), k
    sum(terms.values()).backward()
    assert all(U[m].grad.abs().sum() > 0 and I[m].grad.abs().sum() > 0 for m in names)


def test_two_modalities_reduce_to_eq_11():
    """M = 2: the text branch is trained on argmax s_v, the visual branch on argmax s_t."""
    train, names, U, I = _setup(2)
    obj = BRObjective(train, pool_size=6, chns_hardness="argmax")
    users = torch.tensor([0, 2, 5])
    branches = {m: (U[m][users].detach(), I[m].detach()) for m in names}
    torch.manual_seed(1)
    pool = obj.candidate_pool(users)
    torch.manual_seed(1)
    neg = obj.negatives(users, branches)
    s_t = (U["text"][users].unsqueeze(1) * I["text"][pool]).sum(-1)
    s_v = (U["visual"][users].unsqueeze(1) * I["visual"][pool]).sum(-1)
    rows = torch.arange(3)
    assert neg["text"].tolist() == pool[rows, s_v.argmax(1)].tolist()
    assert neg["visual"].tolist() == pool[rows, s_t.argmax(1)].tolist()


def test_scorers_and_fused_pairs_give_the_same_terms():
    """A branch as a scorer callable, and fused = concatenated vectors, equal the pair form
    with fused None (s_f = s_t + s_v)."""
    train, names, U, I = _setup(2)
    obj = BRObjective(train, pool_size=4)
    users, pos, neg = torch.tensor([1, 4, 6]), torch.tensor([0, 3, 8]), torch.tensor([2, 7, 11])
    pairs = {m: (U[m][users], I[m]) for m in names}
    scorers = {m: (lambda items, m=m: (U[m][users].unsqueeze(1) * I[m][items]).sum(-1)) for m in names}
    fused = (torch.cat([U[m][users] for m in names], 1), torch.cat([I[m] for m in names], 1))
    got = []
    for br, f in ((pairs, None), (scorers, None), (pairs, fused)):
        torch.manual_seed(3)
        got.append({k: float(v.detach()) for k, v in obj(users, pos, neg, br, fused=f).items()})
    for other in got[1:]:
        assert other == pytest.approx(got[0], rel=1e-6)


@pytest.mark.parametrize("n_mod", [2, 3])
def test_pool_softmax_term_equals_naive_reference(n_mod):
    """The pool term: the fused score (sum of branch scores) of the positive against the same
    pool CHNS draws, softmax at temperature tau, recomputed row by row with math.exp."""
    train, names, U, I = _setup(n_mod)
    obj = BRObjective(train, chns_weight=1.0, pool_softmax_weight=0.6, pool_softmax_temperature=0.5,
                      pool_size=5)
    users, pos, neg = torch.tensor([0, 2, 5, 7]), torch.tensor([1, 3, 8, 0]), torch.tensor([4, 6, 9, 12])
    branches = {m: (U[m][users], I[m]) for m in names}
    torch.manual_seed(11)
    pool = obj.candidate_pool(users).tolist()
    torch.manual_seed(11)
    terms = obj(users, pos, neg, branches)
    assert list(terms) == ["chns", "syn", "bpr", "pool"]
    want = 0.0
    for b, u in enumerate(users.tolist()):
        s_f = lambda j: sum(float(U[m][u].detach() @ I[m][j].detach()) for m in names)  # noqa: E731
        logits = [s_f(pos[b].item()) / 0.5] + [s_f(j) / 0.5 for j in pool[b]]
        want += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert float(terms["pool"].detach()) == pytest.approx(0.6 * want / len(users), rel=1e-5)
    terms["pool"].backward()  # the pool term trains every branch (pool scores keep their gradient)
    assert all(I[m].grad.abs().sum() > 0 for m in names)
    # a fused pair (concatenated vectors) gives the same term
    fused = (torch.cat([U[m][users] for m in names], 1), torch.cat([I[m] for m in names], 1))
    torch.manual_seed(11)
    again = obj(users, pos, neg, branches, fused=fused)
    assert float(again["pool"].detach()) == pytest.approx(float(terms["pool"].detach()), rel=1e-6)


#: the objective's documented defaults (docs/METHOD.md), written out by hand
DOCUMENTED = {"pool_size": 32, "neg_strategy": "cross", "chns_hardness": "topk",
              "chns_temperature": 1.0, "chns_topk": 4, "chns_warmup": 0, "chns_decay": 1.0,
              "chns_guard": False, "branch_bpr_weight": 0.0, "chns_weight": 1.0,
              "syn_weight": 1.0, "syn_margin": 0.1, "syn_detach": False, "bpr_weight": 1.0,
              "pool_softmax_weight": 0.0, "pool_softmax_temperature": 1.0}


def test_zero_weights_drop_terms_and_documented_defaults():
    train, names, U, I = _setup(2)
    obj = BRObjective(train, chns_weight=0.0, bpr_weight=0.0)
    users = torch.tensor([0, 1])
    terms = obj(users, torch.tensor([1, 2]), torch.tensor([3, 4]), {m: (U[m][users], I[m]) for m in names})
    assert list(terms) == ["syn"]
    default = BRObjective(train)
    assert set(OBJECTIVE_KEYS) == set(DOCUMENTED)
    for k, want in DOCUMENTED.items():
        assert getattr(default.cfg, k) == want, k
    # the pool drawn: the default 32 clamped to the 15 items of this dataset
    assert default.pool_size == 15 == train.shape[1]
    with pytest.raises(ConfigError, match="pool_size"):
        BRObjective(train, {"pool_size": 0})
    with pytest.raises(TypeError, match="embedding_size"):
        BRObjective(train, embedding_size=3)
    # another model's config: only the objective's keys are read (its reg_weight grid is not ours)
    other = BRObjective(train, {"reg_weight": [0.0, 1e-5], "n_layers": 2, "syn_weight": [0.5]})
    assert other.cfg.syn_weight == 0.5 and other.cfg.chns_weight == DOCUMENTED["chns_weight"]
