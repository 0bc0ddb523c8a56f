"""BRMRS's configuration as one typed, validated object (docs/METHOD.md, "Config keys").

:class:`BRMRSConfig` is a frozen dataclass with one field per key of ``BRMRS.yaml``; its
defaults ARE the yaml's values (read once, when this module is imported; a grid key's
default is the first value of its list). Adding a key takes one line here and one in the
yaml::

    new_key: float = key(float, ge=0.0)          # here
    new_key: 0.5      # (float) what it does      # BRMRS.yaml

Values are checked once, when the object is built (:meth:`BRMRSConfig.from_config` from an
MMRec or host config, or ``BRMRSConfig(**values)``); a bad value raises
:class:`~mmrec_plugin.errors.ConfigError` naming the key, the value and what is accepted.
The rest of the method library takes plain Python values and raises ``ValueError``.

``modality_weights`` is a mapping from modality name to its cosine weight ``beta_m`` in the
kNN graphs (``{text: 0.9, visual: 0.1}``), or ``auto`` (chosen by :mod:`.probe`). The list form of release 0.1, ``[beta_v, beta_t]``
(visual FIRST), is still read and converted to ``{visual: beta_v, text: beta_t}`` with a
warning; any other list is an error.
"""
import dataclasses
import importlib.util
import logging
import os
from typing import Any, Dict, Mapping, Optional

import yaml

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.utils import cfg_get, check_value, scalar_value

from .fusion import FUSIONS
from .pools import HARDNESS, NEG_STRATEGIES

__all__ = ["BRMRSConfig", "yaml_path", "yaml_defaults"]

logger = logging.getLogger(__name__)


def yaml_path() -> str:
    """``BRMRS.yaml`` as installed (``mmrec_plugin.mmrec_src``), else the checkout's ``src/``."""
    candidates = []
    spec = importlib.util.find_spec("mmrec_plugin.mmrec_src")
    if spec is not None:
        candidates += [os.path.join(d, "configs", "model", "BRMRS.yaml")
                       for d in (spec.submodule_search_locations or [])]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates.append(os.path.join(root, "src", "configs", "model", "BRMRS.yaml"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise RuntimeError(f"BRMRS.yaml not found (looked in {candidates}); reinstall the package")


def yaml_defaults(path: Optional[str] = None) -> Dict[str, Any]:
    """Every key of ``BRMRS.yaml`` with its default (a grid list's first value)."""
    with open(path or yaml_path(), encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    grid = set(data.pop("hyper_parameters", None) or [])
    return {k: (v[0] if k in grid and isinstance(v, list) else v) for k, v in data.items()}


_DEFAULTS = yaml_defaults()


def key(kind: type, **checks) -> Any:
    """A config field of type ``kind`` with the checks of :func:`~mmrec_plugin.utils.check_value`
    (``ge``, ``gt``, ``le``, ``lt``, ``choices``); its default is filled from ``BRMRS.yaml``."""
    return dataclasses.field(metadata={"kind": kind, "checks": checks})


def _from_yaml(cls):
    """Fill every field's default from ``BRMRS.yaml``, then make ``cls`` a frozen dataclass."""
    missing = [n for n in cls.__annotations__ if n not in _DEFAULTS]
    extra = [n for n in _DEFAULTS if n not in cls.__annotations__]
    if missing or extra:
        raise RuntimeError(f"BRMRS.yaml and BRMRSConfig differ: no default for {missing}, no field for {extra}")
    for name in cls.__annotations__:
        f = getattr(cls, name)
        value = _DEFAULTS[name]
        if isinstance(value, dict):
            f.default_factory = lambda value=value: dict(value)
        else:
            f.default = value
    return dataclasses.dataclass(frozen=True)(cls)


def _modality_weights(value):
    if value == "auto":  # chosen by the inner-validation probe (method.probe)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # what one combination gets when the old list form [beta_v, beta_t] is given on the
        # command line: with the string default `auto` the host reads a list as a grid
        raise ConfigError(
            f"config key 'modality_weights' must be a mapping modality -> weight or auto, got a "
            f"single number {value!r} (on the command line a list is a grid: write the mapping, "
            f"e.g. --modality_weights '{{text: 0.8, visual: 0.2}}' for the old [0.2, 0.8])")
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(
                f"config key 'modality_weights' must be a mapping modality -> weight, e.g. "
                f"{{text: 0.9, visual: 0.1}}, got the list {list(value)!r}")
        logger.warning("modality_weights: the list form [beta_v, beta_t] is deprecated; read as "
                       "{visual: %s, text: %s}", value[0], value[1])
        value = {"visual": value[0], "text": value[1]}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"config key 'modality_weights' must be a mapping modality -> weight, e.g. "
                          f"{{text: 0.9, visual: 0.1}}, or auto, got {value!r}")
    return {str(m): check_value(f"modality_weights.{m}", w, float, ge=0.0) for m, w in value.items()}


@_from_yaml
class BRMRSConfig:
    """Every BRMRS key (meaning and default: ``BRMRS.yaml``; equations: docs/METHOD.md)."""

    # -- backbone --
    embedding_size: int = key(int, ge=1)
    feat_dropout: float = key(float, ge=0.0, lt=1.0)
    proj_bf16: bool = key(bool)
    item_id_in_channels: bool = key(bool)
    n_ui_layers: int = key(int, ge=0)
    n_ii_layers: int = key(int, ge=0)
    n_uu_layers: int = key(int, ge=0)
    edge_dropout: float = key(float, ge=0.0, lt=1.0)
    ii_knn_k: int = key(int, ge=1)
    ii_co_weight: float = key(float, ge=0.0, le=1.0)
    uu_knn_k: int = key(int, ge=1)
    uu_co_weight: float = key(float, ge=0.0, le=1.0)
    modality_weights: dict = key(dict)
    fusion: str = key(str, choices=FUSIONS)
    graph_cache: bool = key(bool)
    knn_block_size: int = key(int, ge=1)
    # -- objective (BRObjective reads these: OBJECTIVE_KEYS) --
    pool_size: int = key(int, ge=1)
    neg_strategy: str = key(str, choices=NEG_STRATEGIES)
    chns_hardness: str = key(str, choices=HARDNESS)
    chns_temperature: float = key(float, gt=0.0)
    chns_topk: int = key(int, ge=1)
    chns_warmup: int = key(int, ge=0)
    chns_decay: float = key(float, gt=0.0, le=1.0)
    chns_guard: bool = key(bool)
    branch_bpr_weight: float = key(float, ge=0.0)
    chns_weight: float = key(float, ge=0.0)
    syn_weight: float = key(float, ge=0.0)
    syn_margin: float = key(float, gt=0.0)
    syn_detach: bool = key(bool)
    bpr_weight: float = key(float, ge=0.0)
    pool_softmax_weight: float = key(float, ge=0.0)
    pool_softmax_temperature: float = key(float, gt=0.0)
    # -- model-side terms --
    reg_weight: float = key(float, ge=0.0)
    nce_weight: float = key(float, ge=0.0)
    nce_temperature: float = key(float, gt=0.0)
    orth_weight: float = key(float, ge=0.0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.metadata["kind"]
            if kind is dict:
                value = _modality_weights(value)
            else:
                value = check_value(f.name, value, kind, **f.metadata["checks"])
            object.__setattr__(self, f.name, value)
        if self.chns_weight + self.syn_weight + self.bpr_weight + self.pool_softmax_weight == 0:
            raise ConfigError("chns_weight, syn_weight, bpr_weight, pool_softmax_weight: all are 0, so "
                              "nothing trains the ranking; set at least one > 0")

    @classmethod
    def from_config(cls, config, keys=None) -> "BRMRSConfig":
        """Read every key (or only ``keys``; the others keep their defaults) from an MMRec /
        host config or a dict; an absent key (or MMRec's None) takes the yaml default, a
        one-element list (a grid key outside a grid run) is unwrapped, a longer list is an
        error naming the key."""
        values = {}
        for f in dataclasses.fields(cls):
            if keys is not None and f.name not in keys:
                continue
            if f.metadata["kind"] is dict:
                value = cfg_get(config, f.name, None)
            else:
                value = scalar_value(config, f.name, None)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def replace(self, **changes) -> "BRMRSConfig":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
