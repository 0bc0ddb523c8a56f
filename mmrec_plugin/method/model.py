"""BRMRSNet: the BR-MRS model for M >= 2 modalities, framework-free (docs/METHOD.md).

One :class:`ModalityChannel` per modality, in an ``nn.ModuleDict`` keyed by modality name
(channels ordered by name, so ``text`` comes before ``visual``). Channel ``m`` holds its own
user embedding ``E_u^(m)``, projection ``W_m`` and (``item_id_in_channels``) item id
embedding; its layer-0 item input is ``h_i^(m) = W_m x_i^(m) (+ e_i^(m))``.

All channels share the graphs (LightGCN over ``G_ui``, then ``q <- q + G_ii^L q`` and
``p <- p + G_uu^L p``; with ``edge_dropout`` > 0, training propagates over the epoch's pruned
``G_ui``, drawn by :meth:`BRMRSNet.start_epoch` with FREEDOM's degree-sensitive rule, and
evaluation over the full one). Propagation is linear and column-wise, so channel ``m``'s
``[N, d]`` block propagates on its own within one autograd node per graph: the same numbers,
bit for bit, as one ``[N, M d]`` pass (:meth:`BRMRSNet.layer0`), and faster on CPU (MKL
multiplies 64 columns more than twice as fast as 128; no block copies or concatenated
gradients). The branch representations ``p^(m), q^(m)`` are the channels' results; the fused ones are
``phi(p^(1..M))``, ``phi(q^(1..M))`` (:class:`~mmrec_plugin.method.fusion.Fusion`).

Loss (:meth:`BRMRSNet.loss_terms`): the named weighted terms of
:class:`~mmrec_plugin.method.objective.BRObjective` (``chns``, ``syn``, ``bpr``), then
``nce`` and ``orth`` (mean over modality pairs of the positive items' representations;
study switches, 0 by default) and ``reg`` (``reg_weight * ||batch layer-0 rows||^2 / B``,
folded into the propagation's backward).

Eval cache (:class:`mmrec_plugin.eval_cache.EvalCache`, the host models' too):
:meth:`BRMRSNet.representations` keeps its result while the module is in eval mode and the
parameters' versions are unchanged; ``train()`` and every :meth:`loss_terms` call drop it (a
fused optimiser step does not bump versions).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Mapping, Optional

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmrec_plugin.eval_cache import EvalCache
from mmrec_plugin.sparse import bipartite_csr, binarize, lightgcn_l2, to_torch_csr
from mmrec_plugin.neighbours import degree_weights, empty_columns, prune_edges, zero_rows

from .cache import cached_knn_graph
from .config import BRMRSConfig
from .fusion import Fusion
from .graphs import user_profiles
from .losses import info_nce, orthogonality
from .objective import BRObjective
from .probe import cached_graph_weights, weight_candidates
from .propagation import channel_blocks, smooth, smooth_rows

__all__ = ["ModalityChannel", "BRMRSNet", "SHORT_NAMES", "prune_interactions", "upgrade_v01_state_dict"]

logger = logging.getLogger(__name__)

#: branch keys of :meth:`BRMRSNet.branch_scores` for MMRec's two modalities (analysis: t, v, f)
SHORT_NAMES = {"text": "t", "visual": "v"}


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16); unknown: True."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    checks = [c for c in checks if callable(c)]
    return not checks or any(c() for c in checks)


class ModalityChannel(nn.Module):
    """One modality's parameters and layer-0 inputs.

    Args:
        features: ``[n_items, d_in]`` float features (kept as a non-persistent buffer, in
            bfloat16 with ``bf16``).
        n_users: number of users. dim: ``d``. item_id: add an item id embedding.
        bf16: project under bfloat16 autocast (float32 weights and results).
        untrained_items: LongTensor of the items without a training interaction (cold-start
            items): their id embedding is left out, so they enter from their features alone.
    """

    def __init__(self, features: Tensor, n_users: int, dim: int, item_id: bool, bf16: bool = False,
                 untrained_items: Optional[Tensor] = None):
        super().__init__()
        n_items, d_in = features.shape
        self.user_emb = nn.Embedding(n_users, dim)
        self.proj = nn.Linear(d_in, dim)
        self.item_emb = nn.Embedding(n_items, dim) if item_id else None
        self.bf16 = bf16
        self.register_buffer("feat", features.to(torch.bfloat16) if bf16 else features, persistent=False)
        self.register_buffer("untrained_items", untrained_items, persistent=False)

    def layer0(self, dropout: float):
        """``(users [n_users, d], items [n_items, d])``: ``E_u`` and ``W x_i (+ e_i)``."""
        x = F.dropout(self.feat, dropout, self.training)
        if self.bf16:
            with torch.autocast(self.feat.device.type, dtype=torch.bfloat16):
                h = self.proj(x)
            h = h.float()
        else:
            h = self.proj(x)
        if self.item_emb is not None:
            h = h + zero_rows(self.item_emb.weight, self.untrained_items)
        return self.user_emb.weight, h


class BRMRSNet(EvalCache, nn.Module):
    """BR-MRS over the training matrix and M >= 2 modality feature arrays.

    Args:
        cfg: :class:`~mmrec_plugin.method.config.BRMRSConfig`.
        train_matrix: scipy ``(n_users, n_items)`` training interactions (binarised).
        features: modality name -> ``[n_items, d_m]`` tensor (any order; channels are sorted
            by name). ``cfg.modality_weights`` must name exactly these modalities.
        cache_path: folder of the graph cache (None: no cache).
        device: where the buffers and parameters live.
    """

    def __init__(self, cfg: BRMRSConfig, train_matrix, features: Mapping[str, Tensor],
                 cache_path: Optional[str] = None, device=None):
        super().__init__()
        if len(features) < 2:
            raise ValueError(f"BRMRSNet: needs at least two modalities, got {sorted(features)}")
        names = sorted(features)
        if cfg.modality_weights != "auto" and sorted(cfg.modality_weights) != names:
            raise ValueError(f"BRMRSNet: modality_weights names {sorted(cfg.modality_weights)}, the data "
                             f"has the modalities {names}")
        inter = binarize(train_matrix)
        self.cfg = cfg
        self.n_users, self.n_items = inter.shape
        self.dim = d = cfg.embedding_size
        device = torch.device(device) if device is not None else torch.device("cpu")
        feats = {}
        for m in names:
            f = torch.as_tensor(features[m], dtype=torch.float32, device=device)
            if f.dim() != 2 or f.shape[0] != self.n_items:
                raise ValueError(f"BRMRSNet: {m} features of shape {tuple(f.shape)}, expected ({self.n_items}, d)")
            if not bool(torch.isfinite(f).all()):
                raise ValueError(f"BRMRSNet: {m} features contain NaN or inf")
            feats[m] = f
        if cfg.proj_bf16 and device.type == "cpu" and not _cpu_has_native_bf16():
            logger.warning("proj_bf16: this CPU has no AMX / AVX512-BF16, so bfloat16 "
                           "projections are emulated and slower than float32; set proj_bf16 False")
        self._build_graphs(inter, feats, cache_path, device)
        untrained = torch.from_numpy(empty_columns(inter)).to(device)
        self.channels = nn.ModuleDict({
            m: ModalityChannel(feats[m], self.n_users, d, cfg.item_id_in_channels, cfg.proj_bf16, untrained)
            for m in names
        })
        self.fusion = Fusion(cfg.fusion, d, len(names))
        self.objective = BRObjective(inter, cfg)
        self._inter = inter
        self.adj_ui_train: Optional[Tensor] = None  # this epoch's pruned G_ui (edge_dropout > 0)
        self.drop_eval_cache()
        self.to(device)
        self.reset_parameters()

    @property
    def modalities(self) -> List[str]:
        return list(self.channels)

    @property
    def score_dim(self) -> int:
        """Width of the vectors whose product ranks items (read by ``mmrec-plugin bench``)."""
        return self.fusion.out_dim

    def _build_graphs(self, inter, feats, cache_path, device) -> None:
        cfg = self.cfg
        names = list(feats)
        arrays = [feats[m].detach().cpu().numpy() for m in names]
        start = time.perf_counter()
        ii_co, uu_co = cfg.ii_co_weight, cfg.uu_co_weight
        if cfg.modality_weights == "auto":  # chosen by the inner-validation probe
            (ii_co, betas), _ = cached_graph_weights(cache_path, inter, arrays, cfg.ii_knn_k,
                                                      weight_candidates(len(names)))
            weights = list(betas)
            if ii_co >= 1.0:  # no modality helps the item graph: users by co-interaction too
                uu_co = 1.0
            logger.info("BRMRS modality_weights auto: ii_co_weight %.2f, %s%s", ii_co,
                        ", ".join(f"{m} {w:.2f}" for m, w in zip(names, weights)),
                        ", uu_co_weight 1" if uu_co == 1.0 else "")
            #: the graph weights the probe chose (``modality_weights: auto`` only)
            self.graph_weights = {"ii_co_weight": ii_co, "uu_co_weight": uu_co,
                                  "modality_weights": dict(zip(names, weights))}
        else:
            weights = [cfg.modality_weights[m] for m in names]
        g_ii, hit_i = cached_knn_graph(cache_path, "item", inter.T, arrays, weights, ii_co,
                                       cfg.ii_knn_k, cfg.knn_block_size)
        g_uu, hit_u = cached_knn_graph(cache_path, "user", inter, [user_profiles(inter, a) for a in arrays],
                                       weights, uu_co, cfg.uu_knn_k, cfg.knn_block_size)
        logger.info("BRMRS graphs: item %d edges (cache %s), user %d edges (cache %s), %.1fs",
                    g_ii.nnz, "hit" if hit_i else "miss", g_uu.nnz, "hit" if hit_u else "miss",
                    time.perf_counter() - start)
        self.register_buffer("adj_ui", to_torch_csr(bipartite_csr(inter), device), persistent=False)
        self.register_buffer("adj_ii", to_torch_csr(g_ii, device), persistent=False)
        self.register_buffer("adj_uu", to_torch_csr(g_uu, device), persistent=False)

    def reset_parameters(self) -> None:
        """Xavier-uniform embeddings and projections, zero biases (user embeddings of every
        channel first, then item embeddings, then projections: release 0.1's order)."""
        chans = list(self.channels.values())
        for emb in [c.user_emb for c in chans] + [c.item_emb for c in chans if c.item_emb is not None]:
            nn.init.xavier_uniform_(emb.weight)
        for c in chans:
            nn.init.xavier_uniform_(c.proj.weight)
            nn.init.zeros_(c.proj.bias)
        self.fusion.reset_parameters()
        self.drop_eval_cache()

    # -- epochs -----------------------------------------------------------------------------
    def start_epoch(self) -> None:
        """Call once before every training epoch: the objective counts it (CHNS warm-up and
        decay) and, with ``edge_dropout`` > 0, this epoch's pruned ``G_ui`` is drawn."""
        self.objective.start_epoch()
        if self.cfg.edge_dropout > 0:
            kept = prune_interactions(self._inter, self.cfg.edge_dropout)
            self.adj_ui_train = to_torch_csr(bipartite_csr(kept), self.adj_ui.device)

    # -- encoder ----------------------------------------------------------------------------
    def layer0(self) -> Tensor:
        """Layer-0 embeddings ``[n_users + n_items, M d]`` (channel blocks in name order)."""
        parts = [c.layer0(self.cfg.feat_dropout) for c in self.channels.values()]
        return channel_blocks([u for u, _ in parts], [i for _, i in parts])

    def _layer0_blocks(self) -> List[Tensor]:
        """The column blocks of :meth:`layer0`, one ``[n_users + n_items, d]`` per channel."""
        return [torch.cat(c.layer0(self.cfg.feat_dropout)) for c in self.channels.values()]

    def propagate(self, x0: List[Tensor], users: Optional[Tensor] = None, l2_rows: Optional[Tensor] = None):
        """``(p, q, l2)`` from the channels' layer-0 blocks ``x0``: lists of user blocks
        ``[n_users, d]`` (``[B, d]`` for ``users``: only those rows are smoothed) and item
        blocks ``[n_items, d]``, and ``sum_{r in l2_rows} ||layer0()_r||^2`` (None without
        ``l2_rows``; its gradient is folded into the propagation's). Each block propagates
        on its own (the same numbers as one ``[N, M d]`` pass: propagation is column-wise;
        faster, and the blocks are what the branches read)."""
        cfg = self.cfg
        adj = self.adj_ui_train if self.training and self.adj_ui_train is not None else self.adj_ui
        outs, l2 = lightgcn_l2(adj, x0, cfg.n_ui_layers, l2_rows, symmetric=True)
        # split, not two slices: one backward concatenation instead of two zero-filled gradients
        p, q = (list(t) for t in zip(*(o.split([self.n_users, self.n_items]) for o in outs)))
        q = smooth(self.adj_ii, q, cfg.n_ii_layers, symmetric=True)
        if users is None:
            p = smooth(self.adj_uu, p, cfg.n_uu_layers, symmetric=True)
        else:
            p = smooth_rows(self.adj_uu, p, cfg.n_uu_layers, users, symmetric=True)
        return p, q, l2

    def forward(self, users: Optional[Tensor] = None):
        """``(p, q)`` of all users (or of ``users``) and all items, ``[*, M d]``."""
        p, q, _ = self.propagate(self._layer0_blocks(), users)
        return torch.cat(p, -1), torch.cat(q, -1)

    def branches(self, p: Tensor, q: Tensor) -> Dict[str, tuple]:
        """Modality name -> ``(p^(m), q^(m))``, the column blocks of ``p`` and ``q``."""
        return dict(zip(self.channels, zip(p.split(self.dim, -1), q.split(self.dim, -1))))

    # -- training ---------------------------------------------------------------------------
    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> Dict[str, Tensor]:
        """The weighted loss terms of a batch, by name (module docstring); their sum is the loss."""
        cfg = self.cfg
        self.drop_eval_cache()
        x0 = self._layer0_blocks()
        # the batch's layer-0 L2 penalty computed inside the propagation node, so that its
        # gradient is added in place (a separate lookup of x0 rows costs autograd one more
        # full [n_users + n_items, M d] gradient: 8 ms per Baby step)
        rows = torch.cat([users, self.n_users + pos, self.n_users + neg]) if cfg.reg_weight > 0 else None
        pu, q, l2 = self.propagate(x0, users, l2_rows=rows)
        branches = dict(zip(self.channels, zip(pu, q)))
        terms = self.objective(users, pos, neg, branches, fused=self._fused_scorer(branches))
        if cfg.nce_weight > 0 or cfg.orth_weight > 0:
            qp = [qm.index_select(0, pos) for _, qm in branches.values()]
            pairs = [(a, b) for i, a in enumerate(qp) for b in qp[i + 1:]]
            if cfg.nce_weight > 0:
                terms["nce"] = cfg.nce_weight * sum(info_nce(a, b, cfg.nce_temperature) for a, b in pairs) / len(pairs)
            if cfg.orth_weight > 0:
                terms["orth"] = cfg.orth_weight * sum(orthogonality(a, b) for a, b in pairs) / len(pairs)
        if l2 is not None:
            terms["reg"] = cfg.reg_weight * (l2 / users.shape[0])
        return terms

    def _fused_scorer(self, branches):
        """None when the fused score is the sum of the branch scores (concat), else a scorer
        ``items [B, K] -> [B, K]`` over the fused vectors of the gathered item rows."""
        if self.fusion.scores_add_up:
            return None
        users = [pm for pm, _ in branches.values()]
        items = [qm for _, qm in branches.values()]

        def score(table: Tensor) -> Tensor:
            b, k = table.shape
            flat = table.reshape(-1)
            q_f = self.fusion(*(qm.index_select(0, flat) for qm in items)).view(b, k, -1)
            return (self.fusion(*users).unsqueeze(1) * q_f).sum(-1)

        return score

    # -- evaluation -------------------------------------------------------------------------
    def representations(self) -> Dict[str, tuple]:
        """Modality name -> ``(p, q)`` of all users and items, plus ``'f'`` (fused); cached
        by the rule in the module docstring."""
        def compute():
            p, q, _ = self.propagate(self._layer0_blocks())
            reps = dict(zip(self.channels, zip(p, q)))
            reps["f"] = (self.fusion(*(p for p, _ in reps.values())), self.fusion(*(q for _, q in reps.values())))
            return reps

        return self.eval_cached(compute)

    def full_sort_predict(self, users: Tensor) -> Tensor:
        """Fused scores ``[B, n_items]`` (a fresh tensor)."""
        p_f, q_f = self.representations()["f"]
        return torch.matmul(p_f[users], q_f.t())

    def branch_scores(self, users: Tensor) -> Dict[str, Tensor]:
        """Scores ``[B, n_items]`` per branch: ``'t'``/``'v'`` for text/visual (other modalities
        by name) and ``'f'`` for the fused branch."""
        return {SHORT_NAMES.get(m, m): torch.matmul(p[users], q.t()) for m, (p, q) in self.representations().items()}


def prune_interactions(inter, dropout: float, generator: Optional[torch.Generator] = None):
    """Degree-sensitive edge pruning (:func:`mmrec_plugin.sparse.prune_edges`, FREEDOM's) of the
    training interactions ``inter`` (binarised scipy CSR): the kept interactions as a scipy CSR
    of the same shape (torch's generator: reproducible under the run's seed)."""
    rows, cols, w = degree_weights(inter, np.float64)
    keep = prune_edges(torch.from_numpy(w), dropout, generator).numpy()
    return sp.csr_matrix((np.ones(keep.size, dtype=np.float32), (rows[keep], cols[keep])), shape=inter.shape)


def upgrade_v01_state_dict(state: dict, src: str = "", dst: str = "") -> dict:
    """Release 0.1's BRMRS ``state_dict`` keys (``<src>user_emb_t.weight``, ``<src>proj_v.bias``,
    ``<src>fusion.*``) renamed in place to this net's (``<dst>channels.text.user_emb.weight``,
    ``<dst>fusion.*``). Returns ``state``."""
    for key in [k for k in state if isinstance(k, str) and k.startswith(src)]:
        name, _, param = key[len(src):].partition(".")
        base, _, suffix = name.rpartition("_")
        if base in ("user_emb", "item_emb", "proj") and suffix in ("t", "v"):
            modality = "text" if suffix == "t" else "visual"
            state[f"{dst}channels.{modality}.{base}.{param}"] = state.pop(key)
        elif name == "fusion":
            state[f"{dst}fusion.{param}"] = state.pop(key)
    return state
