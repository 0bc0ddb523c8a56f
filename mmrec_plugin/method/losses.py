"""BR-MRS losses (SPEC section 3), written with ``softplus`` / ``log_softmax`` only.

Notation: ``s_m(u, i)`` is the score of branch ``m``; ``softplus(-x) = -log sigmoid(x)``.

- BPR:       ``L_bpr = mean softplus(-(s(u,i+) - s(u,i-)))``.
- CHNS (eq. 10-11), with the negatives chosen by :func:`~mmrec_plugin.method.pools.select_negatives`::

      L_chns = mean[ softplus(-(s_t(u,i+) - s_t(u,j_v))) + softplus(-(s_v(u,i+) - s_v(u,j_t))) ]

  (the mean is over the batch; the two branch terms are summed).
- Synergy-aware BPR (eq. 12-13), ``Δ_m = s_m(u,i+) - s_m(u,i-)``::

      L_syn = mean softplus(-(Δ_f - max(Δ_t, Δ_v) - theta))

  With ``detach=True`` no gradient flows through ``max(Δ_t, Δ_v)``: the loss cannot be
  lowered by making the unimodal branches worse.
- InfoNCE between paired rows ``a_k, b_k`` (cosine similarity, temperature ``tau``)::

      L_nce(a, b) = -mean_k log softmax_l( cos(a_k, b_l) / tau )[k]

  ``symmetric=True`` averages ``L_nce(a, b)`` and ``L_nce(b, a)``.
- Orthogonality: ``||H_t^T H_v||_F^2 / B`` for batch representations ``H_t, H_v`` ``[B, d]``.
- L2 regularisation (MMRec convention: batch embeddings, divided by the batch size):
  ``sum_k ||T_k||_F^2 / B`` with ``B`` the first dimension of the first tensor.

Shapes: score tensors ``[B]``; representations ``[B, d]``; every loss returns a scalar.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss", "chns_loss", "synergy_bpr_loss", "info_nce", "orthogonality", "l2_reg"]


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """``mean softplus(-(pos - neg))``."""
    return F.softplus(-(pos - neg)).mean()


def chns_loss(s_t_pos: Tensor, s_t_neg: Tensor, s_v_pos: Tensor, s_v_neg: Tensor) -> Tensor:
    """Cross-modal hard-negative loss (eq. 10-11).

    Args:
        s_t_pos, s_t_neg: text scores of the positive and of the text branch's negative
            (``j_v`` under ``cross``).
        s_v_pos, s_v_neg: visual scores of the positive and of the visual branch's negative
            (``j_t`` under ``cross``).
    """
    return (F.softplus(-(s_t_pos - s_t_neg)) + F.softplus(-(s_v_pos - s_v_neg))).mean()


def synergy_bpr_loss(d_f: Tensor, d_t: Tensor, d_v: Tensor, margin: float, detach: bool) -> Tensor:
    """Synergy-aware BPR (eq. 12-13) on the pairwise margins ``Δ_f, Δ_t, Δ_v`` ``[B]``."""
    best = torch.maximum(d_t, d_v)
    if detach:
        best = best.detach()
    return F.softplus(-(d_f - best - margin)).mean()


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


def orthogonality(h_t: Tensor, h_v: Tensor) -> Tensor:
    """``||H_t^T H_v||_F^2 / B``."""
    return (h_t.t() @ h_v).pow(2).sum() / h_t.shape[0]


def l2_reg(*tensors: Tensor, batch_size: Optional[int] = None) -> Tensor:
    """``sum_k ||T_k||_F^2 / B`` (``B`` = ``batch_size`` or the first dim of ``tensors[0]``)."""
    if not tensors:
        raise ValueError("l2_reg: no tensors")
    b = batch_size if batch_size is not None else tensors[0].shape[0]
    total = tensors[0].pow(2).sum()
    for t in tensors[1:]:
        total = total + t.pow(2).sum()
    return total / b
