"""Candidate pools and hard-negative strategies (SPEC section 3).

Candidate pool ``N(u)``: ``P`` items drawn independently and uniformly from ``I \\ O_u``
(with replacement) for every training pair of the batch. Only training positives are
excluded: validation and test items stay allowed (excluding them would leak them).

Sampling is rejection sampling, vectorised: draw ``[B, P]`` items uniformly from ``I``,
encode each draw as ``u * n_items + i`` and look it up with ``torch.searchsorted`` in the
sorted codes of the training pairs; redraw only the collisions, round after round (the
loop runs over rounds, never over samples). A collision-free draw is uniform over
``I \\ O_u``, since every allowed item has the same chance in every round.

Negative strategies (``neg_strategy``), given pool scores ``s_t, s_v, s_f`` ``[B, P]``:

- ``cross`` (CHNS, eq. 10): the text branch is trained on ``j_v = argmax_j s_v(u, j)``,
  the visual branch on ``j_t = argmax_j s_t(u, j)``;
- ``same``: text on ``argmax s_t``, visual on ``argmax s_v``;
- ``fused``: both on ``argmax s_f``;
- ``uniform``: both on a uniform random pool item (column 0 of the pool, itself a uniform
  draw from ``I \\ O_u``; no scores needed).

Selection runs under ``torch.no_grad()``: the argmax chooses, it does not train.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mmrec_plugin.errors import ConfigError, did_you_mean

__all__ = ["NEG_STRATEGIES", "HARDNESS", "train_csr_tensors", "sample_candidate_pool", "pick_from_pool",
           "select_negatives"]

NEG_STRATEGIES = ("cross", "same", "fused", "uniform")


def train_csr_tensors(inter, device=None) -> Tuple[Tensor, Tensor]:
    """``(indptr, indices)`` LongTensors of the binarised training matrix, column indices
    sorted within each row (so ``u * n_items + i`` over the rows in order is sorted)."""
    m = sp.csr_matrix(inter, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    indptr = torch.from_numpy(m.indptr.astype(np.int64))
    indices = torch.from_numpy(m.indices.astype(np.int64))
    if device is not None:
        indptr, indices = indptr.to(device), indices.to(device)
    return indptr, indices


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
            ``users``, indices sorted within rows; :func:`train_csr_tensors`).
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
        raise ConfigError(f"pool_size: must be >= 1, got {pool_size!r}")
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


HARDNESS = ("argmax", "softmax", "topk")


def pick_from_pool(
    scores: Tensor,
    pool: Tensor,
    hardness: str = "argmax",
    temperature: float = 1.0,
    topk: int = 1,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """One item per row of ``pool`` ``[B, P]`` chosen by its scores ``[B, P]``.

    - ``argmax``: the highest-scoring item (the paper's eq. 10);
    - ``softmax``: a draw with probability ``softmax(scores / temperature)`` over the row
      (``temperature -> 0`` approaches ``argmax``, a large one approaches a uniform draw);
    - ``topk``: a uniform draw among the ``topk`` highest-scoring items of the row
      (``topk = 1`` is ``argmax``; ``topk >= P`` is a uniform pool item).
    """
    with torch.no_grad():
        if hardness == "argmax":
            col = scores.argmax(dim=1, keepdim=True)
        elif hardness == "softmax":
            probs = torch.softmax(scores.float() / temperature, dim=1)
            col = torch.multinomial(probs, 1, generator=generator)
        elif hardness == "topk":
            k = max(1, min(int(topk), scores.shape[1]))
            top = scores.topk(k, dim=1).indices
            r = torch.randint(k, (scores.shape[0], 1), device=scores.device, generator=generator)
            col = top.gather(1, r)
        else:
            raise ValueError(f"pick_from_pool: unknown hardness {hardness!r}; allowed: {', '.join(HARDNESS)}")
        return pool.gather(1, col).squeeze(1)


def select_negatives(
    strategy: str,
    s_t: Optional[Tensor],
    s_v: Optional[Tensor],
    s_f: Optional[Tensor],
    pool: Tensor,
    hardness: str = "argmax",
    temperature: float = 1.0,
    topk: int = 1,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """Pick one negative per row of ``pool`` for the text and for the visual branch.

    Args:
        strategy: ``cross``, ``same``, ``fused`` or ``uniform`` (module docstring).
        s_t, s_v, s_f: pool scores ``[B, P]`` under the text, visual and fused branches
            (only those the strategy reads are needed; pass None for the others).
        pool: LongTensor ``[B, P]`` of item ids.
        hardness, temperature, topk: how "hardest" is read (:func:`pick_from_pool`;
            the paper's rule is ``argmax``).

    Returns:
        ``(neg_for_text_branch, neg_for_visual_branch)``, LongTensors ``[B]``.
    """
    if strategy not in NEG_STRATEGIES:
        raise ConfigError(
            f"neg_strategy: unknown value {strategy!r}{did_you_mean(str(strategy), NEG_STRATEGIES)}; "
            f"allowed: {', '.join(NEG_STRATEGIES)}"
        )
    with torch.no_grad():
        if strategy == "uniform":
            neg = pool[:, 0]
            return neg, neg

        def hardest(s: Optional[Tensor], name: str) -> Tensor:
            if s is None:
                raise ValueError(f"select_negatives: strategy {strategy!r} needs {name}")
            return pick_from_pool(s, pool, hardness, temperature, topk, generator)

        if strategy == "cross":
            return hardest(s_v, "s_v"), hardest(s_t, "s_t")
        if strategy == "same":
            return hardest(s_t, "s_t"), hardest(s_v, "s_v")
        neg = hardest(s_f, "s_f")
        return neg, neg
