"""BR-MRS (Synergy-Aware Multimodal Recommendation with Cross-Modal Hard Negatives) in
MMRec's model layout: a thin adapter around :class:`mmrec_plugin.method.model.BRMRSNet`.

It runs unchanged inside an MMRec checkout (base class ``common.abstract_recommender``;
modalities ``text`` = ``t_feat`` and ``visual`` = ``v_feat``) and in the plugin's host
(``mmrec_plugin.host``; a dataset may declare more modalities with ``feature_files``, which
the host loads into ``self.features``). The method, its equations and every config key:
docs/METHOD.md and :class:`mmrec_plugin.method.config.BRMRSConfig` (every key's type,
default and meaning; ``configs/model/BRMRS.yaml`` lists the grid).
"""
import os

import torch

try:  # inside an MMRec checkout
    from common.abstract_recommender import GeneralRecommender
except ImportError:  # the plugin's embedded host
    from mmrec_plugin.host.abstract_recommender import GeneralRecommender

from mmrec_plugin.errors import ConfigError, DataError
from mmrec_plugin.method.cache import cache_dir
from mmrec_plugin.method.config import BRMRSConfig
from mmrec_plugin.method.model import BRMRSNet, upgrade_v01_state_dict


class BRMRS(GeneralRecommender):
    """MMRec's ``GeneralRecommender`` contract, delegated to :class:`BRMRSNet`."""

    #: every key the model reads, with its type, default and meaning (the host checks them)
    config_schema = BRMRSConfig

    def __init__(self, config, dataloader):
        cfg = BRMRSConfig.from_config(config)  # fail before loading anything
        super(BRMRS, self).__init__(config, dataloader)
        folder = os.path.join(str(config["data_path"] or ""), str(config["dataset"] or ""))
        features = getattr(self, "features", None) or {"text": self.t_feat, "visual": self.v_feat}
        missing = [m for m, f in features.items() if f is None]
        if missing or len(features) < 2:
            raise ConfigError(
                f"BRMRS needs at least two modality features; {missing or sorted(features)} not loaded from "
                f"{folder} (text_feature_file / vision_feature_file / feature_files: missing file, "
                f"or is_multimodal_model false / end2end true)")
        if cfg.modality_weights != "auto" and sorted(cfg.modality_weights) != sorted(features):
            raise ConfigError(f"modality_weights: names {sorted(cfg.modality_weights)}, but the data has the "
                              f"modalities {sorted(features)}; give one weight per modality")
        inter = dataloader.inter_matrix(form="coo")
        if inter.shape != (self.n_users, self.n_items):
            raise DataError(f"training matrix has shape {inter.shape}, expected (n_users, n_items) = "
                            f"({self.n_users}, {self.n_items})")
        path = cache_dir(config["data_path"] or ".", config["dataset"] or "dataset") \
            if cfg.graph_cache else None
        try:
            self.net = BRMRSNet(cfg, inter, features, cache_path=path, device=self.device)
        except ValueError as exc:  # a features array of the wrong shape or with NaN
            raise DataError(f"{folder}: {exc}") from None
        self.cfg = cfg
        self.score_dim = self.net.score_dim  # read by `mmrec-plugin bench`
        self._register_load_state_dict_pre_hook(self._upgrade_state_dict)

    @staticmethod
    def _upgrade_state_dict(state, prefix, *_args):
        """Checkpoints of release 0.1 (``user_emb_t.weight``, ...) load into ``net.channels``."""
        if any(k.startswith(prefix + "user_emb_") for k in state):
            upgrade_v01_state_dict(state, prefix, prefix + "net.")

    def pre_epoch_processing(self):
        self.net.start_epoch()  # (CHNS warm-up / decay count epochs; edge_dropout draws G_ui)

    def calculate_loss(self, interaction):
        """The loss (a scalar: MMRec's trainer logs a tuple without its epoch line); the named
        weighted terms stay in ``self.last_loss_terms`` (the host's trainer logs them)."""
        terms = self.net.loss_terms(interaction[0], interaction[1], interaction[2])
        self.last_loss_terms = {k: v.detach() for k, v in terms.items()}
        return sum(terms.values())

    def full_sort_predict(self, interaction):
        return self.net.full_sort_predict(interaction[0])

    def branch_scores(self, users):
        return self.net.branch_scores(users)

    def embeddings(self):
        """Branch -> ``(users [n_users, d], items [n_items, d])`` whose products are the branch's
        scores: each modality by name and ``fused`` (what ranks)."""
        reps = dict(self.net.representations())
        reps["fused"] = reps.pop("f")
        return reps
