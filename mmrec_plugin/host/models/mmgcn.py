"""MMGCN: one graph convolution network per modality over the user-item graph.

Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation
of Micro-video", ACM MM 2019. Written from the paper (mean aggregation, element-wise-add
combination layer).

For each modality ``m`` (visual, text) a separate network runs over the bipartite training
graph. Layer 0: item ``i`` has ``x_i^m = LeakyReLU(W_0^m f_i^m)`` (``f_i^m`` the raw features,
projected to ``dim_latent``), user ``u`` a learned modality preference ``x_u^m``
(``dim_latent`` wide). Users and items also have ID embeddings ``e_id`` (``embedding_size``
wide), shared by the modalities. Layer ``l = 1..L`` for every node ``n`` (user or item):

    h_n   = LeakyReLU(W_1^{m,l} mean_{k in N(n)} x_k^{m,(l-1)})          (aggregation)
    c_n   = LeakyReLU(W_3^{m,l} x_n^{m,(l-1)}) + e_id(n)
    x_n^{m,(l)} = LeakyReLU(h_n + c_n)                                    (combination)

(``W_1``, ``W_3``: linear maps to ``embedding_size`` with bias; the mean over neighbours is a
product with ``D^-1 A``; a node without training edges aggregates zeros.)
Scores: ``u* = sum_m x_u^{m,(L)}``, ``i* = sum_m x_i^{m,(L)}``, ``s(u, i) = <u*, i*>``.
Loss: ``BPR(s(u,i), s(u,j)) + reg_weight * (||e_id(u)|| + ||x_u^{m,(0)}||_m + ||e_id(i)|| +
||e_id(j)||) / B`` (Frobenius norms of the batch's layer-0 user preferences and ID
embeddings, MMRec's regulariser).

Per-modality representation (:meth:`MMGCN.branches`; what a plug-in objective such as
BR-MRS's sees, ``MMGCN_BR`` in ``src/models/mmgcn_br.py``): the last
layer of modality ``m``'s own network, ``x_u^{m,(L)}`` and ``x_i^{m,(L)}``, so
``s_m(u, i) = <x_u^{m,(L)}, x_i^{m,(L)}>``; the fused score is ``s(u, i)`` above (which
also contains the cross terms ``<x_u^t, x_i^v>`` and ``<x_u^v, x_i^t>``).

Args (config keys):
    embedding_size (int, 64): width of every layer's output and of the ID embeddings.
    dim_latent (int, 64): width of layer 0 (projected features, user preferences).
    n_layers (int, 2): graph convolution layers per modality (>= 1).
    reg_weight (float, 1e-4): weight of the regulariser.
"""
from __future__ import annotations

import dataclasses

from typing import Dict, List, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.models.bpr import bpr_loss, embedding_norm_reg
from mmrec_plugin.eval_cache import EvalCache
from mmrec_plugin.sparse import binarize, sparse_mm, to_torch_csr
from mmrec_plugin.schema import Schema, key

__all__ = ["MMGCN", "mean_bipartite_adjacency"]


def mean_bipartite_adjacency(inter) -> sp.csr_matrix:
    """``D^-1 A`` for ``A = [[0, R], [R^T, 0]]``: row ``n`` averages ``n``'s neighbours
    (a zero row for a node without edges). float32 CSR ``(n_users + n_items)`` square."""
    r = binarize(inter)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = 1.0 / deg[deg > 0]
    out = sp.csr_matrix(sp.diags(inv) @ adj, dtype=np.float32)
    out.sort_indices()
    return out


class _ModalityGCN(nn.Module):
    """One modality's network (see the module docstring)."""

    def __init__(self, n_users: int, feat_dim: int, dim_latent: int, dim: int, n_layers: int):
        super().__init__()
        self.preference = nn.Parameter(torch.empty(n_users, dim_latent))
        nn.init.xavier_normal_(self.preference)
        self.proj = nn.Linear(feat_dim, dim_latent)
        widths = [dim_latent] + [dim] * n_layers
        self.agg = nn.ModuleList(nn.Linear(widths[l], dim) for l in range(n_layers))
        self.comb = nn.ModuleList(nn.Linear(widths[l], dim) for l in range(n_layers))
        for lin in list(self.agg) + list(self.comb) + [self.proj]:
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, adj: torch.Tensor, feats: torch.Tensor, id_emb: torch.Tensor) -> torch.Tensor:
        """``[n_users + n_items, dim]``: the last layer for every node."""
        x = torch.cat([self.preference, F.leaky_relu(self.proj(feats))], dim=0)
        for agg, comb in zip(self.agg, self.comb):
            h = F.leaky_relu(agg(sparse_mm(adj, x)))
            x = F.leaky_relu(h + F.leaky_relu(comb(x)) + id_emb)
        return x


@dataclasses.dataclass(frozen=True)
class MMGCNConfig(Schema):
    """MMGCN's keys (MMRec's names and defaults)."""

    OWNER = "MMGCN"
    embedding_size: int = key(int, 64, "dimension of the ID embeddings and of each layer's output", ge=1)
    dim_latent: int = key(int, 64, "width of the projected modality features at layer 0", ge=1)
    n_layers: int = key(int, 2, "graph convolution layers per modality", ge=1)
    reg_weight: float = key(float, 1e-4, "weight of the L2 regulariser", ge=0.0)


class MMGCN(EvalCache, GeneralRecommender):
    """MMGCN; see the module docstring."""

    config_schema = MMGCNConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        name = "MMGCN"
        cfg = MMGCNConfig.from_config(config)
        self.embedding_size, self.dim_latent = cfg.embedding_size, cfg.dim_latent
        self.n_layers, self.reg_weight = cfg.n_layers, cfg.reg_weight
        feats = {"visual": self.v_feat, "text": self.t_feat}
        self.modalities: List[str] = [m for m in ("visual", "text") if feats[m] is not None]
        if not self.modalities:
            raise ConfigError(f"{name} needs item features: set is_multimodal_model: True and "
                              "provide image_feat.npy and/or text_feat.npy")
        self.id_embedding = nn.Parameter(torch.empty(self.n_users + self.n_items, self.embedding_size))
        nn.init.xavier_normal_(self.id_embedding)
        self.gcn = nn.ModuleDict({
            m: _ModalityGCN(self.n_users, feats[m].shape[1], self.dim_latent, self.embedding_size, self.n_layers)
            for m in self.modalities
        })
        adj = mean_bipartite_adjacency(dataloader.inter_matrix(form="coo"))
        self.register_buffer("mean_adj", to_torch_csr(adj), persistent=False)
        self.to(self.device)

    def modality_representations(self) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """``{m: (users [n_users, d], items [n_items, d])}``: each modality's last layer
        (``m``: visual, text)."""
        feats = {"visual": self.v_feat, "text": self.t_feat}
        out = {}
        for m in self.modalities:
            x = self.gcn[m](self.mean_adj, feats[m], self.id_embedding)
            out[m] = tuple(torch.split(x, [self.n_users, self.n_items], dim=0))
        return out

    @staticmethod
    def fuse(reps: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(sum_m users_m, sum_m items_m)``."""
        users = sum(r[0] for r in reps.values())
        items = sum(r[1] for r in reps.values())
        return users, items

    def forward(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(u* [n_users, d], i* [n_items, d])``."""
        return self.fuse(self.modality_representations())

    def branches(self, users: torch.Tensor):
        """Per-modality and fused representations of a batch: ``({m: (users_m [B, d],
        items_m [n_items, d])}, (u* [B, d], i* [n_items, d]))``; scores are inner products."""
        reps = self.modality_representations()
        user_all, item_all = self.fuse(reps)
        return {m: (r[0][users], r[1]) for m, r in reps.items()}, (user_all[users], item_all)

    def calculate_loss(self, interaction: torch.Tensor):
        """``interaction``: ``LongTensor[3, B]`` (users, positives, negatives). The BPR loss,
        or ``(bpr, regulariser)`` when ``reg_weight`` > 0."""
        self.drop_eval_cache()
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        _, (u, item_all) = self.branches(users)
        loss = bpr_loss((u * item_all[pos]).sum(-1), (u * item_all[neg]).sum(-1))
        reg = self.regularizer(users, pos, neg)
        return loss if reg is None else (loss, reg)

    def regularizer(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):
        """``reg_weight`` x the norms of the batch's layer-0 preferences and ID embeddings
        (module docstring), or None when ``reg_weight`` is 0."""
        if not self.reg_weight:
            return None
        prefs = [self.gcn[m].preference[users] for m in self.modalities]
        return self.reg_weight * embedding_norm_reg(*prefs, self.id_embedding[users],
                                                    self.id_embedding[pos + self.n_users],
                                                    self.id_embedding[neg + self.n_users])
