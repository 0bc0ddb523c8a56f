"""FREEDOM: a frozen item-item graph and a degree-sensitively pruned user-item graph.

Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023. Written from the paper.

Graphs (built once from the training data and the raw modality features):

- Item-item graph, frozen. For each modality ``m`` the cosine similarity of the raw feature
  rows; each item keeps its ``knn_k`` most similar items (itself included: its similarity
  to itself is 1) with weight 1; ``S_m = D^-1/2 K_m D^-1/2`` with ``D`` the row sums of
  ``K_m``. The graphs are combined as ``S = a S_v + (1 - a) S_t`` (``a = mm_image_weight``).
  Built in row blocks: no dense items x items matrix.
- User-item graph ``A = [[0, R], [R^T, 0]]`` over the training matrix ``R``. Degree-sensitive
  edge pruning: before each training epoch, ``round_down((1 - dropout) |E|)`` interactions are
  drawn without replacement with probability proportional to ``1 / sqrt(d_u d_i)``
  (training degrees), so edges between high-degree nodes are pruned first; the kept graph is
  normalised with its own degrees, ``D^-1/2 A' D^-1/2``. Evaluation uses the whole graph.

Representations, with ID embeddings ``E_u`` (users) and ``E_i`` (items), both
``embedding_size`` wide:

    h_i      = (S^{n_mm_layers} E_i)_i                        (item-item graph)
    (E_i = 0 for an item without training interactions, a cold-start item: it is scored
    from its kNN neighbours' embeddings, not from an id vector training never fitted)
    [u; g_i] = LightGCN(A', [E_u; E_i], n_ui_layers)          (layer mean, layer 0 included)
    item_i   = g_i + h_i,   user_u = u,   s(u, i) = <user_u, item_i>

Projected modality representations ``p_i^m = W_m x_i^m + b_m`` (``feat_embed_dim`` wide,
which must equal ``embedding_size``). Loss for a batch of ``(u, i, j)``:

    BPR(<user_u, item_i>, <user_u, item_j>)
      + reg_weight * sum_m BPR(<user_u, p_i^m>, <user_u, p_j^m>)

(``reg_weight`` is the paper's lambda; MMRec's FREEDOM key name.) The projected modality
representations only enter the loss; scoring uses the fused ``item_i``.

Per-modality representation (:meth:`FREEDOM.branches`; what a plug-in objective such as
BR-MRS's sees, ``FREEDOM_BR`` in ``src/models/freedom_br.py``): the user's fused ``user_u``
paired with the projected item features ``p_i^m``, so the modality-m score is
``s_m(u, i) = <user_u, p_i^m>`` (the score FREEDOM's own modality BPR trains); the fused
score is ``s(u, i)``.

Args (config keys):
    embedding_size (int, 64), feat_embed_dim (int, = embedding_size): widths (must be equal).
    knn_k (int, 10): neighbours per item in each modality's kNN graph.
    mm_image_weight (float in [0, 1], 0.1): weight of the visual graph in ``S``.
    n_mm_layers (int, 1): propagation layers on the item-item graph.
    n_ui_layers (int, 2): LightGCN layers on the user-item graph.
    dropout (float in [0, 1), 0.8): the share of interactions pruned each epoch.
    reg_weight (float, 0.0): lambda, the weight of the modality BPR losses.
"""
from __future__ import annotations

import dataclasses
import warnings

from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.models.bpr import bpr_loss
from mmrec_plugin.eval_cache import EvalCache
from mmrec_plugin.sparse import binarize, lightgcn, sparse_mm, to_torch_csr
from mmrec_plugin.neighbours import (degree_weights, empty_columns, prune_edges, topk_per_row, unit_rows,
                                     zero_rows)
from mmrec_plugin.schema import Schema, key

__all__ = ["FREEDOM", "knn_item_graph", "normalized_edge_graph"]


def knn_item_graph(feats: np.ndarray, k: int, block_size: int = 1024) -> sp.csr_matrix:
    """FREEDOM's modality graph ``D^-1/2 K D^-1/2`` (``K``: each row's ``k`` most
    cosine-similar rows, the row itself included, weight 1; ``D``: row sums of ``K``).

    Args:
        feats: ``[n, d]`` raw features.
        k: neighbours per row (capped at ``n``).
        block_size: rows of the similarity computed at once.

    Returns:
        ``(n, n)`` float32 CSR (not symmetric in general).
    """
    x = unit_rows(feats)
    n = x.shape[0]
    kk = min(int(k), n)
    row, col, _ = topk_per_row(n, kk, lambda start, stop: x[start:stop] @ x.T, block_size)
    # every row holds kk ones: D = kk I, so D^-1/2 K D^-1/2 = K / kk
    return sp.csr_matrix((np.full(row.size, 1.0 / kk, dtype=np.float32), (row, col)), shape=(n, n))


def normalized_edge_graph(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph of the interactions ``(users[k], items[k])``
    (each once), degrees from these edges only; a torch sparse CSR ``[N, N]``,
    ``N = n_users + n_items``, on the device of ``users``."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    deg = torch.bincount(rows, minlength=n).to(torch.float32)
    inv = deg.pow(-0.5)
    inv[deg == 0] = 0.0
    vals = inv[rows] * inv[cols]
    with warnings.catch_warnings():  # "sparse CSR support is in beta": nothing to act on
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False)
        return coo.coalesce().to_sparse_csr()


@dataclasses.dataclass(frozen=True)
class FREEDOMConfig(Schema):
    """FREEDOM's keys (MMRec's names; the defaults of the module docstring)."""

    OWNER = "FREEDOM"
    embedding_size: int = key(int, 64, "width of the user and item ID embeddings", ge=1)
    feat_embed_dim: Optional[int] = key(int, None, "width of the projected modality features "
                                        "(must equal embedding_size; None: embedding_size)", ge=1, nullable=True)
    knn_k: int = key(int, 10, "neighbours per item in each modality's kNN graph (the item itself included)", ge=1)
    mm_image_weight: float = key(float, 0.1, "weight of the visual kNN graph; text gets 1 - this", ge=0.0, le=1.0)
    n_mm_layers: int = key(int, 1, "propagation layers on the frozen item-item graph", ge=0)
    n_ui_layers: int = key(int, 2, "LightGCN layers on the (pruned) user-item graph", ge=0)
    dropout: float = key(float, 0.8, "share of interactions pruned before each epoch", ge=0.0, lt=1.0)
    reg_weight: float = key(float, 0.0, "lambda: weight of the BPR losses on the projected modality features",
                            ge=0.0)

    def check(self) -> None:
        if self.feat_embed_dim is not None and self.feat_embed_dim != self.embedding_size:
            raise ConfigError(f"{self.OWNER}: config key 'feat_embed_dim' ({self.feat_embed_dim}) must equal "
                              f"'embedding_size' ({self.embedding_size}): modality scores are <user, W x>")


class FREEDOM(EvalCache, GeneralRecommender):
    """FREEDOM; see the module docstring."""

    config_schema = FREEDOMConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        name = "FREEDOM"
        cfg = FREEDOMConfig.from_config(config)
        self.embedding_size, self.knn_k, self.image_weight = cfg.embedding_size, cfg.knn_k, cfg.mm_image_weight
        self.n_mm_layers, self.n_ui_layers = cfg.n_mm_layers, cfg.n_ui_layers
        self.dropout, self.reg_weight = cfg.dropout, cfg.reg_weight
        if self.v_feat is None and self.t_feat is None:
            raise ConfigError(f"{name} needs item features: set is_multimodal_model: True and "
                              "provide image_feat.npy and/or text_feat.npy")

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_id_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        # modality order: visual, text (each present one)
        self.modalities: List[str] = []
        self.projections = nn.ModuleDict()
        graphs = []
        for m, feat, w in (("visual", self.v_feat, self.image_weight), ("text", self.t_feat, 1.0 - self.image_weight)):
            if feat is None:
                continue
            self.modalities.append(m)
            self.projections[m] = nn.Linear(feat.shape[1], self.embedding_size)
            graphs.append((w, knn_item_graph(feat.detach().cpu().numpy(), self.knn_k)))
        if len(graphs) == 1:
            mm_adj = graphs[0][1]
        else:
            mm_adj = graphs[0][0] * graphs[0][1] + graphs[1][0] * graphs[1][1]
        self.register_buffer("mm_adj", to_torch_csr(mm_adj), persistent=False)

        train = binarize(dataloader.inter_matrix(form="coo"))
        # items without a training interaction (cold-start items) enter from their kNN
        # neighbours' embeddings, not from an id vector training never fitted
        self.register_buffer("untrained_items", torch.from_numpy(empty_columns(train)), persistent=False)
        rows, cols, weights = degree_weights(train, np.float32)
        users = torch.from_numpy(rows.astype(np.int64))
        items = torch.from_numpy(cols.astype(np.int64))
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("edge_weights", torch.from_numpy(weights.astype(np.float32)), persistent=False)
        self.register_buffer("norm_adj", normalized_edge_graph(users, items, self.n_users, self.n_items),
                             persistent=False)
        self.to(self.device)
        self.masked_adj = self.norm_adj  # (a plain attribute: .to() does not move it)

    # --- graphs -----------------------------------------------------------------------
    def pre_epoch_processing(self):
        """Draw this epoch's pruned user-item graph."""
        self.drop_eval_cache()
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return None
        keep = prune_edges(self.edge_weights, self.dropout)
        self.masked_adj = normalized_edge_graph(self.edge_users[keep], self.edge_items[keep],
                                                self.n_users, self.n_items)
        return None

    # --- representations --------------------------------------------------------------
    def forward(self, adj: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user [n_users, d], item [n_items, d])`` over ``adj`` (default: the whole graph)."""
        adj = self.norm_adj if adj is None else adj
        items = zero_rows(self.item_id_embedding.weight, self.untrained_items)
        h = items
        for _ in range(self.n_mm_layers):
            h = sparse_mm(self.mm_adj, h)
        ego = torch.cat([self.user_embedding.weight, items], dim=0)
        out = lightgcn(adj, ego, self.n_ui_layers, symmetric=True)
        user, item = torch.split(out, [self.n_users, self.n_items], dim=0)
        return user, item + h

    def modality_items(self) -> Dict[str, torch.Tensor]:
        """``{m: p^m [n_items, d]}``, the projected features ``W_m x^m + b_m`` (``m``: text, visual)."""
        feats = {"text": self.t_feat, "visual": self.v_feat}
        return {m: self.projections[m](feats[m]) for m in self.modalities}

    def branches(self, users: torch.Tensor, adj: Optional[torch.Tensor] = None):
        """Per-modality and fused representations of a batch over ``adj`` (default: this
        epoch's pruned graph): ``({m: (user [B, d], p^m [n_items, d])}, (user [B, d], item
        [n_items, d]))``; scores are inner products."""
        user_all, item_all = self.forward(self.masked_adj if adj is None else adj)
        u = user_all[users]
        return {m: (u, p) for m, p in self.modality_items().items()}, (u, item_all)

    def regularizer(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):
        """None: FREEDOM has no penalty besides its modality BPR (``reg_weight``)."""
        return None

    # --- training ---------------------------------------------------------------------
    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        """``interaction``: ``LongTensor[3, B]`` (users, positives, negatives)."""
        self.drop_eval_cache()
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        branches, (u, item_all) = self.branches(users)
        loss = bpr_loss((u * item_all[pos]).sum(-1), (u * item_all[neg]).sum(-1))
        if self.reg_weight:
            for _, p in branches.values():
                loss = loss + self.reg_weight * bpr_loss((u * p[pos]).sum(-1), (u * p[neg]).sum(-1))
        return loss
