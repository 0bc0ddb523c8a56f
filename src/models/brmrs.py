"""BR-MRS: Synergy-Aware Multimodal Recommendation with Cross-Modal Hard Negatives.

Thin MMRec-style glue around :mod:`mmrec_plugin.method` (the method is SPEC.md sections 1-3).
It runs unchanged inside an MMRec checkout (base class ``common.abstract_recommender``) and
in the plugin's embedded host (``mmrec_plugin.host.abstract_recommender``).

Backbone. Per modality channel ``m in {t, v}`` (independent parameters): item input
``h_i^(m) = W_m x_i^(m)`` (+ an item id embedding when ``item_id_in_channels``), user input
``E_u^(m)``; LightGCN over ``G_ui`` (``n_ui_layers``, mean over layers) gives ``p^(m), q^(m)``;
then ``q^(m) <- q^(m) + G_ii^L q^(m)`` (``n_ii_layers``) and ``p^(m) <- p^(m) + G_uu^L p^(m)``
(``n_uu_layers``). Fused ``p^(f) = phi(p^(t), p^(v))``, ``q^(f) = phi(q^(t), q^(v))``.
Both channels are propagated together as one ``[N, 2d]`` matrix (propagation is linear and
column-wise, so this equals two separate propagations at the cost of one sparse pass).

Loss for a batch ``(u, i+, i-)`` (``interaction`` rows 0, 1, 2)::

    L = bpr_weight * L_bpr(f) + chns_weight * L_chns + syn_weight * L_syn
        + nce_weight * L_nce(q_t, q_v) + orth_weight * L_orth(q_t, q_v)
        + reg_weight * ||layer-0 batch embeddings||^2 / B

with CHNS negatives chosen from a per-pair candidate pool of ``pool_size`` items outside the
user's training set (``neg_strategy``), and ``i-`` (the framework's negative) in L_syn / L_bpr.
The pool is drawn with replacement; a ``pool_size`` above the number of items is clamped to
it with a warning (more draws would only repeat items, at ``B x pool_size`` memory per step).

Config keys: see ``configs/model/BRMRS.yaml`` (:data:`DEFAULTS` holds the same defaults, used
when a key is absent, e.g. MMRec's ``None`` for a missing key).
"""
from __future__ import annotations

import logging
import math
import os
import time
import warnings

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

try:  # inside an MMRec checkout
    from common.abstract_recommender import GeneralRecommender
except ImportError:  # the plugin's embedded host
    from mmrec_plugin.host.abstract_recommender import GeneralRecommender

from mmrec_plugin.errors import ConfigError, DataError, did_you_mean
from mmrec_plugin.method.cache import cache_dir, cached_knn_graph
from mmrec_plugin.method.fusion import FUSIONS, Fusion
from mmrec_plugin.method.graphs import bipartite_csr, binarize, user_profiles
from mmrec_plugin.method.losses import (
    bpr_loss,
    chns_loss,
    info_nce,
    orthogonality,
    synergy_bpr_loss,
)
from mmrec_plugin.method.probe import cached_graph_weights, weight_candidates
from mmrec_plugin.method.pools import HARDNESS, NEG_STRATEGIES, sample_candidate_pool, select_negatives
from mmrec_plugin.method.propagation import (
    channel_blocks,
    lightgcn_l2,
    smooth,
    smooth_rows,
    to_torch_sparse,
)

logger = logging.getLogger(__name__)


def _cpu_sddmm_works() -> bool:
    """Whether this torch has ``torch.sparse.sampled_addmm`` for CPU CSR tensors (1.13+)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(torch.tensor([0, 2]), torch.tensor([1, 1]),
                                              torch.zeros(2), size=(1, 2))
            out = torch.sparse.sampled_addmm(pattern, torch.ones(1, 1), torch.tensor([[1.0, 2.0]]), beta=0.0)
        return out.values().tolist() == [2.0, 2.0]
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False


_HAS_CPU_SDDMM = _cpu_sddmm_works()


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16); unknown: True."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    checks = [c for c in checks if callable(c)]
    return not checks or any(c() for c in checks)

#: Every key BRMRS reads, with its default (mirrors configs/model/BRMRS.yaml).
DEFAULTS = {
    "embedding_size": 64,
    "feat_dropout": 0.0,
    "proj_bf16": False,
    "item_id_in_channels": True,
    "n_ui_layers": 2,
    "n_ii_layers": 1,
    "n_uu_layers": 1,
    "ii_knn_k": 10,
    "ii_co_weight": 0.2,
    "uu_knn_k": 40,
    "uu_co_weight": 0.4,
    "modality_weights": [0.1, 0.9],
    "fusion": "concat",
    "pool_size": 32,
    "neg_strategy": "cross",
    "chns_hardness": "argmax",
    "chns_temperature": 1.0,
    "chns_topk": 1,
    "chns_warmup": 0,
    "chns_decay": 1.0,
    "chns_guard": False,
    "branch_bpr_weight": 0.0,
    "chns_weight": 1.0,
    "syn_weight": 1.0,
    "syn_margin": 0.1,
    "syn_detach": False,
    "bpr_weight": 1.0,
    "reg_weight": 0.0001,
    "nce_weight": 0.0,
    "nce_temperature": 0.2,
    "orth_weight": 0.0,
    "graph_cache": True,
    "knn_block_size": 2048,
}
_LIST_KEYS = {"modality_weights"}


def _get(config, key: str, default=None):
    """``config[key]``, or ``default`` when the key is absent (host: KeyError) or None
    (MMRec). A one-element grid list (MMRec's ``hyper_parameters`` value outside a grid
    run) is unwrapped."""
    try:
        value = config[key]
    except KeyError:
        value = None
    if value is None:
        return default
    if key not in _LIST_KEYS and isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ConfigError(
                f"{key}: got the list {list(value)}; a list is a grid of values and is expanded "
                f"only by a grid search (hyper_parameters); give one value"
            )
        value = value[0]
    return value


def read_config(config) -> dict:
    """All BRMRS keys from ``config`` with defaults filled in, validated.

    Raises:
        ConfigError: naming the key, the bad value and what is accepted.
    """
    c = {k: _get(config, k, v) for k, v in DEFAULTS.items()}

    def number(key, cast, lo=None, lo_open=False, hi=None):
        try:
            v = cast(c[key])
            if cast is int and v != c[key]:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a {cast.__name__}, got {c[key]!r}") from None
        if not math.isfinite(v):
            raise ConfigError(f"{key}: expected a finite number, got {c[key]!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise ConfigError(f"{key}: must be {'>' if lo_open else '>='} {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ConfigError(f"{key}: must be <= {hi}, got {v!r}")
        c[key] = v

    number("embedding_size", int, 1)
    number("feat_dropout", float, 0.0, hi=0.999)
    for key in ("n_ui_layers", "n_ii_layers", "n_uu_layers"):
        number(key, int, 0)
    number("ii_knn_k", int, 1)
    number("uu_knn_k", int, 1)
    number("ii_co_weight", float, 0.0, hi=1.0)
    number("uu_co_weight", float, 0.0, hi=1.0)
    number("pool_size", int, 1)
    number("chns_temperature", float, 0.0, lo_open=True)
    number("chns_topk", int, 1)
    number("chns_warmup", int, 0)
    number("chns_decay", float, 0.0, lo_open=True, hi=1.0)
    for key in ("chns_weight", "syn_weight", "bpr_weight", "reg_weight", "nce_weight", "orth_weight",
                "branch_bpr_weight"):
        number(key, float, 0.0)
    number("syn_margin", float, 0.0, lo_open=True)
    number("nce_temperature", float, 0.0, lo_open=True)
    number("knn_block_size", int, 1)
    mw = c["modality_weights"]
    if mw == "auto":
        pass
    elif not isinstance(mw, (list, tuple)) or len(mw) != 2:
        raise ConfigError(f"modality_weights: expected a list [beta_v, beta_t] of two numbers or auto, got {mw!r}")
    else:
        try:
            c["modality_weights"] = [float(mw[0]), float(mw[1])]
        except (TypeError, ValueError):
            raise ConfigError(f"modality_weights: expected two numbers [beta_v, beta_t] or auto, got {mw!r}") from None
        if min(c["modality_weights"]) < 0:
            raise ConfigError(f"modality_weights: weights must be >= 0, got {mw!r}")
    if c["fusion"] not in FUSIONS:
        raise ConfigError(
            f"fusion: unknown value {c['fusion']!r}{did_you_mean(str(c['fusion']), FUSIONS)}; "
            f"allowed: {', '.join(FUSIONS)}"
        )
    if c["neg_strategy"] not in NEG_STRATEGIES:
        raise ConfigError(
            f"neg_strategy: unknown value {c['neg_strategy']!r}"
            f"{did_you_mean(str(c['neg_strategy']), NEG_STRATEGIES)}; allowed: {', '.join(NEG_STRATEGIES)}"
        )
    if c["chns_hardness"] not in HARDNESS:
        raise ConfigError(
            f"chns_hardness: unknown value {c['chns_hardness']!r}"
            f"{did_you_mean(str(c['chns_hardness']), HARDNESS)}; allowed: {', '.join(HARDNESS)}"
        )
    for key in ("item_id_in_channels", "syn_detach", "graph_cache", "proj_bf16", "chns_guard"):
        if not isinstance(c[key], (bool, np.bool_)):
            raise ConfigError(f"{key}: expected True or False, got {c[key]!r}")
        c[key] = bool(c[key])
    if c["chns_weight"] + c["syn_weight"] + c["bpr_weight"] == 0:
        raise ConfigError(
            "chns_weight, syn_weight, bpr_weight: all are 0, so nothing trains the ranking; "
            "set at least one > 0"
        )
    return c


def _guard(scores, pos_scores):
    """``scores`` ``[B, P]`` re-keyed so that entries above the row's positive score
    ``pos_scores`` ``[B]`` rank below every other entry (order kept within both groups); a row
    whose entries are all above is reversed, so that its lowest-scored item ranks first."""
    above = scores > pos_scores.unsqueeze(1)
    span = (scores.max(dim=1, keepdim=True).values - scores.min(dim=1, keepdim=True).values) + 1.0
    out = torch.where(above, scores - span, scores)
    return torch.where(above.all(dim=1, keepdim=True), -scores, out)


class BRMRS(GeneralRecommender):
    """BR-MRS on MMRec's ``GeneralRecommender`` (module docstring)."""

    def __init__(self, config, dataloader):
        cfg = read_config(config)  # fail before loading anything
        super(BRMRS, self).__init__(config, dataloader)
        self.cfg = cfg
        self.dim = d = cfg["embedding_size"]
        self.n_ui_layers = cfg["n_ui_layers"]
        self.n_ii_layers = cfg["n_ii_layers"]
        self.n_uu_layers = cfg["n_uu_layers"]
        self.pool_size = cfg["pool_size"]
        if self.pool_size > self.n_items:
            # the pool is drawn with replacement: more draws than items only repeat items, at
            # B x pool_size memory and time per step (100000 on 60 items: 12.8 GB, 10x slower)
            logger.warning("pool_size %d exceeds the %d items of the dataset; using %d (pools are "
                           "drawn with replacement, so a larger pool only repeats items)",
                           self.pool_size, self.n_items, self.n_items)
            self.pool_size = self.n_items
        self.neg_strategy = cfg["neg_strategy"]

        t_feat, v_feat = self._features(config)
        inter = binarize(dataloader.inter_matrix(form="coo"))
        if inter.shape != (self.n_users, self.n_items):
            raise DataError(
                f"training matrix has shape {inter.shape}, expected (n_users, n_items) = "
                f"({self.n_users}, {self.n_items})"
            )

        # -- parameters (per channel) --------------------------------------------------
        self.user_emb_t = nn.Embedding(self.n_users, d)
        self.user_emb_v = nn.Embedding(self.n_users, d)
        self.proj_t = nn.Linear(t_feat.shape[1], d)
        self.proj_v = nn.Linear(v_feat.shape[1], d)
        if cfg["item_id_in_channels"]:
            self.item_emb_t = nn.Embedding(self.n_items, d)
            self.item_emb_v = nn.Embedding(self.n_items, d)
        else:
            self.item_emb_t = self.item_emb_v = None
        self.fusion = Fusion(cfg["fusion"], d)
        #: width of the vectors whose product ranks items (read by ``mmrec-plugin bench``)
        self.score_dim = self.fusion.out_dim

        # -- derived tensors (non-persistent buffers: .to(device) moves them) -------------
        self._build_graphs(config, inter, t_feat, v_feat)
        if cfg["proj_bf16"]:  # the projections' input, kept in bfloat16 (half the memory)
            t_feat, v_feat = t_feat.to(torch.bfloat16), v_feat.to(torch.bfloat16)
            if self.device.type == "cpu" and not _cpu_has_native_bf16():
                logger.warning("proj_bf16: this CPU has no AMX / AVX512-BF16, so bfloat16 "
                               "projections are emulated and slower than float32; set proj_bf16 False")
        self.register_buffer("feat_t", t_feat, persistent=False)
        self.register_buffer("feat_v", v_feat, persistent=False)

        self._eval_cache = None
        self.epoch = 0  # the epoch being trained (pre_epoch_processing, called per epoch, counts)
        self._epochs_started = 0
        self.reset_parameters()

    # -- construction helpers ---------------------------------------------------------------
    def _features(self, config):
        feats = []
        for attr, key in (("t_feat", "text_feature_file"), ("v_feat", "vision_feature_file")):
            f = getattr(self, attr, None)
            if f is None:
                folder = os.path.join(str(_get(config, "data_path", "")), str(_get(config, "dataset", "")))
                raise ConfigError(
                    f"{key}: BRMRS needs both modality features, but {_get(config, key, '?')!r} was not "
                    f"loaded from {folder} (missing file, or is_multimodal_model false / end2end true)"
                )
            f = torch.as_tensor(f, dtype=torch.float32, device=self.device)
            if f.dim() != 2 or f.shape[0] != self.n_items:
                raise DataError(
                    f"{key}: features of shape {tuple(f.shape)}, expected ({self.n_items}, d): one row per item id"
                )
            if not bool(torch.isfinite(f).all()):
                raise DataError(f"{key}: features contain NaN or inf")
            feats.append(f)
        return feats

    def _build_graphs(self, config, inter, t_feat, v_feat) -> None:
        cfg = self.cfg
        path = None
        if cfg["graph_cache"]:
            path = cache_dir(_get(config, "data_path", "."), _get(config, "dataset", "dataset"))
        tn, vn = t_feat.detach().cpu().numpy(), v_feat.detach().cpu().numpy()
        start = time.perf_counter()
        ii_co, uu_co = cfg["ii_co_weight"], cfg["uu_co_weight"]
        if cfg["modality_weights"] == "auto":  # chosen by the inner-validation probe
            (ii_co, (beta_t, beta_v)), _ = cached_graph_weights(
                path, inter, [tn, vn], cfg["ii_knn_k"], weight_candidates(2))
            if ii_co >= 1.0:  # neither modality helps the item graph: users by co-interaction too
                uu_co = 1.0
            logger.info("BRMRS modality_weights auto: ii_co_weight %.2f, text %.2f, visual %.2f%s",
                        ii_co, beta_t, beta_v, ", uu_co_weight 1" if uu_co == 1.0 else "")
            self.graph_weights = {"ii_co_weight": ii_co, "uu_co_weight": uu_co,
                                  "modality_weights": [beta_v, beta_t]}
        else:
            beta_v, beta_t = cfg["modality_weights"]
        g_ii, hit_i = cached_knn_graph(
            path, "item", inter.T, [tn, vn], [beta_t, beta_v], ii_co, cfg["ii_knn_k"],
            cfg["knn_block_size"],
        )
        g_uu, hit_u = cached_knn_graph(
            path, "user", inter, [user_profiles(inter, tn), user_profiles(inter, vn)], [beta_t, beta_v],
            uu_co, cfg["uu_knn_k"], cfg["knn_block_size"],
        )
        logger.info(
            "BRMRS graphs: item %d edges (cache %s), user %d edges (cache %s), %.1fs",
            g_ii.nnz, "hit" if hit_i else "miss", g_uu.nnz, "hit" if hit_u else "miss",
            time.perf_counter() - start,
        )
        dev = self.device
        self.register_buffer("adj_ui", to_torch_sparse(bipartite_csr(inter), dev), persistent=False)
        self.register_buffer("adj_ii", to_torch_sparse(g_ii, dev), persistent=False)
        self.register_buffer("adj_uu", to_torch_sparse(g_uu, dev), persistent=False)
        indptr = torch.from_numpy(inter.indptr.astype(np.int64))
        indices = torch.from_numpy(inter.indices.astype(np.int64))
        rows = torch.repeat_interleave(torch.arange(self.n_users), indptr[1:] - indptr[:-1])
        self.register_buffer("train_indptr", indptr.to(dev), persistent=False)
        self.register_buffer("train_indices", indices.to(dev), persistent=False)
        self.register_buffer("train_codes", (rows * self.n_items + indices).to(dev), persistent=False)

    def reset_parameters(self) -> None:
        for emb in (self.user_emb_t, self.user_emb_v, self.item_emb_t, self.item_emb_v):
            if emb is not None:
                nn.init.xavier_uniform_(emb.weight)
        for lin in (self.proj_t, self.proj_v):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.fusion.reset_parameters()
        self._eval_cache = None

    # -- encoder ----------------------------------------------------------------------------
    def layer0(self):
        """Layer-0 embeddings ``[n_users + n_items, 2d]`` (text channel first, then visual)."""
        p = self.cfg["feat_dropout"]
        if self.cfg["proj_bf16"]:  # bfloat16 products, float32 results and weights
            with torch.autocast(self.feat_t.device.type, dtype=torch.bfloat16):
                h_t = self.proj_t(F.dropout(self.feat_t, p, self.training))
                h_v = self.proj_v(F.dropout(self.feat_v, p, self.training))
            h_t, h_v = h_t.float(), h_v.float()
        else:
            h_t = self.proj_t(F.dropout(self.feat_t, p, self.training))
            h_v = self.proj_v(F.dropout(self.feat_v, p, self.training))
        if self.item_emb_t is not None:
            h_t = h_t + self.item_emb_t.weight
            h_v = h_v + self.item_emb_v.weight
        return channel_blocks(self.user_emb_t.weight, self.user_emb_v.weight, h_t, h_v)

    def forward(self, users=None):
        """``(p, q, x0)``: users ``[n_users, 2d]`` (or ``[B, 2d]`` for ``users`` LongTensor
        ``[B]``: the user smoothing then only computes those rows), items ``[n_items, 2d]``
        (columns ``:d`` text, ``d:`` visual) and the layer-0 embeddings."""
        x0 = self.layer0()
        p, q = self.propagate(x0, users)
        return p, q, x0

    def propagate(self, x0, users=None, l2_rows=None):
        """``(p, q)`` from the layer-0 embeddings ``x0`` (see :meth:`forward`); with
        ``l2_rows``, ``(p, q, sum_{r in l2_rows} ||x0_r||^2)``, the penalty's gradient
        folded into the propagation's backward (:func:`lightgcn_l2`)."""
        out, l2 = lightgcn_l2(self.adj_ui, x0, self.n_ui_layers, l2_rows, symmetric=True)
        # split, not two slices: one backward concatenation instead of two zero-filled
        # [n_users + n_items, 2d] gradients that are then added
        p, q = out.split([self.n_users, self.n_items])
        q = smooth(self.adj_ii, q, self.n_ii_layers, symmetric=True)
        if users is None:
            p = smooth(self.adj_uu, p, self.n_uu_layers, symmetric=True)
        else:
            p = smooth_rows(self.adj_uu, p, self.n_uu_layers, users, symmetric=True)
        return (p, q) if l2_rows is None else (p, q, l2)

    def _split(self, x):
        return x.split(self.dim, dim=-1)

    # -- training ---------------------------------------------------------------------------
    def pre_epoch_processing(self):
        self.epoch = self._epochs_started
        self._epochs_started += 1

    def chns_active(self) -> bool:
        """CHNS trains from epoch ``chns_warmup`` on (0: from the start)."""
        return self.cfg["chns_weight"] > 0 and self.epoch >= self.cfg["chns_warmup"]

    def chns_weight_now(self) -> float:
        """``chns_weight * chns_decay ** (epoch - chns_warmup)`` once CHNS is active."""
        cfg = self.cfg
        return cfg["chns_weight"] * cfg["chns_decay"] ** max(0, self.epoch - cfg["chns_warmup"])

    def train(self, mode: bool = True):
        self._eval_cache = None
        return super().train(mode)

    def calculate_loss(self, interaction):
        cfg = self.cfg
        self._eval_cache = None
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        batch = users.shape[0]
        x0 = self.layer0()
        l2 = None
        if cfg["reg_weight"] > 0:
            # the L2 penalty of the batch's layer-0 rows, computed inside the propagation
            # node so that its gradient is added in place (a separate lookup of x0 rows
            # costs autograd one more full [n_users + n_items, 2d] gradient: 8 ms per Baby step)
            reg_rows = torch.cat([users, self.n_users + pos, self.n_users + neg])
            pu, q, l2 = self.propagate(x0, users, l2_rows=reg_rows)  # pu: [B, 2d], batch users only
        else:
            pu, q = self.propagate(x0, users)
        pu_t, pu_v = self._split(pu)
        chns = self.chns_active()
        if chns:
            neg_t, neg_v = self.hard_negatives(users, pu_t, pu_v, q, pos)
            items = torch.cat([pos, neg, neg_t, neg_v])
        else:
            items = torch.cat([pos, neg])
        # one gather (one backward scatter) for all item rows read, split (not sliced: one
        # backward concatenation) into [pos, neg(, neg for text, neg for visual)]
        q_b = q.index_select(0, items).split(batch)
        qp_t, qp_v = self._split(q_b[0])
        qn_t, qn_v = self._split(q_b[1])
        s_t_pos, s_v_pos = (pu_t * qp_t).sum(-1), (pu_v * qp_v).sum(-1)
        need_fused = cfg["syn_weight"] > 0 or cfg["bpr_weight"] > 0 or cfg["branch_bpr_weight"] > 0
        if need_fused:  # (syn_weight > 0 implies need_fused)
            s_t_neg_i, s_v_neg_i = (pu_t * qn_t).sum(-1), (pu_v * qn_v).sum(-1)
        if need_fused and self.fusion.kind == "concat":  # <[a; b], [c; d]> = <a, c> + <b, d>
            s_f_pos, s_f_neg = s_t_pos + s_v_pos, s_t_neg_i + s_v_neg_i
        elif need_fused:
            pu_f = self.fusion(pu_t, pu_v)
            s_f_pos = (pu_f * self.fusion(qp_t, qp_v)).sum(-1)
            s_f_neg = (pu_f * self.fusion(qn_t, qn_v)).sum(-1)

        loss = x0.new_zeros(())
        if chns:
            s_t_neg = (pu_t * self._split(q_b[2])[0]).sum(-1)  # text branch on its negative
            s_v_neg = (pu_v * self._split(q_b[3])[1]).sum(-1)  # visual branch on its negative
            loss = loss + self.chns_weight_now() * chns_loss(s_t_pos, s_t_neg, s_v_pos, s_v_neg)
        if cfg["syn_weight"] > 0:
            d_t = s_t_pos - s_t_neg_i
            d_v = s_v_pos - s_v_neg_i
            loss = loss + cfg["syn_weight"] * synergy_bpr_loss(
                s_f_pos - s_f_neg, d_t, d_v, cfg["syn_margin"], cfg["syn_detach"]
            )
        if cfg["bpr_weight"] > 0:
            loss = loss + cfg["bpr_weight"] * bpr_loss(s_f_pos, s_f_neg)
        if cfg["branch_bpr_weight"] > 0:  # each unimodal branch on the framework's uniform negative
            loss = loss + cfg["branch_bpr_weight"] * (
                bpr_loss(s_t_pos, s_t_neg_i) + bpr_loss(s_v_pos, s_v_neg_i))
        if cfg["nce_weight"] > 0:
            loss = loss + cfg["nce_weight"] * info_nce(qp_t, qp_v, cfg["nce_temperature"])
        if cfg["orth_weight"] > 0:
            loss = loss + cfg["orth_weight"] * orthogonality(qp_t, qp_v)
        if l2 is not None:  # l2_reg(x0[reg_rows], batch_size=batch)
            loss = loss + cfg["reg_weight"] * (l2 / batch)
        return loss

    def candidate_pool(self, users):
        """``[B, pool_size]`` items drawn uniformly from each user's non-training items."""
        return sample_candidate_pool(
            users, self.pool_size, self.train_indptr, self.train_indices, self.n_items,
            train_codes=self.train_codes,
        )

    def hard_negatives(self, users, pu_t, pu_v, q, pos=None):
        """``(neg for the text branch, neg for the visual branch)`` ``[B]`` under ``neg_strategy``
        and ``chns_hardness``. With ``chns_guard`` and the positives ``pos`` given, a pool item
        that a branch scores above the positive is not a candidate under that branch's scores
        (a likely false negative); a row left without candidates takes its lowest-scored item."""
        cfg = self.cfg
        pool = self.candidate_pool(users)
        if self.neg_strategy == "uniform":
            return select_negatives("uniform", None, None, None, pool)
        with torch.no_grad():
            s_t, s_v, s_f = self._pool_scores(pu_t.detach(), pu_v.detach(), q.detach(), pool)
            if cfg["chns_guard"] and pos is not None:
                q_pos = q.detach().index_select(0, pos)
                if s_t is not None:  # (the guard reads the branch scores: not for "fused")
                    s_t = _guard(s_t, (pu_t.detach() * self._split(q_pos)[0]).sum(-1))
                    s_v = _guard(s_v, (pu_v.detach() * self._split(q_pos)[1]).sum(-1))
        return select_negatives(self.neg_strategy, s_t, s_v, s_f, pool, cfg["chns_hardness"],
                                cfg["chns_temperature"], cfg["chns_topk"])

    def _pool_scores(self, pu_t, pu_v, q, pool):
        """``(s_t, s_v, s_f)`` ``[B, P]``: the branch scores of the pool items (``s_f`` only
        for ``neg_strategy`` ``fused``).

        On CPU, ``s_t`` and ``s_v`` come from ``torch.sparse.sampled_addmm``: the products
        ``<p_u, q_j>`` evaluated only at the pool's ``(row, item)`` positions, without
        gathering a ``[B, P, 2d]`` copy of the pool's item rows (4x cheaper on Baby).
        Elsewhere (CUDA, or an older torch without the CPU kernel) the rows are gathered."""
        b, n_pool = pool.shape
        fused = self.neg_strategy == "fused"
        s_t = s_v = s_f = None
        # (the CSR pattern may hold repeated items in a row, which the kernel evaluates one by
        # one, but it refuses more entries per row than there are columns)
        if pool.device.type == "cpu" and not fused and _HAS_CPU_SDDMM and n_pool <= q.shape[0]:
            crow = torch.arange(0, b * n_pool + 1, n_pool, device=pool.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                pattern = torch.sparse_csr_tensor(crow, pool.reshape(-1), q.new_zeros(b * n_pool),
                                                  size=(b, q.shape[0]))
            q_t, q_v = self._split(q)
            s_t = torch.sparse.sampled_addmm(pattern, pu_t, q_t.t(), beta=0.0).values().view(b, n_pool)
            s_v = torch.sparse.sampled_addmm(pattern, pu_v, q_v.t(), beta=0.0).values().view(b, n_pool)
            return s_t, s_v, s_f
        cand = q.index_select(0, pool.reshape(-1)).view(b, n_pool, -1)
        cand_t, cand_v = self._split(cand)  # [B, P, d] each
        s_t = torch.einsum("bd,bpd->bp", pu_t, cand_t)
        s_v = torch.einsum("bd,bpd->bp", pu_v, cand_v)
        if fused:
            s_f = torch.einsum("bd,bpd->bp", self.fusion(pu_t, pu_v), self.fusion(cand_t, cand_v))
        return s_t, s_v, s_f

    # -- evaluation -------------------------------------------------------------------------
    def _param_versions(self):
        return tuple(getattr(prm, "_version", 0) for prm in self.parameters())

    def representations(self):
        """``{'t': (p, q), 'v': (p, q), 'f': (p, q)}``, all users and items. In eval mode the
        result is cached until the parameters change or the model trains again."""
        versions = self._param_versions()
        if not self.training and self._eval_cache is not None and self._eval_cache[0] == versions:
            return self._eval_cache[1]
        with torch.no_grad():
            p, q, _ = self.forward()
            p_t, p_v = self._split(p)
            q_t, q_v = self._split(q)
            reps = {
                "t": (p_t, q_t),
                "v": (p_v, q_v),
                "f": (self.fusion(p_t, p_v), self.fusion(q_t, q_v)),
            }
        if not self.training:
            self._eval_cache = (versions, reps)
        return reps

    def full_sort_predict(self, interaction):
        """Fused scores ``[B, n_items]`` for the users ``interaction[0]`` (a fresh tensor)."""
        users = interaction[0]
        p_f, q_f = self.representations()["f"]
        return torch.matmul(p_f[users], q_f.t())

    def branch_scores(self, users):
        """``{'t', 'v', 'f'}`` -> scores ``[B, n_items]`` of the text, visual and fused branches."""
        reps = self.representations()
        return {m: torch.matmul(p[users], q.t()) for m, (p, q) in reps.items()}
