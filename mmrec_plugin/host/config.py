"""The configuration of a run, built once: layers with MMRec's semantics, checked by one schema.

Layers, later wins (MMRec's order, plus an explicit file):

1. the host's keys with their defaults (:data:`mmrec_plugin.host.schema.HOST_KEYS`: MMRec's
   overall defaults, ``data_path: data/``, ``results_dir: results/``) and MMRec's dataset
   keys (:data:`~mmrec_plugin.host.schema.DATASET_KEYS`);
2. the dataset yaml: the packaged ``host/configs/dataset/<d>.yaml`` if it exists, else
   ``<data_path>/<d>/<d>.yaml`` if that exists;
3. the model's keys with their defaults (its ``config_schema``, when it declares one), then
   the model yaml (:func:`mmrec_plugin.registry.model_config_path`);
4. ``config_file`` (``--config FILE``);
5. ``config_dict`` (the command line / the caller).

Every key that a schema describes (host, dataset or model keys) is checked once, when the
Config is built (each value of a grid key's list); a bad value raises
:class:`~mmrec_plugin.errors.ConfigError` naming the key, where it was set and what is
accepted. Derived values are computed once: ``config['device']`` (a ``torch.device``) and
:attr:`Config.valid_metric_key` (``'recall@20'``).

``hyper_parameters`` is concatenated across all layers (not replaced), de-duplicated, with
``seed`` always first. Two conveniences apply to the ``config_dict`` layer only (the command
line): a scalar given for a key that is in ``hyper_parameters`` is wrapped in a one-element
list (``--seed 7`` fixes the grid dimension), and a list given for a key whose lower-layer
value is not a list (or that no layer has) adds that key to ``hyper_parameters``
(``--reg_weight "[1e-4, 1e-3]"`` makes a grid). A list for a key whose default is a list
(``topk``, ``metrics``) or a mapping is a plain value.

YAML is read with a safe loader that also reads ``1e-4`` as a float (plain PyYAML reads it
as a string), as MMRec's loader does.

Access: ``config['key']`` (a missing key raises :class:`ConfigKeyError`, a ``KeyError`` and a
:class:`~mmrec_plugin.errors.ConfigError`, naming the closest known key), ``config.get(key,
default)``, ``key in config``, ``config['key'] = value``. Always set: ``model`` (the
registered spelling), ``dataset``, ``device``, ``data_path`` (ending in ``/``, so MMRec-style
``data_path + dataset`` works), ``results_dir``.

Example::

    config = Config("LightGCN", "baby", config_dict={"learning_rate": 1e-3})
    for params in expand_grid(config):   # [{'seed': 999, 'reg_weight': ...}, ...]
        combo = config.with_params(params)
"""
from __future__ import annotations

import copy
import inspect
import itertools
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from mmrec_plugin import limits, yamlio
from mmrec_plugin.errors import ConfigError, did_you_mean
from mmrec_plugin.schema import Key
from mmrec_plugin.utils import jsonable

from .schema import DATASET_KEYS, HOST_KEYS, host_defaults, parse_metric, validate

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIR = os.path.join(HERE, "configs")

__all__ = ["Config", "ConfigKeyError", "expand_grid", "load_yaml", "parse_value", "jsonable",
           "model_schema", "strict_key", "CONFIG_DIR"]


class ConfigKeyError(ConfigError, KeyError):
    """A key that the configuration does not have (``config['missing']``)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def parse_value(text: str, what: Optional[str] = None) -> Any:
    """A command-line value parsed as YAML (:func:`mmrec_plugin.yamlio.parse_value`: ``"[1, 2]"``
    -> list, ``"1e-4"`` -> float, with the alias/size limits); text that is not valid YAML is
    kept as the string itself."""
    return yamlio.parse_value(text, what)


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a yaml mapping (:func:`mmrec_plugin.yamlio.load_yaml`: a regular file of bounded
    size, aliases limited); errors name the file and line."""
    return yamlio.load_yaml(path, "config file")


def strict_key(key: str, known) -> str:
    """``key`` when ``known`` has it, else a ConfigError naming the closest known key (the
    ``check_keys`` of every caller that must not invent keys: studies, compare, the API)."""
    if key in known:
        return key
    raise ConfigError(f"unknown config key '{key}'{did_you_mean(str(key), known)}; known: the "
                      f"keys of the host, the dataset and the model (run --print-config lists them)")


def model_schema(model_cls: Optional[type]) -> Dict[str, Key]:
    """The keys a model class declares (``config_schema``, a Schema class), with those of its
    base classes (a ``_BR`` model: its parent model's keys and the objective's), or ``{}``."""
    out: Dict[str, Key] = {}
    for cls in reversed(inspect.getmro(model_cls)) if model_cls is not None else ():
        schema = cls.__dict__.get("config_schema")
        if schema is not None:
            out.update(schema.specs())
    return out


def _hyper_list(value: Any, source: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{source}: 'hyper_parameters' must be a list of key names, got {value!r}")
    return list(value)


def _order_hyper(keys: List[str]) -> List[str]:
    out = ["seed"]
    for k in keys:
        if k not in out:
            out.append(k)
    return out


class Config:
    """The effective configuration of one run (see the module docstring for the layers).

    Args:
        model: model name (case-insensitive; looked up in :mod:`mmrec_plugin.registry`).
        dataset: dataset name (the folder under ``data_path``).
        config_dict: highest-priority overrides (the command line).
        config_file: a yaml file applied between the model yaml and ``config_dict``.
        check_keys: ``check_keys(key, known) -> key or None``, applied to every key of
            ``config_dict`` before it is used (None drops the key; the command line passes one
            that accepts ``-`` for ``_`` and names the closest known key for an unknown one).

    Attributes:
        final_config_dict: the merged dict (MMRec's attribute name).
        sources: key -> the layer that set it (for messages).
        layered_keys: the keys known before ``config_dict`` was applied (what
            ``--KEY VALUE`` and ``--config`` may set).
        specs: key -> :class:`~mmrec_plugin.schema.Key` for every described key.
        valid_metric_key: ``valid_metric`` as a result key (``'recall@20'``).
    """

    def __init__(self, model: str, dataset: str, config_dict: Optional[Dict[str, Any]] = None,
                 config_file: Optional[str] = None,
                 check_keys: Optional[Callable[[str, frozenset], str]] = None):
        from mmrec_plugin import registry

        limits.check_name(dataset, "dataset name (-d)")
        limits.check_name(model, "model name (-m)")
        config_dict = dict(config_dict or {})
        for k in ("model", "dataset"):
            config_dict.pop(k, None)

        model_cls = registry.get_model(model)
        model_name = registry.canonical_name(model)
        model_yaml = registry.model_config_path(model)
        own = model_schema(model_cls)
        base = host_defaults(dataset)
        model_layer = load_yaml(model_yaml) if model_yaml else {}
        file_layer = load_yaml(config_file) if config_file else {}

        # the data folder may be moved by any layer above the dataset one
        data_path = base["data_path"]
        for layer in (model_layer, file_layer, config_dict):
            data_path = layer.get("data_path", data_path)
        dataset_yaml = self._find_dataset_yaml(dataset, str(data_path))
        dataset_layer = load_yaml(dataset_yaml) if dataset_yaml else {}

        layers: List[Tuple[str, Dict[str, Any]]] = [("the host defaults", base)]
        if dataset_yaml:
            layers.append((dataset_yaml, dataset_layer))
        if own:
            layers.append((f"{model_name}'s defaults", {k: copy.deepcopy(s.default) for k, s in own.items()}))
        if model_yaml:
            layers.append((model_yaml, model_layer))
        if config_file:
            known = set().union(*(layer for _, layer in layers)) | {"hyper_parameters"}
            for k in file_layer:
                if (own or model_yaml) and k not in known:
                    raise ConfigError(f"{config_file}: unknown config key '{k}'{did_you_mean(str(k), known)}; "
                                      f"a --config file may set the keys of the host, the dataset and "
                                      f"the model")
            layers.append((config_file, file_layer))

        final: Dict[str, Any] = {}
        sources: Dict[str, str] = {}
        hyper: List[str] = []
        for source, layer in layers:
            hyper.extend(_hyper_list(layer.get("hyper_parameters"), source))
            for k, v in layer.items():
                if k != "hyper_parameters":
                    final[k] = v
                    sources[k] = source
        self.layered_keys = frozenset(final) | {"model", "dataset", "hyper_parameters"}
        if check_keys is not None:
            checked = ((check_keys(k, self.layered_keys), v) for k, v in config_dict.items())
            config_dict = {k: v for k, v in checked if k is not None}

        # the command-line layer, with its two conveniences (module docstring)
        hyper.extend(_hyper_list(config_dict.get("hyper_parameters"), "the command line (config_dict)"))
        for k, v in config_dict.items():
            if k == "hyper_parameters":
                continue
            if k in hyper:
                v = v if isinstance(v, list) else [v]
            elif isinstance(v, list) and not isinstance(final.get(k), (list, dict)):
                hyper.append(k)
            final[k] = v
            sources[k] = "the command line (config_dict)"
        final["hyper_parameters"] = _order_hyper(hyper)
        final["model"] = model_name
        final["dataset"] = dataset
        self.specs: Dict[str, Key] = {**HOST_KEYS, **DATASET_KEYS, **own}
        validate(final, self.specs, sources)
        dp = final["data_path"] or "data/"
        final["data_path"] = dp if dp.endswith(("/", os.sep)) else dp + "/"
        final["results_dir"] = final["results_dir"] or "results/"

        self.final_config_dict = final
        self.sources = sources
        self.model_yaml = model_yaml
        self.dataset_yaml = dataset_yaml
        self.valid_metric_key = "@".join(map(str, parse_metric(final["valid_metric"])))
        final["device"] = self._device(final)

    # -- construction helpers ---------------------------------------------------------
    @staticmethod
    def _find_dataset_yaml(dataset: str, data_path: str) -> Optional[str]:
        packaged = os.path.join(CONFIG_DIR, "dataset", f"{dataset}.yaml")
        if os.path.isfile(packaged):
            return packaged
        local = os.path.join(data_path, dataset, f"{dataset}.yaml")
        return local if os.path.isfile(local) else None

    @staticmethod
    def _device(final: Dict[str, Any]):
        import torch

        if final.get("use_gpu") and torch.cuda.is_available():
            gpu = final.get("gpu_id") or 0
            if 0 <= gpu < torch.cuda.device_count():
                return torch.device(f"cuda:{gpu}")
            return torch.device("cuda")
        return torch.device("cpu")

    def with_params(self, params: Mapping[str, Any]) -> "Config":
        """The config of one grid combination: a copy with ``params`` set."""
        new = self.copy()
        for k, v in params.items():
            new[k] = v
        return new

    # -- mapping interface ------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        try:
            return self.final_config_dict[key]
        except KeyError:
            raise ConfigKeyError(
                f"config has no key '{key}'{did_you_mean(str(key), self.final_config_dict)}"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("config keys are strings")
        self.final_config_dict[key] = value
        if key == "valid_metric":
            self.valid_metric_key = "@".join(map(str, parse_metric(value)))

    def __contains__(self, key: object) -> bool:
        return key in self.final_config_dict

    def __iter__(self) -> Iterator[str]:
        return iter(self.final_config_dict)

    def __len__(self) -> int:
        return len(self.final_config_dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.final_config_dict.get(key, default)

    def keys(self):
        return self.final_config_dict.keys()

    def items(self):
        return self.final_config_dict.items()

    def copy(self) -> "Config":
        """An independent copy (the grid search gives each combination its own)."""
        new = copy.copy(self)
        new.final_config_dict = {
            k: (v if k == "device" else copy.deepcopy(v)) for k, v in self.final_config_dict.items()
        }
        new.sources = dict(self.sources)
        return new

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe copy (``device`` as a string)."""
        return jsonable(self.final_config_dict)

    def describe(self) -> str:
        """Every key, its value, where it was set and what it means (``run --print-config``)."""
        lines = []
        width = max((len(k) for k in self.final_config_dict), default=0)
        for k in sorted(self.final_config_dict, key=str.lower):
            value = self.final_config_dict[k]
            spec = self.specs.get(k)
            meaning = spec.describe() if spec is not None else ""
            where = self.sources.get(k, "")
            lines.append(f"{k:<{width}} : {value!r}" + (f"   # {where}" if where else "")
                         + (f"; {meaning}" if meaning else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max((len(k) for k in self.final_config_dict), default=0)
        return "\n".join(f"{k:<{width}} : {v!r}" for k, v in sorted(self.final_config_dict.items()))

    def __repr__(self) -> str:
        return f"Config(model={self.get('model')!r}, dataset={self.get('dataset')!r})"


def expand_grid(config) -> List[Dict[str, Any]]:
    """The grid-search combinations: the product over the ``hyper_parameters`` keys.

    MMRec's rules: ``seed`` is the first key (the outermost loop), every listed key must hold
    a list, the order is stable (itertools.product over the lists in key order).

    Args:
        config: a :class:`Config` or a plain dict with ``hyper_parameters``.

    Returns:
        A list of ``{key: value}`` dicts, keys in grid order.

    Raises:
        ConfigError: a listed key is missing, not a list, or an empty list.
    """
    keys = _order_hyper(list(config.get("hyper_parameters") or []))
    lists = []
    for k in keys:
        if k not in config:
            raise ConfigError(f"hyper_parameters lists '{k}', but the config has no such key"
                              + did_you_mean(k, list(config.keys())))
        value = config[k]
        if not isinstance(value, list):
            sources = getattr(config, "sources", {})
            where = f" (set in {sources[k]})" if k in sources else ""
            raise ConfigError(f"hyper_parameters key '{k}'{where} must be a list of values to "
                              f"search, got {value!r}; write {k}: [{value!r}] for a single value")
        if not value:
            raise ConfigError(f"hyper_parameters key '{k}' is an empty list")
        lists.append(value)
    return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
