"""LightGCN: linear propagation on the user-item graph, ID embeddings only.

He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020.

With the training matrix ``R`` (``n_users x n_items``, ones), the bipartite adjacency
``A = [[0, R], [R^T, 0]]`` and degrees ``d = A 1``, the normalised graph is
``A_hat = D^{-1/2} A D^{-1/2}`` (rows of zero degree stay zero). From the layer-0 embeddings
``E^(0) = [E_users; E_items]`` (Xavier-normal initialised),

    E^(l+1) = A_hat E^(l),   E = mean_{l=0..L} E^(l),   s(u, i) = <E_u, E_i>.

Loss for a batch of triples ``(u, i, j)`` of size ``B``:
``-mean(log sigmoid(s(u,i) - s(u,j))) + reg_weight * (||E^(0)_u|| + ||E^(0)_i|| + ||E^(0)_j||) / B``
(Frobenius norms of the batch's layer-0 rows, MMRec's regulariser).

Args (config keys):
    embedding_size (int, default 64): the embedding dimension.
    n_layers (int, default 2): the number of propagation layers ``L``.
    reg_weight (float, default 1e-4): the weight of the regulariser.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.models.bpr import bpr_loss, embedding_norm_reg
from mmrec_plugin.eval_cache import EvalCache
from mmrec_plugin.sparse import bipartite_csr, lightgcn, to_torch_csr
from mmrec_plugin.schema import Schema, key


@dataclasses.dataclass(frozen=True)
class LightGCNConfig(Schema):
    """LightGCN's keys (MMRec's names and defaults)."""

    OWNER = "LightGCN"
    embedding_size: int = key(int, 64, "dimension of the user and item embeddings", ge=1)
    n_layers: int = key(int, 2, "propagation layers on the normalised user-item graph", ge=0)
    reg_weight: float = key(float, 1e-4, "weight of the L2 regulariser on the batch's layer-0 embeddings", ge=0.0)


class LightGCN(EvalCache, GeneralRecommender):
    """LightGCN over the training graph; see the module docstring. Evaluation propagates once
    per evaluation (:class:`~mmrec_plugin.eval_cache.EvalCache`)."""

    config_schema = LightGCNConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        cfg = LightGCNConfig.from_config(config)
        self.embedding_size, self.n_layers, self.reg_weight = cfg.embedding_size, cfg.n_layers, cfg.reg_weight
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        adj = bipartite_csr(dataloader.inter_matrix(form="coo"))
        # derived from the data, not learned: a non-persistent buffer (moves with .to())
        self.register_buffer("norm_adj", to_torch_csr(adj), persistent=False)
        self.reset_parameters()
        self.to(self.device)

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def forward(self):
        """``(E_users [n_users, d], E_items [n_items, d])`` after propagation and layer mean."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
        out = lightgcn(self.norm_adj, ego, self.n_layers, symmetric=True)  # one autograd node
        return torch.split(out, [self.n_users, self.n_items], dim=0)

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        """``interaction``: ``LongTensor[3, B]`` (users, positives, negatives)."""
        self.drop_eval_cache()  # (a fused optimiser step does not bump parameter versions)
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        user_all, item_all = self.forward()
        u = user_all[users]
        loss = bpr_loss((u * item_all[pos]).sum(-1), (u * item_all[neg]).sum(-1))
        if self.reg_weight:
            loss = loss + self.reg_weight * embedding_norm_reg(
                self.user_embedding(users), self.item_embedding(pos), self.item_embedding(neg)
            )
        return loss
