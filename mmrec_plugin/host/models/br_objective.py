"""The ``br_objective`` switch of the host's multimodal models (FREEDOM, MMGCN).

With ``br_objective: True`` a model trains with the BR-MRS objective
(:class:`mmrec_plugin.method.objective.BRObjective`: CHNS + synergy-aware BPR + fused BPR)
INSTEAD of its own ranking loss; its regulariser (if any) stays. The objective's keys
(``pool_size, neg_strategy, chns_weight, syn_weight, syn_margin, syn_detach, bpr_weight``) are
read from the model's config with BRMRS's defaults; only those keys are passed on, so a host
model's own keys (``reg_weight``, ``n_layers``, ...) are never read as BRMRS keys.
"""
from __future__ import annotations

from mmrec_plugin.utils import cfg_get

__all__ = ["make_objective"]


def make_objective(config, dataloader):
    """A :class:`~mmrec_plugin.method.objective.BRObjective` over the loader's training
    matrix, configured from the objective keys of ``config`` (absent keys: BRMRS's defaults)."""
    from mmrec_plugin.method.objective import OBJECTIVE_KEYS, BRObjective  # only when switched on

    keys = {k: cfg_get(config, k) for k in OBJECTIVE_KEYS if cfg_get(config, k) is not None}
    return BRObjective(dataloader.inter_matrix(form="coo"), keys)
