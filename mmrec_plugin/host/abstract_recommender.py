"""Base classes of host models, with MMRec's contract.

A model is built as ``Model(config, train_data)`` where ``train_data`` is the training
loader (:class:`~mmrec_plugin.host.dataloader.TrainDataLoader`); it implements
``calculate_loss(interaction)`` (``interaction``: ``LongTensor[3, B]`` users, positives,
negatives; returns a scalar tensor or a tuple of them, which the trainer sums) and
``full_sort_predict(interaction)`` (``interaction[0]``: users ``LongTensor[B]``; returns a
fresh ``[B, n_items]`` score tensor that the trainer may modify in place).

:class:`GeneralRecommender` sets ``USER_ID``, ``ITEM_ID``, ``NEG_ITEM_ID``, ``n_users``,
``n_items``, ``batch_size``, ``device`` and, when ``is_multimodal_model`` is true and
``end2end`` is not, the item features ``v_feat`` / ``t_feat`` (``FloatTensor[n_items, d]`` on
``device``, or None when the file is absent), read from ``<data_path>/<dataset>/``, and
``features``: modality name -> that tensor for every modality the dataset declares
(``feature_files``; default ``{visual, text}``, MMRec's two). MMRec itself has only
``v_feat`` / ``t_feat``; a model that wants more modalities reads ``features`` when present.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn as nn

from mmrec_plugin.host.dataset import load_modalities

logger = logging.getLogger(__name__)


class AbstractRecommender(nn.Module):
    """The model interface the trainer uses."""

    def pre_epoch_processing(self):
        """Called before each training epoch (default: nothing)."""
        return None

    def post_epoch_processing(self):
        """Called after each training epoch; a returned string is logged (default: nothing)."""
        return None

    def calculate_loss(self, interaction: torch.Tensor):
        raise NotImplementedError

    def predict(self, interaction: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def full_sort_predict(self, interaction) -> torch.Tensor:
        raise NotImplementedError

    def __str__(self) -> str:
        params = sum(int(np.prod(p.size())) for p in self.parameters() if p.requires_grad)
        return super().__str__() + f"\nTrainable parameters: {params}"


class GeneralRecommender(AbstractRecommender):
    """A recommender over the users and items of a dataset (MMRec's GeneralRecommender).

    Args:
        config: the run configuration.
        dataloader: the training loader; ``dataloader.dataset`` gives the counts.
    """

    def __init__(self, config, dataloader):
        super().__init__()
        self.USER_ID = config["USER_ID_FIELD"]
        self.ITEM_ID = config["ITEM_ID_FIELD"]
        self.NEG_ITEM_ID = "neg_" + self.ITEM_ID
        dataset = dataloader.dataset
        self.n_users = int(dataset.get_user_num())
        self.n_items = int(dataset.get_item_num())
        self.batch_size = config["train_batch_size"]
        self.device = torch.device(config["device"])
        self.features = {}
        if config["is_multimodal_model"] and not config["end2end"]:
            self.features = {
                name: (None if arr is None else torch.from_numpy(arr).float().to(self.device))
                for name, arr in load_modalities(config, self.n_items).items()
            }
        self.v_feat = self.features.get("visual")
        self.t_feat = self.features.get("text")
