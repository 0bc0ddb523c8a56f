"""BR-MRS losses (docs/METHOD.md, "Objective"), written with ``softplus`` / ``log_softmax`` only.

Notation: ``s_m(u, i)`` is the score of branch ``m``; ``softplus(-x) = -log sigmoid(x)``.

- BPR:       ``L_bpr = mean softplus(-(s(u,i+) - s(u,i-)))``.
- CHNS, with branch ``m``'s negative ``n_m`` chosen by
  :func:`~mmrec_plugin.method.pools.select_negatives`::

      L_chns = mean_b sum_m softplus(-(s_m(u,i+) - s_m(u,n_m)))

  (for two modalities, the paper's eq. 11: text on ``j_v``, visual on ``j_t``).
- Synergy-aware BPR (eq. 12-13), ``Δ_m = s_m(u,i+) - s_m(u,i-)``::

      L_syn = mean softplus(-(Δ_f - max_m Δ_m - theta))

  With ``detach=True`` no gradient flows through ``max_m Δ_m``: the loss cannot be lowered by
  making the unimodal branches worse.
- Pool softmax (sampled softmax of the positive against the candidate pool ``P(u)``,
  temperature ``tau``)::

      L_pool = mean_b -log softmax([s(u,i+), s(u,j) for j in P(u)] / tau)[0]

- InfoNCE between paired rows ``a_k, b_k`` (cosine similarity, temperature ``tau``)::

      L_nce(a, b) = -mean_k log softmax_l( cos(a_k, b_l) / tau )[k]

  ``symmetric=True`` averages ``L_nce(a, b)`` and ``L_nce(b, a)``.
- Orthogonality: ``||H_a^T H_b||_F^2 / B`` for batch representations ``H_a, H_b`` ``[B, d]``.

Shapes: score tensors ``[B]``; representations ``[B, d]``; every loss returns a scalar.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss", "chns_loss", "synergy_bpr_loss", "pool_softmax_loss", "info_nce", "orthogonality"]


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """``mean softplus(-(pos - neg))``."""
    return F.softplus(-(pos - neg)).mean()


def chns_loss(pos: Sequence[Tensor], neg: Sequence[Tensor]) -> Tensor:
    """Cross-modal hard-negative loss: ``mean_b sum_m softplus(-(pos[m] - neg[m]))``.

    Args:
        pos: per branch, the scores ``[B]`` of the positives.
        neg: per branch (same order), the scores ``[B]`` of that branch's own negative.
    """
    if len(pos) != len(neg) or not pos:
        raise ValueError(f"chns_loss: {len(pos)} positive and {len(neg)} negative score tensors")
    total = F.softplus(-(pos[0] - neg[0]))
    for p, n in zip(pos[1:], neg[1:]):
        total = total + F.softplus(-(p - n))
    return total.mean()


def synergy_bpr_loss(d_f: Tensor, d_branches: Sequence[Tensor], margin: float, detach: bool) -> Tensor:
    """Synergy-aware BPR on the pairwise margins ``Δ_f`` and ``Δ_m`` (one per branch) ``[B]``."""
    if not d_branches:
        raise ValueError("synergy_bpr_loss: no branch margins")
    best = d_branches[0]
    for d in d_branches[1:]:
        best = torch.maximum(best, d)
    if detach:
        best = best.detach()
    return F.softplus(-(d_f - best - margin)).mean()


def pool_softmax_loss(pos: Tensor, pool: Tensor, temperature: float) -> Tensor:
    """``mean_b -log softmax([pos_b, pool_b] / temperature)[0]``: the positive's scores ``[B]``
    against the pool's ``[B, P]``."""
    logits = torch.cat([pos.unsqueeze(1), pool], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def info_nce(a: Tensor, b: Tensor, temperature: float, symmetric: bool = True) -> Tensor:
    """InfoNCE of row ``k`` of ``a`` against row ``k`` of ``b`` (other rows negatives)."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    idx = torch.arange(a.shape[0], device=a.device)
    loss = -F.log_softmax(logits, dim=1)[idx, idx].mean()
    if symmetric:
        loss = 0.5 * (loss - F.log_softmax(logits.t(), dim=1)[idx, idx].mean())
    return loss


def orthogonality(h_a: Tensor, h_b: Tensor) -> Tensor:
    """``||H_a^T H_b||_F^2 / B``."""
    return (h_a.t() @ h_b).pow(2).sum() / h_a.shape[0]
