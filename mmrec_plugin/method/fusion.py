"""Fusion ``phi`` of the M modality representations (docs/METHOD.md, "Fusion"; key ``fusion``).

- ``mean``: ``phi(x_1..x_M) = (1/M) sum_m x_m`` (no parameters);
- ``gate``: M = 2: ``g = sigmoid(W_g [a; b] + c)``, ``phi(a, b) = g * a + (1 - g) * b``
  (element-wise gate, ``g in [0, 1]^d``); M > 2: ``g = softmax_m(W_g [x_1; ..; x_M] + c)``
  per dimension, ``phi = sum_m g_m * x_m``;
- ``mlp``:  ``phi = W_2 relu(W_1 [x_1; ..; x_M] + c_1) + c_2`` (one hidden layer of width ``d``);
- ``concat``: ``phi = [x_1; ..; x_M]`` (no parameters). Then ``s_f = sum_m s_m`` exactly
  (:attr:`Fusion.scores_add_up`), so ``Delta_f - max_m Delta_m`` is the sum of the other
  margins: the synergy loss asks every branch to rank the positive above the negative. With
  ``mean`` the fused score is about ``1/M^2`` of ``sum_m s_m`` (plus cross terms), so the
  margin over ``max_m Delta_m`` is hard to reach and L_syn keeps pushing the norms up.

Args:
    kind: ``'mean'``, ``'gate'``, ``'mlp'`` or ``'concat'``.
    dim: representation size ``d`` of every modality.
    n_modalities: ``M >= 1`` (default 2).

Shapes:
    x_m ``[..., d]`` -> ``[..., d]`` (``[..., M d]`` for ``concat``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FUSIONS", "Fusion"]

FUSIONS = ("mean", "gate", "mlp", "concat")


class Fusion(nn.Module):
    def __init__(self, kind: str, dim: int, n_modalities: int = 2):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"Fusion: unknown kind {kind!r}; allowed: {', '.join(FUSIONS)}")
        if int(dim) < 1 or int(n_modalities) < 1:
            raise ValueError(f"Fusion: dim and n_modalities must be >= 1, got {dim!r}, {n_modalities!r}")
        self.kind = kind
        self.dim = int(dim)
        self.n_modalities = m = int(n_modalities)
        if kind == "gate":
            self.gate = nn.Linear(m * self.dim, self.dim if m == 2 else m * self.dim)
        elif kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(m * self.dim, self.dim), nn.ReLU(), nn.Linear(self.dim, self.dim))
        self.reset_parameters()

    @property
    def out_dim(self) -> int:
        """Width of the fused vectors: ``M * dim`` for ``concat``, else ``dim``."""
        return self.n_modalities * self.dim if self.kind == "concat" else self.dim

    @property
    def scores_add_up(self) -> bool:
        """Whether the fused score is the sum of the branch scores (``concat``)."""
        return self.kind == "concat"

    def reset_parameters(self) -> None:
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)

    def gate_values(self, *xs: Tensor) -> Tensor:
        """The gate: ``g`` ``[..., d]`` for M = 2, else the weights ``[..., M, d]``."""
        if self.kind != "gate":
            raise RuntimeError("gate_values: fusion kind is not 'gate'")
        z = self.gate(torch.cat(xs, dim=-1))
        if self.n_modalities == 2:
            return torch.sigmoid(z)
        return torch.softmax(z.unflatten(-1, (self.n_modalities, self.dim)), dim=-2)

    def forward(self, *xs: Tensor) -> Tensor:
        if len(xs) != self.n_modalities:
            raise ValueError(f"Fusion: expected {self.n_modalities} inputs, got {len(xs)}")
        if self.kind == "mean":
            if len(xs) == 2:
                return 0.5 * (xs[0] + xs[1])
            return torch.stack(xs, dim=0).mean(dim=0)
        if self.kind == "concat":
            return torch.cat(xs, dim=-1)
        if self.kind == "gate":
            g = self.gate_values(*xs)
            if len(xs) == 2:
                return g * xs[0] + (1.0 - g) * xs[1]
            return (g * torch.stack(xs, dim=-2)).sum(dim=-2)
        return self.mlp(torch.cat(xs, dim=-1))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}, n_modalities={self.n_modalities}"
