"""The ``br_objective`` switch of the host's multimodal models (FREEDOM, MMGCN).

With ``br_objective: True`` a model trains with the BR-MRS objective
(:class:`mmrec_plugin.method.objective.BRObjective`: CHNS + synergy-aware BPR + fused BPR)
INSTEAD of its own ranking loss; its regulariser (if any) stays. The objective reads its
keys (``pool_size, neg_strategy, chns_weight, syn_weight, syn_margin, syn_detach,
bpr_weight``) from the model's config, BRMRS's defaults where absent, and nothing else.
"""
from __future__ import annotations

__all__ = ["make_objective"]


def make_objective(config, dataloader):
    """A :class:`~mmrec_plugin.method.objective.BRObjective` over the loader's training
    matrix, configured from ``config``."""
    from mmrec_plugin.method.objective import BRObjective  # imported only when switched on

    return BRObjective(dataloader.inter_matrix(form="coo"), config)
