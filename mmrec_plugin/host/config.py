"""Layered configuration of the host, with MMRec's semantics made strict.

Layers, later wins (MMRec's order, plus an explicit file):

1. ``host/configs/overall.yaml`` -- MMRec's overall defaults (``data_path: data/``,
   ``results_dir: results/``);
2. the dataset layer -- MMRec's default dataset keys (``USER_ID_FIELD userID``,
   ``ITEM_ID_FIELD itemID``, ``inter_file_name <d>.inter``, ``vision_feature_file
   image_feat.npy``, ``text_feature_file text_feat.npy``, ``field_separator "\\t"``),
   overridden by the packaged ``host/configs/dataset/<d>.yaml`` if it exists, else by
   ``<data_path>/<d>/<d>.yaml`` if that exists;
3. the model yaml (:func:`mmrec_plugin.registry.model_config_path`);
4. ``config_file`` (``--config FILE``);
5. ``config_dict`` (the command line / the caller).

``hyper_parameters`` is concatenated across all layers (not replaced), de-duplicated, with
``seed`` always first. Two conveniences apply to the ``config_dict`` layer only (the command
line): a scalar given for a key that is in ``hyper_parameters`` is wrapped in a one-element
list (``--seed 7`` fixes the grid dimension), and a list given for a key whose lower-layer
value is not a list (or that no layer has) adds that key to ``hyper_parameters``
(``--reg_weight "[1e-4, 1e-3]"`` makes a grid). A list for a key whose default is a list
(``topk``, ``metrics``) or a mapping (BRMRS's ``modality_weights``, whose old form was a list)
is a plain value.

YAML is read with a safe loader that also reads ``1e-4`` as a float (plain PyYAML reads it
as a string), as MMRec's loader does.

Access: ``config['key']`` (a missing key raises :class:`ConfigKeyError`, a ``KeyError`` and a
:class:`~mmrec_plugin.errors.ConfigError`, naming the closest known key), ``config.get(key,
default)``, ``key in config``, ``config['key'] = value``. Always set: ``model`` (the
registered spelling), ``dataset``, ``device`` (``torch.device``), ``data_path`` (ending in
``/``, so MMRec-style ``data_path + dataset`` works), ``results_dir``.

Example::

    config = Config("LightGCN", "baby", config_dict={"learning_rate": 1e-3})
    for params in expand_grid(config):   # [{'seed': 999, 'reg_weight': ...}, ...]
        ...
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

from mmrec_plugin.errors import ConfigError, did_you_mean

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIR = os.path.join(HERE, "configs")
OVERALL_YAML = os.path.join(CONFIG_DIR, "overall.yaml")

METRICS = ("Recall", "NDCG", "Precision", "MAP")
LEARNERS = ("adam", "sgd", "adagrad", "rmsprop")

_POSITIVE_INTS = ("epochs", "train_batch_size", "eval_batch_size", "eval_step", "embedding_size")
_NON_NEGATIVE_INTS = ("stopping_step", "gpu_id")
_BOOLS = ("use_gpu", "is_multimodal_model", "end2end", "use_neg_sampling", "req_training")
_STRINGS = ("data_path", "results_dir", "USER_ID_FIELD", "ITEM_ID_FIELD", "inter_file_name")


class ConfigKeyError(ConfigError, KeyError):
    """A key that the configuration does not have (``config['missing']``)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` / ``1E5`` as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``"[1, 2]"`` -> list, ``"1e-4"`` -> float).

    Text that is not valid YAML is kept as the string itself.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a yaml mapping; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; expected a yaml file of key: value") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (undecodable byte at offset {exc.start}); "
                          "expected a yaml file of key: value") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got a {type(data).__name__}")
    return data


def dataset_defaults(dataset: str) -> Dict[str, Any]:
    """MMRec's dataset keys, used when a dataset has no yaml (and under every dataset yaml)."""
    return {
        "USER_ID_FIELD": "userID",
        "ITEM_ID_FIELD": "itemID",
        "inter_file_name": f"{dataset}.inter",
        "vision_feature_file": "image_feat.npy",
        "text_feature_file": "text_feat.npy",
        "field_separator": "\t",
    }


def _hyper_list(value: Any, source: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f"{source}: 'hyper_parameters' must be a list of key names, got {value!r}"
        )
    return list(value)


def _order_hyper(keys: List[str]) -> List[str]:
    out = ["seed"]
    for k in keys:
        if k not in out:
            out.append(k)
    return out


def _check_file_keys(path: str, layer: Dict[str, Any], lower: Tuple[Dict[str, Any], ...]) -> None:
    """A ``--config`` file may only set keys that a lower layer (overall, dataset, model yaml)
    knows, like ``--KEY VALUE`` on the command line: a typo must not become a new key."""
    known = set().union(*lower) | {"hyper_parameters"}
    for key in layer:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown config key '{key}'{did_you_mean(str(key), known)}; a --config "
                f"file may set the keys of the overall, dataset and model yaml"
            )


class Config:
    """The effective configuration of one run (see the module docstring for the layers).

    Args:
        model: model name (case-insensitive; looked up in :mod:`mmrec_plugin.registry`).
        dataset: dataset name (the folder under ``data_path``).
        config_dict: highest-priority overrides (the command line).
        config_file: a yaml file applied between the model yaml and ``config_dict``.

    Attributes:
        final_config_dict: the merged dict (MMRec's attribute name).
        sources: key -> the layer that set it (for messages).
        layered_keys: the keys known before ``config_dict`` was applied.
    """

    def __init__(
        self,
        model: str,
        dataset: str,
        config_dict: Optional[Dict[str, Any]] = None,
        config_file: Optional[str] = None,
    ):
        from mmrec_plugin import registry

        if not isinstance(dataset, str) or not dataset:
            raise ConfigError(f"dataset must be a non-empty name, got {dataset!r}")
        config_dict = dict(config_dict or {})
        for key in ("model", "dataset"):
            config_dict.pop(key, None)

        model_name = registry.canonical_name(model)
        model_yaml = registry.model_config_path(model)
        overall = load_yaml(OVERALL_YAML)
        model_layer = load_yaml(model_yaml) if model_yaml else {}
        file_layer = load_yaml(config_file) if config_file else {}

        # the data folder may be moved by any layer above the dataset one
        data_path = overall.get("data_path", "data/")
        for layer in (model_layer, file_layer, config_dict):
            data_path = layer.get("data_path", data_path)
        dataset_yaml = self._find_dataset_yaml(dataset, str(data_path))
        dataset_layer = dataset_defaults(dataset)
        if dataset_yaml:
            dataset_layer.update(load_yaml(dataset_yaml))

        layers: List[Tuple[str, Dict[str, Any]]] = [
            (OVERALL_YAML, overall),
            (dataset_yaml or f"MMRec's default dataset keys for '{dataset}'", dataset_layer),
        ]
        if model_yaml:
            layers.append((model_yaml, model_layer))
        if config_file:
            layers.append((config_file, file_layer))

        if config_file and model_yaml:
            _check_file_keys(config_file, file_layer, (overall, dataset_layer, model_layer))

        final: Dict[str, Any] = {}
        sources: Dict[str, str] = {}
        hyper: List[str] = []
        for source, layer in layers:
            hyper.extend(_hyper_list(layer.get("hyper_parameters"), source))
            for k, v in layer.items():
                final[k] = v
                sources[k] = source
        self.layered_keys = frozenset(final) | {"model", "dataset"}

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
        dp = str(final.get("data_path") or "data/")
        final["data_path"] = dp if dp.endswith(("/", os.sep)) else dp + "/"
        final["results_dir"] = str(final.get("results_dir") or "results/")

        self.final_config_dict = final
        self.sources = sources
        self.model_yaml = model_yaml
        self.dataset_yaml = dataset_yaml
        validate(final, sources)
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
            if isinstance(gpu, int) and 0 <= gpu < torch.cuda.device_count():
                return torch.device(f"cuda:{gpu}")
            return torch.device("cuda")
        return torch.device("cpu")

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

    def __str__(self) -> str:
        width = max((len(k) for k in self.final_config_dict), default=0)
        return "\n".join(f"{k:<{width}} : {v!r}" for k, v in sorted(self.final_config_dict.items()))

    def __repr__(self) -> str:
        return f"Config(model={self.get('model')!r}, dataset={self.get('dataset')!r})"


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tensors, devices and tuples made JSON-safe."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):
        return obj.detach().cpu().tolist()
    return str(obj)


# -- validation -----------------------------------------------------------------------
def _where(key: str, sources: Dict[str, str]) -> str:
    src = sources.get(key)
    return f"config key '{key}'" + (f" (from {src})" if src else "")


def _values(key: str, final: Dict[str, Any]) -> List[Any]:
    """The value, or each value of a grid key's list."""
    v = final[key]
    if key in final.get("hyper_parameters", []) and isinstance(v, list):
        return v
    return [v]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, (list, tuple)):
        return any(_has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return False


def validate(final: Dict[str, Any], sources: Optional[Dict[str, str]] = None) -> None:
    """Check the host's keys; a bad value raises ConfigError naming the key and what is allowed.

    A key listed in ``hyper_parameters`` whose value is a list has each element checked.
    """
    sources = sources or {}

    def bad(key: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{_where(key, sources)} = {value!r}: expected {allowed}")

    for key, value in final.items():
        if _has_nan(value):
            raise ConfigError(f"{_where(key, sources)} = {value!r}: NaN is not a setting; "
                              "expected a number")

    for key in _POSITIVE_INTS:
        if key in final:
            for v in _values(key, final):
                if not _is_int(v) or v < 1:
                    raise bad(key, v, "a positive integer")
    for key in _NON_NEGATIVE_INTS:
        if key in final:
            for v in _values(key, final):
                if not _is_int(v) or v < 0:
                    raise bad(key, v, "an integer >= 0")
    for key in _BOOLS:
        if key in final:
            for v in _values(key, final):
                if not isinstance(v, bool):
                    raise bad(key, v, "true or false")
    for key in _STRINGS:
        if key in final and not isinstance(final[key], str):
            raise bad(key, final[key], "a string")
    if "learning_rate" in final:
        for v in _values("learning_rate", final):
            if not _is_finite(v) or v <= 0:
                raise bad("learning_rate", v, "a positive finite number")
    if "weight_decay" in final:
        for v in _values("weight_decay", final):
            if not _is_finite(v) or v < 0:
                raise bad("weight_decay", v, "a finite number >= 0")
    if "learner" in final:
        for v in _values("learner", final):
            if not isinstance(v, str) or v.lower() not in LEARNERS:
                raise bad("learner", v, "one of " + ", ".join(LEARNERS) + did_you_mean(str(v), LEARNERS))
    if "learning_rate_scheduler" in final:
        v = final["learning_rate_scheduler"]
        ok = isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
        if not ok or v[1] == 0:
            raise bad("learning_rate_scheduler", v, "[a, b] with numbers, b != 0 (factor a ** (epoch / b))")

    metrics = final.get("metrics", list(METRICS))
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        raise bad("metrics", metrics, "a non-empty list of " + ", ".join(METRICS))
    lowered = {m.lower(): m for m in METRICS}
    for m in metrics:
        if not isinstance(m, str) or m.lower() not in lowered:
            raise bad("metrics", m, "names among " + ", ".join(METRICS) + did_you_mean(str(m), METRICS))
    topk = final.get("topk", [5, 10, 20, 50])
    if _is_int(topk):
        topk = [topk]
    if not isinstance(topk, list) or not topk or not all(_is_int(k) and k >= 1 for k in topk):
        raise bad("topk", final.get("topk"), "a non-empty list of positive integers")
    if "valid_metric" in final:
        vm = final["valid_metric"]
        match = re.fullmatch(r"\s*([A-Za-z]+)@(\d+)\s*", vm) if isinstance(vm, str) else None
        allowed = f"<Metric>@<K> with Metric in {metrics} and K in {topk}, e.g. Recall@20"
        if match is None:
            raise bad("valid_metric", vm, allowed)
        name, k = match.group(1), int(match.group(2))
        if name.lower() not in {m.lower() for m in metrics}:
            raise bad("valid_metric", vm, allowed + did_you_mean(name, metrics))
        if k not in topk:
            raise bad("valid_metric", vm, allowed)

    hyper = final.get("hyper_parameters", [])
    for key in hyper:
        if key not in final:
            raise ConfigError(
                f"hyper_parameters lists '{key}', but no layer sets it{did_you_mean(key, final)}"
            )
    if "seed" in final:
        for v in final["seed"] if isinstance(final["seed"], list) else [final["seed"]]:
            if not _is_int(v):
                raise bad("seed", v, "integers")


def valid_metric_key(config) -> str:
    """``valid_metric`` as the trainer's result key (``'Recall@20'`` -> ``'recall@20'``)."""
    return str(config["valid_metric"]).strip().lower()


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
    for key in keys:
        if key not in config:
            raise ConfigError(
                f"hyper_parameters lists '{key}', but the config has no such key"
                + did_you_mean(key, list(config.keys()))
            )
        value = config[key]
        if not isinstance(value, list):
            where = ""
            sources = getattr(config, "sources", {})
            if key in sources:
                where = f" (set in {sources[key]})"
            raise ConfigError(
                f"hyper_parameters key '{key}'{where} must be a list of values to search, "
                f"got {value!r}; write {key}: [{value!r}] for a single value"
            )
        if not value:
            raise ConfigError(f"hyper_parameters key '{key}' is an empty list")
        lists.append(value)
    return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


__all__ = [
    "Config",
    "ConfigKeyError",
    "expand_grid",
    "load_yaml",
    "parse_value",
    "validate",
    "valid_metric_key",
    "jsonable",
    "dataset_defaults",
    "METRICS",
    "LEARNERS",
]
