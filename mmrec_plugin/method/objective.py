"""The BR-MRS objective for any multimodal recommender: CHNS + synergy-aware BPR (+ fused BPR).

A model with M >= 2 modality branches and a fused scorer hands its batch to
:class:`BRObjective`; it draws the candidate pools, picks each branch's cross-modal hard
negative and returns the weighted loss terms by name. BRMRS uses it (one implementation);
any MMRec-style model calls it from ``calculate_loss`` in a few lines::

    from mmrec_plugin.method.objective import BRObjective

    # in __init__ (the keys and defaults of ObjectiveConfig, shared with BRMRS: pool_size,
    # neg_strategy, chns_weight, syn_weight, syn_margin, ...; read from the MMRec config):
    self.br = BRObjective(dataloader.inter_matrix(form="coo"), config)

    # in pre_epoch_processing(): self.br.start_epoch()   (chns_warmup / chns_decay count epochs)
    # in calculate_loss(interaction):
    users, pos, neg = interaction[0], interaction[1], interaction[2]
    u_t, u_v, i_t, i_v = ...                      # per-modality user [n_users, d] / item [n_items, d] reps
    terms = self.br(users, pos, neg,
                    branches={"text": (u_t[users], i_t), "visual": (u_v[users], i_v)},
                    fused=(u_f[users], i_f))     # or None: s_f = s_text + s_visual (concat fusion)
    return sum(terms.values())

Branches. ``branches`` maps a modality name to either

- a pair ``(user_rep [B, d_m], item_rep [n_items, d_m])``: row ``b`` of ``user_rep`` is the
  batch user ``users[b]``; scores are inner products ``s_m(u_b, j) = <user_rep[b], item_rep[j]>``;
- or a scorer ``f(items: LongTensor[B, K]) -> [B, K]``, the score of ``items[b, k]`` for the
  batch user ``b`` (any scoring function: MLPs, several vectors per item, ...).

``fused`` is a pair or a scorer in the same sense, or None: then the fused score is the sum
of the branch scores (exactly what concat fusion ``phi = [a; b]`` gives).

Per batch ``(u, i+, i-)`` (``i-``: the framework's uniform negative), with ``Δ_m = s_m(u, i+)
- s_m(u, i-)``::

    chns = w_chns(epoch) * mean_b sum_m softplus(-(s_m(u, i+) - s_m(u, n_m)))
    syn  = syn_weight  * mean_b softplus(-(Δ_f - max_m Δ_m - syn_margin))   (max detached if syn_detach)
    bpr  = bpr_weight  * mean_b softplus(-Δ_f)
    pool = pool_softmax_weight * mean_b -log softmax([s_f(u, i+), s_f(u, j) for j in pool] / pool_softmax_temperature)[0]
    branch_bpr = branch_bpr_weight * mean_b sum_m softplus(-Δ_m)

``w_chns(epoch)`` is 0 before epoch ``chns_warmup``, then ``chns_weight * chns_decay **
(epoch - chns_warmup)``; the model counts epochs by calling :meth:`BRObjective.start_epoch`
from its ``pre_epoch_processing`` (without it every batch is epoch 0).

``n_m`` is branch ``m``'s negative from a pool of ``pool_size`` items outside the user's
training items (:func:`~mmrec_plugin.method.pools.sample_candidate_pool`; drawn with
replacement, so a ``pool_size`` above the number of items is clamped to it with a warning:
more draws would only repeat items, at ``B x pool_size`` memory per step), chosen by
``neg_strategy`` (:func:`~mmrec_plugin.method.pools.select_negatives`; ``cross``: the pool
item the OTHER branches score highest; for two modalities the paper's eq. 10-11) and read off
the pool scores by ``chns_hardness`` (argmax, a softmax draw at ``chns_temperature``, or a
uniform draw among the ``chns_topk`` best); with ``chns_guard`` a pool item a branch scores
above the positive is not that branch's candidate. Pool scores are computed without
gradients for CHNS; the ``pool`` term (a sampled softmax of the fused score over the same pool)
scores them again with gradients. A term whose weight is 0 is left out (and not computed).
The returned dict is ordered ``chns, syn, bpr, pool, branch_bpr``.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from mmrec_plugin.sparse import binarize, pair_scores

from .losses import bpr_loss, chns_loss, pool_softmax_loss, synergy_bpr_loss
from .config import OBJECTIVE_KEYS, BRMRSConfig, ObjectiveConfig
from .pools import _train_codes, sample_candidate_pool, select_negatives

__all__ = ["BRObjective", "OBJECTIVE_KEYS", "Branch", "score_items"]

Scorer = Callable[[Tensor], Tensor]
Branch = Union[Tuple[Tensor, Tensor], Scorer]

logger = logging.getLogger(__name__)


def score_items(branch: Branch, items: Tensor) -> Tensor:
    """Scores ``[B, K]`` of the item table ``items`` ``[B, K]`` under ``branch`` (a pair of
    representations or a scorer, see the module docstring)."""
    if callable(branch):
        return branch(items)
    user_rep, item_rep = branch
    return pair_scores(user_rep, item_rep, items)


class BRObjective(nn.Module):
    """CHNS + synergy-aware BPR (+ fused BPR) for M >= 2 modality branches.

    Args:
        train_matrix: the ``(n_users, n_items)`` training interactions (scipy sparse, any
            values; binarised): pools never hold a user's training item.
        config: an :class:`~mmrec_plugin.method.config.ObjectiveConfig` (or a BRMRSConfig: its
            ``objective``), an MMRec / host config or a dict (None: every default). Only
            :data:`OBJECTIVE_KEYS` are read, with ObjectiveConfig's defaults.
        **overrides: values for :data:`OBJECTIVE_KEYS` that win over ``config``.

    Buffers (the training matrix as sorted codes) are non-persistent: ``.to(device)`` moves
    them, ``state_dict`` does not hold them. Pools draw from torch's global generator.
    """

    def __init__(self, train_matrix, config=None, **overrides):
        super().__init__()
        unknown = sorted(set(overrides) - set(OBJECTIVE_KEYS))
        if unknown:
            raise TypeError(f"BRObjective: unknown keys {unknown}; known: {', '.join(OBJECTIVE_KEYS)}")
        if isinstance(config, BRMRSConfig):
            config = config.objective
        # another model's config may use other BRMRS key names for its own purposes: read ours only
        cfg = config if isinstance(config, ObjectiveConfig) else ObjectiveConfig.from_config(config or {})
        if overrides:
            cfg = cfg.replace(**overrides)
        self.cfg = cfg
        self.pool_size = cfg.pool_size  # the pool drawn: cfg.pool_size, at most the catalogue
        self.epoch = 0  # the epoch being trained (start_epoch counts)
        self._epochs_started = 0
        inter = binarize(train_matrix)
        self.n_items = inter.shape[1]
        if self.pool_size > self.n_items:
            # the pool is drawn with replacement: more draws than items only repeat items, at
            # B x pool_size memory and time per step (100000 on 60 items: 12.8 GB, 10x slower)
            logger.warning("pool_size %d exceeds the %d items of the dataset; using %d (pools are "
                           "drawn with replacement, so a larger pool only repeats items)",
                           self.pool_size, self.n_items, self.n_items)
            self.pool_size = self.n_items
        indptr = torch.from_numpy(inter.indptr.astype("int64"))
        indices = torch.from_numpy(inter.indices.astype("int64"))
        self.register_buffer("train_indptr", indptr, persistent=False)
        self.register_buffer("train_indices", indices, persistent=False)
        self.register_buffer("train_codes", _train_codes(indptr, indices, self.n_items), persistent=False)

    def extra_repr(self) -> str:
        values = {k: getattr(self.cfg, k) for k in OBJECTIVE_KEYS}
        values["pool_size"] = self.pool_size
        return ", ".join(f"{k}={v!r}" for k, v in values.items())

    def training_state(self) -> Dict[str, int]:
        """The epoch count (CHNS warm-up and decay): what a resumed training run must continue
        besides the parameters (the host's trainer checkpoints it, see its ``state_dict``)."""
        return {"epochs_started": self._epochs_started, "epoch": self.epoch}

    def load_training_state(self, state: Mapping[str, int]) -> None:
        self._epochs_started = int(state["epochs_started"])
        self.epoch = int(state["epoch"])

    # -- epochs (warm-up and decay of the CHNS weight) ---------------------------------------
    def start_epoch(self) -> None:
        """Call once at the start of every training epoch (e.g. from ``pre_epoch_processing``)."""
        self.epoch = self._epochs_started
        self._epochs_started += 1

    def chns_active(self) -> bool:
        """CHNS trains from epoch ``chns_warmup`` on (0: from the start)."""
        return self.cfg.chns_weight > 0 and self.epoch >= self.cfg.chns_warmup

    def chns_weight_now(self) -> float:
        """``chns_weight * chns_decay ** (epoch - chns_warmup)`` once CHNS is active."""
        return self.cfg.chns_weight * self.cfg.chns_decay ** max(0, self.epoch - self.cfg.chns_warmup)

    # -- pieces (public: analysis and tests use them) -------------------------------------
    def candidate_pool(self, users: Tensor) -> Tensor:
        """``[B, pool_size]`` items drawn uniformly from each user's non-training items."""
        return sample_candidate_pool(users, self.pool_size, self.train_indptr, self.train_indices,
                                     self.n_items, train_codes=self.train_codes)

    def negatives(self, users: Tensor, branches: Mapping[str, Branch],
                  fused: Optional[Branch] = None, pos: Optional[Tensor] = None,
                  pool: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Branch name -> its hard negative ``[B]`` (from ``pool`` ``[B, pool_size]``, or a fresh
        pool, scored without gradients; ``pos``, the positives, is read by ``chns_guard``)."""
        if pool is None:
            pool = self.candidate_pool(users)
        if self.cfg.neg_strategy == "uniform":
            return select_negatives("uniform", dict.fromkeys(branches), pool)
        with torch.no_grad():
            detached = {m: _detached(b) for m, b in branches.items()}
            scores = {m: score_items(b, pool) for m, b in detached.items()}
            s_f, guard = None, None
            if self.cfg.neg_strategy == "fused":
                s_f = _sum(scores.values()) if fused is None else score_items(_detached(fused), pool)
            elif self.cfg.chns_guard and pos is not None:
                guard = {m: score_items(b, pos.unsqueeze(1))[:, 0] for m, b in detached.items()}
        return select_negatives(self.cfg.neg_strategy, scores, pool, fused=s_f, hardness=self.cfg.chns_hardness,
                                temperature=self.cfg.chns_temperature, topk=self.cfg.chns_topk, guard_pos=guard)

    # -- the objective ---------------------------------------------------------------------
    def forward(self, users: Tensor, pos: Tensor, neg: Tensor, branches: Mapping[str, Branch],
                fused: Optional[Branch] = None) -> Dict[str, Tensor]:
        """The weighted terms ``{'chns', 'syn', 'bpr', 'pool', 'branch_bpr'}`` (those with weight > 0
        and, for ``chns``, active at this epoch), scalars.

        Args:
            users, pos, neg: LongTensors ``[B]``: the batch (``neg``: the framework's negative).
            branches: modality name -> pair or scorer (module docstring), M >= 2 for ``cross``.
            fused: pair, scorer, or None (sum of the branch scores).
        """
        if len(branches) < 1:
            raise ValueError("BRObjective: no branches")
        names = list(branches)
        terms: Dict[str, Tensor] = {}
        chns = self.chns_active()
        soft = self.cfg.pool_softmax_weight > 0
        need_fused = self.cfg.syn_weight > 0 or self.cfg.bpr_weight > 0 or soft
        cols = [pos, neg] if need_fused or self.cfg.branch_bpr_weight > 0 else [pos]
        pool = self.candidate_pool(users) if chns or soft else None
        if chns:
            hard = self.negatives(users, branches, fused, pos, pool=pool)
        # one scoring call per branch for all its items: [pos, (neg,) own hard negative]
        s = {}
        for m in names:
            items = torch.stack(cols + ([hard[m]] if chns else []), dim=1)
            s[m] = score_items(branches[m], items).unbind(1)
        if chns:
            terms["chns"] = self.chns_weight_now() * chns_loss([s[m][0] for m in names], [s[m][-1] for m in names])
        if need_fused:
            if fused is None:
                f_pos, f_neg = _sum(s[m][0] for m in names), _sum(s[m][1] for m in names)
            else:
                f_pos, f_neg = score_items(fused, torch.stack([pos, neg], dim=1)).unbind(1)
            if self.cfg.syn_weight > 0:
                deltas = [s[m][0] - s[m][1] for m in names]
                terms["syn"] = self.cfg.syn_weight * synergy_bpr_loss(f_pos - f_neg, deltas, self.cfg.syn_margin,
                                                                  self.cfg.syn_detach)
            if self.cfg.bpr_weight > 0:
                terms["bpr"] = self.cfg.bpr_weight * bpr_loss(f_pos, f_neg)
            if soft:
                f_pool = _sum(score_items(branches[m], pool) for m in names) if fused is None \
                    else score_items(fused, pool)
                terms["pool"] = self.cfg.pool_softmax_weight * pool_softmax_loss(f_pos, f_pool,
                                                                             self.cfg.pool_softmax_temperature)
        if self.cfg.branch_bpr_weight > 0:  # each unimodal branch on the framework's uniform negative
            terms["branch_bpr"] = self.cfg.branch_bpr_weight * _sum(bpr_loss(s[m][0], s[m][1]) for m in names)
        return terms


def _sum(tensors) -> Tensor:
    it = iter(tensors)
    total = next(it)
    for t in it:
        total = total + t
    return total


def _detached(branch: Branch) -> Branch:
    if callable(branch):
        return branch
    return tuple(t.detach() for t in branch)  # type: ignore[return-value]
