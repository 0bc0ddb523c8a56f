"""The evaluation cache shared by the host's models and BR-MRS: full ranking propagates once
per evaluation (MMRec's ``restore_user_e``), not once per batch of users.

The rule: in eval mode a computed value (a model's representations) is reused until a
parameter changes (its version counter) or the model trains again. A fused optimiser step does
not bump parameter versions, so ``calculate_loss`` must call :meth:`EvalCache.drop_eval_cache`
(docs/DESIGN.md).
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

__all__ = ["EvalCache"]

T = TypeVar("T")


class EvalCache:
    """Mixin for a ``torch.nn.Module``: :meth:`eval_cached` and, for a model whose scores are
    ``<users[u], items[i]>`` of ``forward() -> (users, items)``, :meth:`full_sort_predict`."""

    _eval_cache = None

    def drop_eval_cache(self) -> None:
        self._eval_cache = None

    def train(self, mode: bool = True):
        self._eval_cache = None
        return super().train(mode)

    def eval_cached(self, compute: Callable[[], T]) -> T:
        """``compute()`` without autograd; in eval mode kept and returned again while no
        parameter has changed (in training mode computed afresh every call)."""
        if self.training:
            with torch.no_grad():
                return compute()
        versions = tuple(getattr(p, "_version", 0) for p in self.parameters())
        cache = self._eval_cache
        if cache is None or cache[0] != versions:
            with torch.no_grad():
                cache = (versions, compute())
            self._eval_cache = cache
        return cache[1]

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """``[B, n_items]`` scores for the users ``interaction[0]``."""
        user_all, item_all = self.eval_cached(self.forward)
        return user_all[interaction[0]] @ item_all.t()
