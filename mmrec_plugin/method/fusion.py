"""Fusion ``phi`` of the text and visual representations (SPEC section 2, key ``fusion``).

- ``mean``: ``phi(a, b) = (a + b) / 2`` (no parameters);
- ``gate``: ``g = sigmoid(W_g [a; b] + c)``, ``phi(a, b) = g * a + (1 - g) * b``
  (element-wise gate, ``g in [0, 1]^d``);
- ``mlp``:  ``phi(a, b) = W_2 relu(W_1 [a; b] + c_1) + c_2`` (one hidden layer of width ``d``);
- ``concat``: ``phi(a, b) = [a; b]`` (an extension beyond the SPEC's three, no parameters).
  Then ``s_f = s_t + s_v`` exactly, so ``Delta_f - max(Delta_t, Delta_v) = min(Delta_t, Delta_v)``:
  the synergy loss asks both branches to rank the positive above the negative. With ``mean``
  the fused score is about a quarter of ``s_t + s_v`` (plus cross terms ``<p_t, q_v>``), so the
  margin over ``max(Delta_t, Delta_v)`` is hard to reach and L_syn keeps pushing the norms up.

Args:
    kind: ``'mean'``, ``'gate'`` or ``'mlp'``.
    dim: representation size ``d``.

Shapes:
    a, b ``[..., d]`` -> ``[..., d]`` (``[..., 2d]`` for ``concat``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmrec_plugin.errors import ConfigError, did_you_mean

__all__ = ["FUSIONS", "Fusion"]

FUSIONS = ("mean", "gate", "mlp", "concat")


class Fusion(nn.Module):
    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in FUSIONS:
            raise ConfigError(
                f"fusion: unknown value {kind!r}{did_you_mean(str(kind), FUSIONS)}; "
                f"allowed: {', '.join(FUSIONS)}"
            )
        if int(dim) < 1:
            raise ConfigError(f"embedding_size: must be >= 1 for fusion, got {dim!r}")
        self.kind = kind
        self.dim = int(dim)
        if kind == "gate":
            self.gate = nn.Linear(2 * self.dim, self.dim)
        elif kind == "mlp":
            self.mlp = nn.Sequential(
                nn.Linear(2 * self.dim, self.dim), nn.ReLU(), nn.Linear(self.dim, self.dim)
            )
        self.reset_parameters()

    @property
    def out_dim(self) -> int:
        """Width of the fused vectors: ``2 * dim`` for ``concat``, else ``dim``."""
        return 2 * self.dim if self.kind == "concat" else self.dim

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def gate_values(self, a: Tensor, b: Tensor) -> Tensor:
        """The gate ``g`` (``kind='gate'`` only)."""
        if self.kind != "gate":
            raise RuntimeError("gate_values: fusion kind is not 'gate'")
        return torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if self.kind == "mean":
            return 0.5 * (a + b)
        if self.kind == "concat":
            return torch.cat([a, b], dim=-1)
        if self.kind == "gate":
            g = self.gate_values(a, b)
            return g * a + (1.0 - g) * b
        return self.mlp(torch.cat([a, b], dim=-1))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}"
