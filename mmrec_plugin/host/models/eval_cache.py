"""Full ranking from a model's ``forward() -> (users [n_users, d], items [n_items, d])``,
propagated once per evaluation (MMRec's ``restore_user_e``).

In eval mode the representations are reused for every batch until the parameters change
(their versions) or the model trains again; a fused optimiser step does not bump parameter
versions, so ``calculate_loss`` must call :meth:`EvalCache.drop_eval_cache` (docs/DESIGN.md).
"""
from __future__ import annotations

import torch

__all__ = ["EvalCache"]


class EvalCache:
    """Mixin for a ``GeneralRecommender`` whose scores are ``<users[u], items[i]>``."""

    _eval_cache = None

    def drop_eval_cache(self) -> None:
        self._eval_cache = None

    def train(self, mode: bool = True):
        self._eval_cache = None
        return super().train(mode)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """``[B, n_items]`` scores for the users ``interaction[0]``."""
        if self.training:
            user_all, item_all = self.forward()
        else:
            versions = tuple(p._version for p in self.parameters())
            cache = self._eval_cache
            if cache is None or cache[0] != versions:
                with torch.no_grad():
                    cache = (versions, self.forward())
                self._eval_cache = cache
            user_all, item_all = cache[1]
        return user_all[interaction[0]] @ item_all.t()
