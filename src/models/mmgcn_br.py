"""MMGCN_BR: the host's MMGCN trained with the BR-MRS objective instead of its BPR loss (its
L2 regulariser stays; see :mod:`mmrec_plugin.method.plugin`; per-modality representation: each modality's own
GCN, last layer; fused: the summed representations). Config: ``configs/model/MMGCN_BR.yaml``."""
from mmrec_plugin.host.models.mmgcn import MMGCN
from mmrec_plugin.method.config import ObjectiveConfig
from mmrec_plugin.method.plugin import BRObjectiveLoss


class MMGCN_BR(BRObjectiveLoss, MMGCN):
    #: the objective\'s keys and defaults (the parent model\'s keys: its yaml)
    config_schema = ObjectiveConfig

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self._init_objective(config, dataloader)
