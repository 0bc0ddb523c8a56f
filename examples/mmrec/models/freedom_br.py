"""FREEDOM_BR: MMRec's own FREEDOM trained with the BR-MRS objective (an optional example).

Not installed with the package. Copy it into an MMRec checkout (github.com/enoche/MMRec) that
can import ``mmrec_plugin`` (``pip install`` this repository into MMRec's environment, see
the README), then run MMRec as usual::

    cp examples/mmrec/models/freedom_br.py           MMRec/src/models/
    cp examples/mmrec/configs/model/FREEDOM_BR.yaml  MMRec/src/configs/model/
    cd MMRec/src && python main.py -m FREEDOM_BR -d baby

Only ``calculate_loss`` changes (and ``pre_epoch_processing`` also lets the objective count
epochs, for ``chns_warmup`` / ``chns_decay``): MMRec's FREEDOM builds its graphs, prunes edges
each epoch, propagates and ranks exactly as before. The loss is the BR-MRS objective
(:class:`mmrec_plugin.method.objective.BRObjective`: CHNS + synergy-aware BPR + fused BPR)
instead of FREEDOM's own (fused BPR + reg_weight x modality BPR). Per-modality
representation: the user's FREEDOM representation paired with the projected item features
``text_trs(t_feat)`` / ``image_trs(v_feat)`` (the modality scores FREEDOM's own modality BPR
trains); the fused score is FREEDOM's ``<user, item>``. The objective's keys and defaults are
BRMRS's (:class:`mmrec_plugin.method.config.ObjectiveConfig`; ``FREEDOM_BR.yaml`` may set any). ``calculate_loss`` returns the sum of the terms, a scalar
(MMRec's trainer drops its "epoch N training" log line for a tuple); the named terms stay in
``self.last_loss_terms``.
"""
from models.freedom import FREEDOM  # MMRec's model, imported from the checkout at run time

from mmrec_plugin.method.objective import BRObjective


class FREEDOM_BR(FREEDOM):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        # reads only the objective's keys from MMRec's config (BRMRS's defaults where absent)
        self.br = BRObjective(dataset.inter_matrix(form="coo"), config).to(self.device)

    def pre_epoch_processing(self):
        out = super().pre_epoch_processing()  # FREEDOM's edge pruning
        self.br.start_epoch()
        return out

    def calculate_loss(self, interaction):
        users, pos, neg = interaction[0], interaction[1], interaction[2]
        user_all, item_all = self.forward(self.masked_adj)
        u = user_all[users]
        branches = {"text": (u, self.text_trs(self.t_feat)), "visual": (u, self.image_trs(self.v_feat))}
        terms = self.br(users, pos, neg, branches, fused=(u, item_all))
        self.last_loss_terms = {k: v.detach() for k, v in terms.items()}
        return sum(terms.values())
