"""ContentCosine: a content-only reference, with no learned parameters.

Each item's content vector concatenates its modality features, each row L2-normalised:
``c_i = [x_i^(1) / |x_i^(1)|; ...; x_i^(M) / |x_i^(M)|]``. A user's profile is the mean of the
content vectors of their training items, ``p_u = mean_{i in O_u} c_i``, and the score is the
cosine ``s(u, i) = <p_u, c_i> / (|p_u| |c_i|)``. It ranks items that training never saw
exactly as it ranks the others: the baseline of a cold-start evaluation (a model that uses
content should beat it on cold items). It trains nothing (one epoch, a zero loss).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.abstract_recommender import GeneralRecommender

__all__ = ["ContentCosine"]


class ContentCosine(GeneralRecommender):
    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        feats = [f for _, f in sorted(self.features.items()) if f is not None]
        if not feats:
            raise ConfigError("ContentCosine needs item features (is_multimodal_model true and at "
                              "least one feature file)")
        content = F.normalize(torch.cat([F.normalize(f.float(), dim=1) for f in feats], dim=1), dim=1)
        inter = dataloader.inter_matrix(form="csr").astype(np.float32)
        deg = np.asarray(inter.sum(axis=1)).ravel()
        inv = np.zeros_like(deg)
        inv[deg > 0] = 1.0 / deg[deg > 0]
        mean = torch.as_tensor(np.asarray((sp.diags(inv) @ inter) @ content.cpu().numpy()),
                               dtype=torch.float32)
        self.register_buffer("items", content.to(self.device))
        self.register_buffer("users", F.normalize(mean, dim=1).to(self.device))
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # (the trainer's optimiser needs one)

    def calculate_loss(self, interaction):
        return (self.dummy * 0.0).sum()

    def full_sort_predict(self, interaction):
        return self.users[interaction[0]] @ self.items.t()

    def embeddings(self):
        return {"fused": (self.users, self.items)}
