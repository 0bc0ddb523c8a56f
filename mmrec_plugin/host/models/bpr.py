"""BPR: matrix factorisation trained with the Bayesian Personalised Ranking loss.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.

Score ``s(u, i) = <e_u, e_i>``; for a batch of triples ``(u, i, j)`` of size ``B``

    L = -mean(log sigmoid(s(u, i) - s(u, j)))
        + reg_weight * (||E_u|| + ||E_i|| + ||E_j||) / B

where ``||.||`` is the Frobenius norm of the batch's embedding rows (MMRec's embedding
regulariser: norms, not squared norms, divided by the batch size).

Args (config keys):
    embedding_size (int, default 64): the dimension of user and item embeddings.
    reg_weight (float, default 0.0): the weight of the embedding regulariser.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.schema import Schema, key


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``-mean(log sigmoid(pos - neg))``, computed stably with ``logsigmoid``. Shapes ``[B]``."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_norm_reg(*embeddings: torch.Tensor) -> torch.Tensor:
    """``sum_k ||E_k||_F / B`` with ``B`` the rows of the last tensor (MMRec's EmbLoss)."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]


@dataclasses.dataclass(frozen=True)
class BPRConfig(Schema):
    """BPR's keys (MMRec's names and defaults)."""

    OWNER = "BPR"
    embedding_size: int = key(int, 64, "dimension of the user and item embeddings", ge=1)
    reg_weight: float = key(float, 0.0, "weight of the embedding regulariser", ge=0.0)


class BPR(GeneralRecommender):
    """Matrix factorisation with the BPR loss; see the module docstring."""

    config_schema = BPRConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        cfg = BPRConfig.from_config(config)
        self.embedding_size, self.reg_weight = cfg.embedding_size, cfg.reg_weight
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.reset_parameters()
        self.to(self.device)

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        """``interaction``: ``LongTensor[3, B]`` (users, positives, negatives)."""
        u = self.user_embedding(interaction[0])
        pos = self.item_embedding(interaction[1])
        neg = self.item_embedding(interaction[2])
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        if self.reg_weight:
            loss = loss + self.reg_weight * embedding_norm_reg(u, pos, neg)
        return loss

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """``[B, n_items]`` scores for the users ``interaction[0]``."""
        return self.user_embedding(interaction[0]) @ self.item_embedding.weight.t()
