"""Candidate pools and the choice of hard negatives (docs/METHOD.md, "CHNS").

Candidate pool ``N(u)``: ``P`` items drawn independently and uniformly from ``I \\ O_u``
(with replacement) for every training pair of the batch. Only training positives are
excluded: validation and test items stay allowed (excluding them would leak them).

Sampling is rejection sampling, vectorised: draw ``[B, P]`` items uniformly from ``I``,
encode each draw as ``u * n_items + i`` and look it up with ``torch.searchsorted`` in the
sorted codes of the training pairs; redraw only the collisions, round after round (the
loop runs over rounds, never over samples). A collision-free draw is uniform over
``I \\ O_u``, since every allowed item has the same chance in every round.

Negative strategies (``neg_strategy``), given the pool scores ``s_m`` ``[B, P]`` of every
modality branch ``m`` (and of the fused branch for ``fused``):

- ``cross`` (CHNS): branch ``m`` is trained on the pool item that the OTHER branches rank
  highest, ``j_m = argmax_j sum_{m' != m} s_m'(u, j)`` (with concat fusion, the fused score
  of the model without branch ``m``). For two modalities this is the paper's eq. 10-11:
  the text branch on ``j_v = argmax s_v``, the visual branch on ``j_t = argmax s_t``;
- ``same``: branch ``m`` on ``argmax_j s_m(u, j)``;
- ``fused``: every branch on ``argmax_j s_f(u, j)``;
- ``uniform``: every branch on a uniform random pool item (column 0 of the pool, itself a
  uniform draw from ``I \\ O_u``; no scores needed).

:func:`select_negatives` is the one place that turns pool scores into negatives (a softer
choice than the argmax, e.g. sampling by softmax, goes into :func:`_pick`). Selection runs
under ``torch.no_grad()``: the argmax chooses, it does not train.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import Tensor


__all__ = ["NEG_STRATEGIES", "sample_candidate_pool", "select_negatives"]

NEG_STRATEGIES = ("cross", "same", "fused", "uniform")


def _train_codes(train_indptr: Tensor, train_indices: Tensor, n_items: int) -> Tensor:
    counts = train_indptr[1:] - train_indptr[:-1]
    rows = torch.repeat_interleave(
        torch.arange(counts.numel(), device=train_indices.device), counts
    )
    return rows * n_items + train_indices


def sample_candidate_pool(
    users: Tensor,
    pool_size: int,
    train_indptr: Tensor,
    train_indices: Tensor,
    n_items: int,
    generator: Optional[torch.Generator] = None,
    max_rounds: int = 10000,
    train_codes: Optional[Tensor] = None,
) -> Tensor:
    """Uniform draws from ``I \\ O_u``.

    Args:
        users: LongTensor ``[B]``.
        pool_size: ``P >= 1``.
        train_indptr, train_indices: the training matrix in CSR form (torch, on the device of
            ``users``, indices sorted within rows; e.g. from :func:`mmrec_plugin.sparse.binarize`).
        n_items: ``|I|``.
        generator: optional torch generator (on ``users.device``) for reproducible draws.
        max_rounds: give up after this many redraw rounds (only reachable when a user has
            almost every item in training).
        train_codes: precomputed sorted codes ``u * n_items + i`` of the training pairs
            (optional; computed from the CSR arrays otherwise).

    Returns:
        LongTensor ``[B, P]`` of item ids, none a training positive of its row's user.
    """
    if pool_size < 1:
        raise ValueError(f"sample_candidate_pool: pool_size must be >= 1, got {pool_size!r}")
    device = users.device
    users = users.long()
    counts = train_indptr[1:] - train_indptr[:-1]
    if bool((counts[users] >= n_items).any()):
        raise ValueError("sample_candidate_pool: a user has every item in training; no negative exists")
    codes = train_codes if train_codes is not None else _train_codes(train_indptr, train_indices, n_items)
    pool = torch.randint(n_items, (users.numel(), pool_size), device=device, generator=generator)
    if codes.numel() == 0:
        return pool
    base = (users * n_items).unsqueeze(1)
    last = codes.numel() - 1

    def collides(u_base: Tensor, items: Tensor) -> Tensor:
        c = u_base + items
        pos = torch.searchsorted(codes, c).clamp_(max=last)
        return codes[pos] == c

    bad = collides(base, pool)
    rounds = 0
    while bool(bad.any()):
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"sample_candidate_pool: collisions left after {max_rounds} rounds")
        idx = bad.nonzero(as_tuple=True)
        redraw = torch.randint(n_items, (idx[0].numel(),), device=device, generator=generator)
        pool[idx] = redraw
        still = collides(base[idx[0], 0], redraw)
        bad = torch.zeros_like(bad)
        bad[idx[0][still], idx[1][still]] = True
    return pool


def _pick(scores: Tensor, pool: Tensor) -> Tensor:
    """The pool item of highest score per row: ``[B, P]`` scores -> ``[B]`` item ids."""
    return pool.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)


def select_negatives(
    strategy: str,
    scores: Mapping[str, Tensor],
    pool: Tensor,
    fused: Optional[Tensor] = None,
) -> Dict[str, Tensor]:
    """One negative per row of ``pool`` for every modality branch.

    Args:
        strategy: ``cross``, ``same``, ``fused`` or ``uniform`` (module docstring).
        scores: branch name -> pool scores ``[B, P]``, for every branch (its keys name the
            branches; for ``fused`` and ``uniform`` the values are not read and may be None).
        pool: LongTensor ``[B, P]`` of item ids.
        fused: the fused branch's pool scores ``[B, P]`` (``fused`` only).

    Returns:
        branch name -> LongTensor ``[B]``, in the order of ``scores``.
    """
    if strategy not in NEG_STRATEGIES:
        raise ValueError(f"select_negatives: unknown strategy {strategy!r}; allowed: {', '.join(NEG_STRATEGIES)}")
    names = list(scores)
    with torch.no_grad():
        if strategy == "uniform":
            return {m: pool[:, 0] for m in names}
        if strategy == "fused":
            if fused is None:
                raise ValueError("select_negatives: strategy 'fused' needs the fused pool scores")
            neg = _pick(fused, pool)
            return {m: neg for m in names}
        missing = [m for m in names if scores[m] is None]
        if missing:
            raise ValueError(f"select_negatives: strategy {strategy!r} needs the pool scores of {missing}")
        if strategy == "same":
            return {m: _pick(scores[m], pool) for m in names}
        if len(names) < 2:
            raise ValueError("select_negatives: strategy 'cross' needs at least two branches")
        out = {}
        for m in names:  # a loop over the M branches, not over samples
            others = [scores[o] for o in names if o != m]
            total = others[0]
            for s in others[1:]:
                total = total + s
            out[m] = _pick(total, pool)
        return out
