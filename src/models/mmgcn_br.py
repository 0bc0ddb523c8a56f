"""MMGCN_BR: the host's MMGCN trained with the BR-MRS objective instead of its BPR loss (its
L2 regulariser stays; see ``br_plugin.py``; per-modality representation: each modality's own
GCN, last layer; fused: the summed representations). Config: ``configs/model/MMGCN_BR.yaml``."""
from mmrec_plugin.host.models.mmgcn import MMGCN

from .br_plugin import BRObjectiveLoss


class MMGCN_BR(BRObjectiveLoss, MMGCN):
    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self._init_objective(config, dataloader)
