"""A mixin that trains an existing model with the BR-MRS objective; used by the sibling
models ``FREEDOM_BR`` and ``MMGCN_BR`` (``src/models/freedom_br.py``, ``mmgcn_br.py``) of the
host's FREEDOM and MMGCN.

A sibling trains its model with :class:`mmrec_plugin.method.objective.BRObjective`
(CHNS + synergy-aware BPR + fused BPR; the keys and defaults of
:class:`~mmrec_plugin.method.config.ObjectiveConfig`, shared with BRMRS) INSTEAD of the model's
own ranking loss; the model's regulariser (``regularizer()``, if not None) stays. Everything else
(graphs, propagation, edge pruning, ranking) is the parent model's. The parent provides
``branches(users) -> ({modality: (user_rep [B, d], item_rep [n_items, d])}, fused pair)``:
its per-modality representations (each model's docstring says what they are), and
``regularizer(users, pos, neg)`` (a scalar or None) and ``drop_eval_cache()``.
"""
from .config import ObjectiveConfig
from .objective import BRObjective


class BRObjectiveLoss:
    """Mixin: ``calculate_loss`` is the BR-MRS objective over the parent's ``branches``."""

    def _init_objective(self, config, dataloader) -> None:
        cfg = ObjectiveConfig.from_config(config)
        self.br = BRObjective(dataloader.inter_matrix(form="coo"), cfg).to(self.device)

    def pre_epoch_processing(self):
        """The parent's (e.g. FREEDOM's edge pruning), then the objective counts the epoch
        (``chns_warmup`` / ``chns_decay``)."""
        out = super().pre_epoch_processing()
        self.br.start_epoch()
        return out

    def calculate_loss(self, interaction):
        """The sum of the objective's weighted terms (and the model's regulariser); the
        named terms stay in ``self.last_loss_terms`` (the host's trainer logs them per
        epoch; a scalar, since MMRec's trainer logs a tuple without its epoch line)."""
        self.drop_eval_cache()
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        branches, fused = self.branches(users)
        terms = dict(self.br(users, pos, neg, branches, fused=fused))
        reg = self.regularizer(users, pos, neg)
        if reg is not None:
            terms["reg"] = reg
        self.last_loss_terms = {k: v.detach() for k, v in terms.items()}
        return sum(terms.values())
