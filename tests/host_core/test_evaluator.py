import math
import types

import numpy as np
import pytest
import torch

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.evaluator import Evaluator, metrics_from_hits, topk_hits


def naive(scores, targets, train_masks, topk, metrics):
    """Per-user loops straight from the formulas (independent of the vectorised code)."""
    res = {f"{m.lower()}@{k}": [] for m in metrics for k in topk}
    for s, T, M in zip(scores, targets, train_masks):
        s = s.copy()
        s[list(M)] = -np.inf
        ranked = [int(i) for i in np.argsort(-s, kind="stable")]
        for k in topk:
            top = ranked[:k]
            rel = [1 if i in T else 0 for i in top]
            hits = sum(rel)
            for m in metrics:
                m = m.lower()
                if m == "recall":
                    v = hits / len(T)
                elif m == "precision":
                    v = hits / k
                elif m == "ndcg":
                    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
                    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(T), k)))
                    v = dcg / idcg
                else:
                    acc, h = 0.0, 0
                    for i, r in enumerate(rel):
                        h += r
                        acc += (h / (i + 1)) * r
                    v = acc / min(len(T), k)
                res[f"{m}@{k}"].append(v)
    return {key: float(np.mean(v)) for key, v in res.items()}


def _random_case(seed, n_users=40, n_items=60):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_users, n_items))
    targets, masks = [], []
    for _ in range(n_users):
        perm = rng.permutation(n_items)
        nt, nm = int(rng.integers(1, 12)), int(rng.integers(0, 10))
        targets.append(set(perm[:nt].tolist()))
        masks.append(set(perm[nt:nt + nm].tolist()))
    return scores, targets, masks


@pytest.mark.parametrize("topk", [[1], [5, 10, 20], [3, 50], [10, 7]])
@pytest.mark.parametrize("metrics", [["Recall", "NDCG", "Precision", "MAP"], ["map"], ["NDCG", "recall"]])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_reference(topk, metrics, seed):
    scores, targets, masks = _random_case(seed)
    n_items = scores.shape[1]
    masked = scores.copy()
    for r, M in enumerate(masks):
        masked[r, list(M)] = -1e10
    top = torch.topk(torch.from_numpy(masked), max(topk), dim=1)[1]
    lens = [len(T) for T in targets]
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = np.concatenate([sorted(T) for T in targets])
    hits = topk_hits(top, indptr, indices, n_items)
    got = metrics_from_hits(hits, np.array(lens), topk, metrics)
    want = naive(scores, targets, masks, topk, metrics)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    loader = types.SimpleNamespace(eval_items_per_user=(indptr, indices), n_items=n_items)
    ev = Evaluator({"metrics": metrics, "topk": topk})
    got2 = ev.evaluate([top[:17], top[17:]], loader)
    assert got2 == pytest.approx(got)


def test_hand_worked_case():
    # one user, targets {a, b}, ranked list [a, x, b]
    got = metrics_from_hits(np.array([[True, False, True]]), np.array([2]), [1, 3], ["recall", "precision", "ndcg", "map"])
    assert got["recall@1"] == pytest.approx(0.5)
    assert got["recall@3"] == pytest.approx(1.0)
    assert got["precision@3"] == pytest.approx(2 / 3)
    assert got["ndcg@1"] == pytest.approx(1.0)
    assert got["ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert got["map@1"] == pytest.approx(1.0)
    assert got["map@3"] == pytest.approx((1 + 2 / 3) / 2)


def test_topk_hits_hand_case():
    hits = topk_hits(np.array([[3, 1], [0, 2]]), np.array([0, 1, 3]), np.array([1, 0, 4]), 5)
    assert hits.tolist() == [[False, True], [True, False]]


def test_bad_metric_and_topk():
    with pytest.raises(ConfigError, match="unknown metric 'Recal'.*did you mean 'recall'"):
        Evaluator({"metrics": ["Recal"], "topk": [10]})
    with pytest.raises(ConfigError, match="topk"):
        Evaluator({"metrics": ["Recall"], "topk": [0]})
