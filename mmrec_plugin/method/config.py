"""BR-MRS's configuration: every key once, with its type, allowed values, default and meaning
(docs/METHOD.md, "Config keys"; how the defaults were chosen: "How the defaults were chosen").

- :class:`ObjectiveConfig`: the keys of the BR-MRS objective (candidate pools, CHNS, the
  synergy-aware BPR, fused BPR). :class:`~mmrec_plugin.method.objective.BRObjective` reads
  them; BRMRS and every model trained with the objective (``FREEDOM_BR``, ``MMGCN_BR``, your
  own) share these defaults.
- :class:`BRMRSConfig`: the backbone's keys and the model-side terms, with the objective's
  keys as the nested group ``objective``.

Both are frozen :class:`~mmrec_plugin.schema.Schema` dataclasses: values are checked once,
when the object is built (``BRMRSConfig.from_config(config)`` from an MMRec / host config
or a dict; ``BRMRSConfig(**values)``); a bad value raises
:class:`~mmrec_plugin.errors.ConfigError` naming the key, the value and what is accepted.
The rest of the method library takes plain Python values and raises ``ValueError``. A model
yaml lists only what differs from these defaults (and the grid).

``modality_weights`` is a mapping from modality name to its cosine weight ``beta_m`` in the
kNN graphs (``{text: 0.9, visual: 0.1}``), or ``auto`` (chosen by :mod:`.probe`). The list
form of release 0.1, ``[beta_v, beta_t]`` (visual FIRST), is still read and converted to
``{visual: beta_v, text: beta_t}`` with a warning; any other list is an error.
"""
import dataclasses
import logging
from typing import Any, Mapping

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.schema import Schema, key, nested
from mmrec_plugin.utils import check_value

from .fusion import FUSIONS
from .pools import HARDNESS, NEG_STRATEGIES

__all__ = ["ObjectiveConfig", "BRMRSConfig", "OBJECTIVE_KEYS"]

logger = logging.getLogger(__name__)


def _modality_weights(name: str, value: Any):
    if value == "auto":  # chosen by the inner-validation probe (method.probe)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # what one combination gets when the old list form [beta_v, beta_t] is given on the
        # command line: with the string default `auto` the host reads a list as a grid
        raise ConfigError(
            f"config key '{name}' must be a mapping modality -> weight or auto, got a single "
            f"number {value!r} (on the command line a list is a grid: write the mapping, e.g. "
            f"--modality_weights '{{text: 0.8, visual: 0.2}}' for the old [0.2, 0.8])")
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"config key '{name}' must be a mapping modality -> weight, e.g. "
                              f"{{text: 0.9, visual: 0.1}}, got the list {list(value)!r}")
        logger.warning("modality_weights: the list form [beta_v, beta_t] is deprecated; read as "
                       "{visual: %s, text: %s}", value[0], value[1])
        value = {"visual": value[0], "text": value[1]}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"config key '{name}' must be a mapping modality -> weight, e.g. "
                          f"{{text: 0.9, visual: 0.1}}, or auto, got {value!r}")
    return {str(m): check_value(f"{name}.{m}", w, float, ge=0.0) for m, w in value.items()}


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig(Schema):
    """The BR-MRS objective's keys (equations: docs/METHOD.md, "Losses")."""

    OWNER = "BRObjective"

    pool_size: int = key(int, 32, "candidate pool size |N(u)| per training pair (items outside the "
                         "user's training items), drawn with replacement; above n_items it is "
                         "clamped to n_items (warning)", ge=1)
    neg_strategy: str = key(str, "cross", "CHNS negatives: cross (paper; M modalities: hardest "
                            "under the other branches) | same | fused | uniform", choices=NEG_STRATEGIES)
    chns_hardness: str = key(str, "topk", "how a branch's negative is read off the pool scores: "
                             "argmax (paper) | softmax (p ~ exp(s / chns_temperature)) | topk "
                             "(uniform among the chns_topk best)", choices=HARDNESS)
    chns_temperature: float = key(float, 1.0, "temperature of chns_hardness softmax", gt=0.0)
    chns_topk: int = key(int, 4, "top-k of chns_hardness topk", ge=1)
    chns_warmup: int = key(int, 0, "epochs trained without L_chns before CHNS starts (0 = from "
                           "the start)", ge=0)
    chns_decay: float = key(float, 1.0, "L_chns weight multiplied by this every epoch after the "
                            "warm-up (1 = constant)", gt=0.0, le=1.0)
    chns_guard: bool = key(bool, False, "false-negative guard: a pool item a branch scores above "
                           "the positive is not its negative")
    branch_bpr_weight: float = key(float, 0.0, "BPR of each unimodal branch on the framework's "
                                   "uniform negative", ge=0.0)
    chns_weight: float = key(float, 1.0, "weight of L_chns (0 = without CHNS)", ge=0.0)
    syn_weight: float = key(float, 1.0, "weight of L_syn (0 = without the synergy loss)", ge=0.0)
    syn_margin: float = key(float, 0.1, "theta, the margin by which Delta_f must exceed "
                            "max_m Delta_m", gt=0.0)
    syn_detach: bool = key(bool, False, "stop the gradient through max_m Delta_m in L_syn")
    bpr_weight: float = key(float, 1.0, "weight of a plain BPR loss on the fused scores "
                            "(the paper's objective: 0)", ge=0.0)
    pool_softmax_weight: float = key(float, 0.0, "weight of a sampled softmax of the fused score "
                                     "of the positive against the candidate pool (0 = off)", ge=0.0)
    pool_softmax_temperature: float = key(float, 1.0, "its temperature", gt=0.0)

    def check(self) -> None:
        if self.chns_weight + self.syn_weight + self.bpr_weight + self.pool_softmax_weight == 0:
            raise ConfigError("chns_weight, syn_weight, bpr_weight, pool_softmax_weight: all are 0, "
                              "so nothing trains the ranking; set at least one > 0")


#: the config keys of the objective (same names and defaults in every model that uses it)
OBJECTIVE_KEYS = tuple(ObjectiveConfig.specs())


@dataclasses.dataclass(frozen=True)
class BRMRSConfig(Schema):
    """Every BRMRS key (equations: docs/METHOD.md); the objective's as ``objective``."""

    OWNER = "BRMRS"

    # -- backbone --
    embedding_size: int = key(int, 64, "representation size d of every branch", ge=1)
    feat_dropout: float = key(float, 0.0, "dropout on the raw modality features before W_m",
                              ge=0.0, lt=1.0)
    proj_bf16: bool = key(bool, False, "W_m x_i in bfloat16 (autocast; float32 weights and results): "
                          "3x cheaper projections of wide features on CPUs with AMX / AVX512-BF16 and on GPUs")
    item_id_in_channels: bool = key(bool, True, "add a learnable item id embedding to each "
                                    "channel's item input")
    n_ui_layers: int = key(int, 3, "LightGCN layers over the user-item graph G_ui (mean over layers)", ge=0)
    n_ii_layers: int = key(int, 1, "smoothing layers L over G_ii: q <- q + G_ii^L q (0 = none)", ge=0)
    n_uu_layers: int = key(int, 1, "smoothing layers L over G_uu: p <- p + G_uu^L p (0 = none)", ge=0)
    edge_dropout: float = key(float, 0.5, "share of training interactions pruned from G_ui before "
                              "each epoch, degree-sensitive (FREEDOM's rule); evaluation uses the "
                              "full graph", ge=0.0, lt=1.0)
    ii_knn_k: int = key(int, 10, "neighbours kept per item in G_ii", ge=1)
    ii_co_weight: float = key(float, 0.2, "alpha of G_ii: weight of co-interaction overlap vs "
                              "modality cosine", ge=0.0, le=1.0)
    uu_knn_k: int = key(int, 40, "neighbours kept per user in G_uu", ge=1)
    uu_co_weight: float = key(float, 0.4, "alpha of G_uu", ge=0.0, le=1.0)
    modality_weights: Any = key(object, "auto", "auto: ii_co_weight and the cosine weights beta_m "
                                "of both kNN graphs chosen by an inner-validation probe; or a "
                                "mapping naming every modality of the data, e.g. "
                                "{text: 0.9, visual: 0.1}", check=_modality_weights)
    fusion: str = key(str, "concat", "phi: mean | gate | mlp | concat (concat: [a; b], "
                      "s_f = s_t + s_v)", choices=FUSIONS)
    graph_cache: bool = key(bool, True, "cache G_ii / G_uu in <data_path>/<dataset>/.cache/ "
                            "(keyed by all inputs)")
    knn_block_size: int = key(int, 2048, "rows per block when building the kNN graphs (memory: "
                              "block x n floats)", ge=1)
    # -- model-side terms --
    reg_weight: float = key(float, 1e-4, "L2 on the batch's layer-0 embeddings / batch size "
                            "(MMRec convention)", ge=0.0)
    nce_weight: float = key(float, 0.0, "InfoNCE alignment of q_t and q_v on the batch items "
                            "(study switch)", ge=0.0)
    nce_temperature: float = key(float, 0.2, "InfoNCE temperature", gt=0.0)
    orth_weight: float = key(float, 0.0, "orthogonality ||H_t^T H_v||_F^2 / B on batch items "
                             "(study switch)", ge=0.0)
    # -- the objective --
    objective: ObjectiveConfig = nested(ObjectiveConfig)
