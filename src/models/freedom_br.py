"""FREEDOM_BR: the host's FREEDOM trained with the BR-MRS objective instead of its own loss
(see :mod:`mmrec_plugin.method.plugin`; per-modality representation: ``<FREEDOM user, W_m x_i^m + b_m>``,
fused: FREEDOM's score). Config: ``configs/model/FREEDOM_BR.yaml``."""
from mmrec_plugin.host.models.freedom import FREEDOM
from mmrec_plugin.method.config import ObjectiveConfig
from mmrec_plugin.method.plugin import BRObjectiveLoss


class FREEDOM_BR(BRObjectiveLoss, FREEDOM):
    #: the objective\'s keys and defaults (the parent model\'s keys: its yaml)
    config_schema = ObjectiveConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self._init_objective(config, dataloader)
