"""User-subset analysis: which branch (text, visual, fused) finds each held-out target.

BR-MRS, docs/METHOD.md "Subset analysis" (paper Sections 3.2-3.3, 5.5-5.6, eq. 5-9).

For every evaluated (user, target) pair ``(u, i)`` the rank of ``i`` under each branch score
``s_m``, ``m in {t, v, f}``, is

    r_m(u, i) = 1 + |{ j in I \\ O_u : s_m(u, j) > s_m(u, i) }|

with ``O_u`` the user's TRAINING items (masked, as in MMRec's full ranking). The user's other
evaluation targets are NOT masked (MMRec's rule); ties count in the target's favour (strictly
higher scores only). A branch succeeds at cutoff ``K`` when ``r_m <= K``; write ``t, v, f``
for the three success flags.

Six-way partition (every pair lands in exactly one class):

=================  ==========================  =============================================
class              condition                   meaning
=================  ==========================  =============================================
redundant          t and v and f               both modalities and the fusion find it
fusion_degraded    t and v and not f           both modalities find it, the fusion loses it
visual_unique      v and not t   (any f)       only the visual branch of the two finds it
text_unique        t and not v   (any f)       only the text branch of the two finds it
synergy            f and not t and not v       only the fusion finds it
all_fail           not t and not v and not f   nobody finds it
=================  ==========================  =============================================

The paper's wording ("visual-unique (v ok, t fail)") leaves ``f`` free for the two unique classes;
we keep it free so that the six classes partition all pairs: the ``(t, v)`` outcome splits
pairs into four groups, and the two groups where the modalities agree are further split by
``f``.

Seed subsets (eq. 5-8), ratios ``R(U) = |U| / |all pairs|`` (eq. 9):

- ``U_t``  = t and not v and not f   (text-unique information lost by the fusion)
- ``U_v``  = v and not t and not f   (visual-unique information lost by the fusion)
- ``U_tv`` = f and not t and not v   (synergy; equals the ``synergy`` class)
- ``U_r``  = t and v and not f       (redundant information lost; equals ``fusion_degraded``)

Unit: (user, target) pairs; under leave-one-out this equals users.

Per-type recall (synthetic data, docs/METHOD.md): every test pair carries a ground-truth type
(text, visual, synergy, redundant). ``Recall@K`` of a type is the number of pairs of that type
whose target the FUSED branch ranks within ``K``, divided by the number of pairs of that type
(a micro average over pairs). Under leave-one-out this is the usual per-user Recall@K averaged
over the users whose test item has that type; with several targets per user it weights every
pair equally (it is not MMRec's per-user average ``hits / |T_u|``).

Everything here is vectorised; :func:`analyze_model` scores users in blocks of
``batch_size`` and never holds a users x items score matrix for all users at once.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
import torch

from mmrec_plugin.errors import UserError

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[int]]

BRANCHES = ("t", "v", "f")
CLASSES = ("redundant", "fusion_degraded", "visual_unique", "text_unique", "synergy", "all_fail")
SEED_SUBSETS = ("U_t", "U_v", "U_tv", "U_r")
PAIR_TYPES = ("text", "visual", "synergy", "redundant")

# Element budget of one [pairs, n_items] comparison block inside ranks_of_targets.
_COMPARE_BUDGET = 1 << 24


def _as_long(x: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(x, dtype=np.int64), device=device)


def ranks_of_targets(
    scores: torch.Tensor,
    train_rows: ArrayLike,
    train_cols: ArrayLike,
    target_rows: ArrayLike,
    target_items: ArrayLike,
) -> torch.Tensor:
    """Rank of each target among the non-masked items of its row.

    ``rank = 1 + #{j not masked in that row : scores[row, j] > scores[row, target]}``.

    Args:
        scores: ``[B, n_items]`` scores of a block of users (not modified).
        train_rows, train_cols: ``[nnz]`` (row in block, item) pairs to mask (training items).
        target_rows: ``[P]`` row in block of each evaluated pair.
        target_items: ``[P]`` target item of each pair (assumed not masked in its row).

    Returns:
        ``LongTensor[P]`` of ranks (1 = best), on ``scores.device``.

    Shapes: the comparison runs over chunks of pairs of at most ~16M elements.
    """
    device = scores.device
    tr = _as_long(train_rows, device)
    tc = _as_long(train_cols, device)
    rows = _as_long(target_rows, device)
    items = _as_long(target_items, device)
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, n_items], got shape {tuple(scores.shape)}")
    masked = scores.clone()
    if tr.numel():
        masked[tr, tc] = float("-inf")
    target_scores = scores[rows, items]
    n_items = scores.shape[1]
    chunk = max(1, _COMPARE_BUDGET // max(1, n_items))
    out = torch.empty(rows.shape[0], dtype=torch.long, device=device)
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        higher = masked[rows[sl]] > target_scores[sl].unsqueeze(1)
        out[sl] = higher.sum(dim=1) + 1
    return out


def class_masks(r_t: ArrayLike, r_v: ArrayLike, r_f: ArrayLike, k: int) -> Dict[str, np.ndarray]:
    """Boolean masks ``[P]`` of the six classes and the four seed subsets (see module doc)."""
    k = _check_k(k)
    t = np.asarray(_np(r_t)) <= k
    v = np.asarray(_np(r_v)) <= k
    f = np.asarray(_np(r_f)) <= k
    if not (t.shape == v.shape == f.shape) or t.ndim != 1:
        raise ValueError(f"rank arrays must be 1-D of equal length, got {t.shape}, {v.shape}, {f.shape}")
    return {
        "redundant": t & v & f,
        "fusion_degraded": t & v & ~f,
        "visual_unique": v & ~t,
        "text_unique": t & ~v,
        "synergy": f & ~t & ~v,
        "all_fail": ~t & ~v & ~f,
        "U_t": t & ~v & ~f,
        "U_v": v & ~t & ~f,
        "U_tv": f & ~t & ~v,
        "U_r": t & v & ~f,
    }


def _count_table(masks: Mapping[str, np.ndarray], names: Sequence[str], n: int) -> Dict[str, Dict]:
    return {
        name: {"count": int(masks[name].sum()), "ratio": (float(masks[name].sum()) / n) if n else 0.0}
        for name in names
    }


def partition(r_t: ArrayLike, r_v: ArrayLike, r_f: ArrayLike, k: int = 20) -> Dict[str, Dict]:
    """The six-way partition at cutoff ``k``: ``{class: {'count': int, 'ratio': float}}``.

    Ratios are over all pairs (they sum to 1; all 0.0 when there are no pairs).
    """
    masks = class_masks(r_t, r_v, r_f, k)
    return _count_table(masks, CLASSES, len(masks["redundant"]))


def seed_subsets(r_t: ArrayLike, r_v: ArrayLike, r_f: ArrayLike, k: int = 20) -> Dict[str, Dict]:
    """Seed subsets U_t, U_v, U_tv, U_r (eq. 5-8) with ratios ``|U| / |all|`` (eq. 9)."""
    masks = class_masks(r_t, r_v, r_f, k)
    return _count_table(masks, SEED_SUBSETS, len(masks["redundant"]))


def per_type_recall(hit_f: ArrayLike, pair_types: Sequence[str]) -> Dict[str, Dict]:
    """Recall per ground-truth pair type: hits of that type / pairs of that type.

    Args:
        hit_f: ``[P]`` bool, the fused branch ranks the pair's target within K.
        pair_types: ``[P]`` type name of each pair (e.g. text, visual, synergy, redundant).

    Returns:
        ``{type: {'recall': float or None, 'hits': int, 'n_pairs': int}}`` for the four
        canonical types (``recall`` None when a type has no pair) and any other type present.
    """
    hit = np.asarray(_np(hit_f)).astype(bool)
    types = np.asarray(pair_types).astype(str)
    if hit.shape != types.shape or hit.ndim != 1:
        raise ValueError(f"hit_f and pair_types must be 1-D of equal length, got {hit.shape} and {types.shape}")
    names, inverse = np.unique(types, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = np.bincount(inverse, minlength=len(names))
    h = np.bincount(inverse, weights=hit.astype(np.float64), minlength=len(names))
    found = {str(name): (int(h[j]), int(n[j])) for j, name in enumerate(names)}
    out = {}
    for name in list(PAIR_TYPES) + sorted(set(found) - set(PAIR_TYPES)):
        hits, count = found.get(name, (0, 0))
        out[name] = {"recall": (hits / count) if count else None, "hits": hits, "n_pairs": count}
    return out


def _model_device(model) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, (torch.device, str)):
        return torch.device(dev)
    for p in model.parameters() if hasattr(model, "parameters") else ():
        return p.device
    return torch.device("cpu")


def branch_ranks(
    model,
    train_csr: sp.spmatrix,
    test_users: ArrayLike,
    test_items: ArrayLike,
    batch_size: int = 1024,
) -> Dict[str, np.ndarray]:
    """Ranks ``r_t, r_v, r_f`` of every (user, target) pair, in the input order.

    Users are scored in blocks of ``batch_size`` distinct users through
    ``model.branch_scores(users) -> {'t','v','f': [B, n_items]}`` under ``torch.no_grad()``
    with the model in eval mode (its previous mode is restored afterwards).

    Returns:
        ``{'t': int64[P], 'v': int64[P], 'f': int64[P]}``.
    """
    if not hasattr(model, "branch_scores"):
        raise UserError(
            f"model {type(model).__name__} has no branch_scores(users); the subset analysis "
            "needs a multimodal model exposing text/visual/fused scores (e.g. BRMRS)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    users = np.asarray(_np(test_users), dtype=np.int64).reshape(-1)
    items = np.asarray(_np(test_items), dtype=np.int64).reshape(-1)
    if users.shape != items.shape:
        raise ValueError(f"test_users and test_items differ in length: {users.shape} vs {items.shape}")
    train = sp.csr_matrix(train_csr)
    out = {m: np.zeros(len(users), dtype=np.int64) for m in BRANCHES}
    if len(users) == 0:
        return out
    if users.min() < 0 or users.max() >= train.shape[0] or items.min() < 0 or items.max() >= train.shape[1]:
        raise UserError(
            f"test pairs out of range: users must be in [0, {train.shape[0]}), items in [0, {train.shape[1]})"
        )
    order = np.argsort(users, kind="stable")
    su, si = users[order], items[order]
    uniq = np.unique(su)
    device = _model_device(model)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    n_blocks = (len(uniq) + batch_size - 1) // batch_size
    try:
        with torch.no_grad():
            for b, start in enumerate(range(0, len(uniq), batch_size)):
                block = uniq[start:start + batch_size]
                lo = np.searchsorted(su, block[0], side="left")
                hi = np.searchsorted(su, block[-1], side="right")
                rows = np.searchsorted(block, su[lo:hi])  # row in block of each pair
                sub = train[block].tocoo()
                scores = model.branch_scores(torch.as_tensor(block, device=device))
                for m in BRANCHES:
                    if m not in scores:
                        raise UserError(f"branch_scores must return keys {BRANCHES}, got {sorted(scores)}")
                    s = scores[m]
                    if tuple(s.shape) != (len(block), train.shape[1]):
                        raise UserError(
                            f"branch_scores()['{m}'] has shape {tuple(s.shape)}, expected "
                            f"({len(block)}, {train.shape[1]}) (block users x n_items)"
                        )
                    r = ranks_of_targets(s, sub.row, sub.col, rows, si[lo:hi])
                    out[m][order[lo:hi]] = r.cpu().numpy()
                logger.debug("subset analysis: user block %d of %d", b + 1, n_blocks)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return out


def summarize(
    ranks: Mapping[str, ArrayLike], k: int = 20, pair_types: Optional[Sequence[str]] = None
) -> Dict:
    """The JSON-able summary of branch ranks: see :func:`analyze_model`."""
    k = _check_k(k)
    r_t, r_v, r_f = (np.asarray(_np(ranks[m])) for m in BRANCHES)
    n = int(len(r_f))
    result = {
        "n_pairs": n,
        "k": k,
        "partition": partition(r_t, r_v, r_f, k),
        "seed_subsets": seed_subsets(r_t, r_v, r_f, k),
        "branch_hit_rate": {m: (float((np.asarray(_np(ranks[m])) <= k).mean()) if n else 0.0) for m in BRANCHES},
    }
    if pair_types is not None:
        types = np.asarray(pair_types)
        if len(types) != n:
            raise ValueError(f"pair_types has {len(types)} entries for {n} pairs")
        result["per_type_recall"] = per_type_recall(r_f <= k, types)
    return result


def analyze_model(
    model,
    train_csr: sp.spmatrix,
    test_users: ArrayLike,
    test_items: ArrayLike,
    k: int = 20,
    pair_types: Optional[Sequence[str]] = None,
    batch_size: int = 1024,
) -> Dict:
    """Subset analysis of a trained model on (user, target) pairs.

    Args:
        model: exposes ``branch_scores(users: LongTensor[B]) -> {'t','v','f': [B, n_items]}``.
        train_csr: ``(n_users, n_items)`` training matrix; its non-zeros are masked.
        test_users, test_items: ``[P]`` evaluated pairs (one per held-out interaction).
        k: cutoff for success (default 20).
        pair_types: optional ``[P]`` ground-truth types (synthetic data).
        batch_size: distinct users scored per block (default 1024).

    Returns:
        JSON-able dict: ``n_pairs``, ``k``, ``partition`` (six classes, count and ratio),
        ``seed_subsets`` (U_t, U_v, U_tv, U_r), ``branch_hit_rate`` (share of pairs each branch
        ranks within K), and ``per_type_recall`` when ``pair_types`` is given.
    """
    k = _check_k(k)
    ranks = branch_ranks(model, train_csr, test_users, test_items, batch_size=batch_size)
    return summarize(ranks, k=k, pair_types=pair_types)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"k (cutoff) must be a positive integer, got {k!r}")
    return int(k)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x
