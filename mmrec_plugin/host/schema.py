"""The host's config keys: type, allowed values, default and meaning of every key, in one table.

:data:`HOST_KEYS` is the first layer of every :class:`~mmrec_plugin.host.config.Config`
(MMRec's overall defaults, except that paths are relative to the working directory:
``data/``, ``results/``) and the dataset keys MMRec reads (:data:`DATASET_KEYS`). A model's
keys come from its schema (``config_schema``, a :class:`~mmrec_plugin.schema.Schema`) and
its yaml. :func:`validate` checks every key that has a :class:`~mmrec_plugin.schema.Key`
(each value of a grid key's list), then the rules across keys (``valid_metric`` names one
of ``metrics`` at a cut-off of ``topk``; every ``hyper_parameters`` key is set).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional

from mmrec_plugin.errors import ConfigError, did_you_mean
from mmrec_plugin.schema import Key

__all__ = ["HOST_KEYS", "DATASET_KEYS", "METRICS", "LEARNERS", "validate", "check_config",
           "parse_metric", "host_defaults"]

METRICS = ("Recall", "NDCG", "Precision", "MAP")
LEARNERS = ("adam", "sgd", "adagrad", "rmsprop")
_METRIC_RE = re.compile(r"\s*([A-Za-z]+)@(\d+)\s*")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seeds(name: str, value: Any):
    values = value if isinstance(value, list) else [value]
    if not values or not all(_int(v) for v in values):
        raise ConfigError(f"config key '{name}' must be an integer or a list of integers, got {value!r}")
    return value


def _metrics(name: str, value: Any):
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ConfigError(f"config key '{name}' must be a non-empty list of {', '.join(METRICS)}, "
                          f"got {value!r}")
    for m in names:
        if not isinstance(m, str) or m.lower() not in {x.lower() for x in METRICS}:
            raise ConfigError(f"config key '{name}': unknown metric {m!r}"
                              f"{did_you_mean(str(m), METRICS)}; accepted: {', '.join(METRICS)}")
    return value


def _topk(name: str, value: Any):
    ks = [value] if _int(value) else value
    if not isinstance(ks, list) or not ks or not all(_int(k) and k >= 1 for k in ks):
        raise ConfigError(f"config key '{name}' must be a positive integer or a non-empty list of "
                          f"them, got {value!r}")
    return value


def _scheduler(name: str, value: Any):
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                  for x in value) and value[1] != 0)
    if not ok:
        raise ConfigError(f"config key '{name}' must be [a, b] with numbers, b != 0 (the learning "
                          f"rate factor a ** (epoch / b)), got {value!r}")
    return value


def _clip(name: str, value: Any):
    if isinstance(value, Mapping):
        if not isinstance(value.get("max_norm"), (int, float)) or isinstance(value.get("max_norm"), bool):
            raise ConfigError(f"config key '{name}' as a mapping must give max_norm (a number), "
                              f"e.g. {{max_norm: 5}}, got {value!r}")
        return dict(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return value
    raise ConfigError(f"config key '{name}' must be null, a positive number (max_norm) or a mapping "
                      f"of clip_grad_norm_ arguments, got {value!r}")


def _learner(name: str, value: Any):
    if not isinstance(value, str) or value.lower() not in LEARNERS:
        raise ConfigError(f"config key '{name}': unknown optimiser {value!r}"
                          f"{did_you_mean(str(value), LEARNERS)}; accepted: {', '.join(LEARNERS)}")
    return value


def _has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, (list, tuple)):
        return any(_has_nan(x) for x in v)
    if isinstance(v, Mapping):
        return any(_has_nan(x) for x in v.values())
    return False


def _separator(name: str, value: Any):
    if value == "\\t":  # a literal backslash-t from a command line or a quoted yaml string
        value = "\t"
    if not isinstance(value, str) or len(value) != 1:
        raise ConfigError(f"config key '{name}' must be a single character, got {value!r}")
    return value


def _feature_files(name: str, value: Any):
    if not isinstance(value, Mapping) or not value or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        raise ConfigError(f"config key '{name}': expected a mapping modality -> .npy file name, e.g. "
                          f"{{visual: image_feat.npy, text: text_feat.npy}}, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _key_list(name: str, value: Any):
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"config key '{name}' must be a list of key names, got {value!r}")
    return value


def _metric_name(name: str, value: Any):
    if not isinstance(value, str) or _METRIC_RE.fullmatch(value) is None:
        raise ConfigError(f"config key '{name}' = {value!r}: expected <Metric>@<K>, e.g. Recall@20")
    return value


HOST_KEYS: Dict[str, Key] = {
    # --- environment
    "use_gpu": Key(bool, True, "use CUDA when available", grid=False),
    "gpu_id": Key(int, 0, "which CUDA device", {"ge": 0}, grid=False),
    "seed": Key(object, [999], "random seeds (a list: always the first grid key)", check=_seeds),
    "data_path": Key(str, "data/", "datasets live in <data_path>/<dataset>/", grid=False),
    "results_dir": Key(str, "results/", "JSON summaries, the results store, saved models and logs",
                       grid=False),
    "checkpoint_dir": Key(str, "saved/", "MMRec's checkpoint folder (unused by the host)", grid=False),
    # --- data
    "inter_splitting_label": Key(str, "x_label", "split column: 0 train, 1 valid, 2 test", grid=False),
    "filter_out_cod_start_users": Key(bool, True, "MMRec key (evaluation skips users without targets)"),
    "is_multimodal_model": Key(bool, True, "load the item features for the model"),
    "end2end": Key(bool, False, "raw-input models (not supported by the host)"),
    "use_raw_features": Key(bool, False, "MMRec key (unused by the host)"),
    "NEG_PREFIX": Key(str, "neg_", "MMRec's negative-item field prefix", grid=False),
    "use_neg_sampling": Key(bool, True, "one sampled negative per positive"),
    "use_full_sampling": Key(bool, False, "MMRec key (unused by the host)"),
    "training_neg_sample_num": Key(int, 1, "negatives per positive", {"ge": 1}),
    # --- training
    "embedding_size": Key(int, 64, "latent dimension", {"ge": 1}),
    "weight_decay": Key(float, 0.0, "optimiser weight decay", {"ge": 0.0}),
    "req_training": Key(bool, True, "False: evaluate without training"),
    "epochs": Key(int, 1000, "maximum epochs", {"ge": 1}),
    "stopping_step": Key(int, 20, "early-stopping patience in evaluations", {"ge": 0}),
    "train_batch_size": Key(int, 2048, "training batch size", {"ge": 1}),
    "learner": Key(object, "adam", "optimiser: adam | sgd | adagrad | rmsprop (any case)",
                   check=_learner),
    "learning_rate": Key(float, 0.001, "learning rate", {"gt": 0.0}),
    "learning_rate_scheduler": Key(object, [1.0, 50], "[a, b]: LambdaLR factor a ** (epoch / b)",
                                   check=_scheduler),
    "clip_grad_norm": Key(object, None, "null, a max_norm, or clip_grad_norm_ arguments, e.g. "
                          "{max_norm: 5}", nullable=True, check=_clip),
    # --- evaluation
    "eval_step": Key(int, 1, "evaluate every eval_step epochs", {"ge": 1}),
    "eval_batch_size": Key(int, 4096, "users per evaluation batch", {"ge": 1}),
    "metrics": Key(object, ["Recall", "NDCG", "Precision", "MAP"], "Recall, NDCG, Precision, MAP",
                   check=_metrics, grid=False),
    "topk": Key(object, [5, 10, 20, 50], "cut-offs K", check=_topk, grid=False),
    "valid_metric": Key(object, "Recall@20", "<Metric>@<K>, K in topk: early stopping and the "
                        "grid's selection", check=_metric_name, grid=False),
    # --- grid search
    "hyper_parameters": Key(object, ["seed"], "keys whose (list) values are combined; "
                            "concatenated across the layers, seed first", check=_key_list, grid=False),
}

#: MMRec's dataset keys (a dataset yaml may set them; ``inter_file_name`` defaults to
#: ``<dataset>.inter``)
DATASET_KEYS: Dict[str, Key] = {
    "USER_ID_FIELD": Key(str, "userID", "user id column of the .inter file", grid=False),
    "ITEM_ID_FIELD": Key(str, "itemID", "item id column", grid=False),
    "inter_file_name": Key(str, None, "interaction file in <data_path>/<dataset>/ (default "
                           "<dataset>.inter)", grid=False),
    "vision_feature_file": Key(str, "image_feat.npy", "[n_items, d_v] visual features", grid=False),
    "text_feature_file": Key(str, "text_feat.npy", "[n_items, d_t] text features", grid=False),
    "feature_files": Key(object, None, "modality -> .npy file, for any number of modalities "
                         "(default: the two keys above)", nullable=True, check=_feature_files, grid=False),
    "field_separator": Key(object, "\t", "column separator (one character)", check=_separator, grid=False),
}


def host_defaults(dataset: str) -> Dict[str, Any]:
    """The first layer of a Config: every host and dataset key with its default."""
    out = {k: (list(s.default) if isinstance(s.default, list) else s.default)
           for k, s in {**HOST_KEYS, **DATASET_KEYS}.items()}
    out["inter_file_name"] = f"{dataset}.inter"
    return out


def check_config(config) -> None:
    """A plain dict config (tests, a hand-built model) checked like a Config: a host
    :class:`~mmrec_plugin.host.config.Config` was checked when it was built and is left alone."""
    if hasattr(config, "specs") and hasattr(config, "final_config_dict"):
        return
    validate(dict(config), HOST_KEYS)


def parse_metric(value: str):
    """``'Recall@20'`` -> ``('recall', 20)``."""
    match = _METRIC_RE.fullmatch(str(value))
    if match is None:
        raise ConfigError(f"config key 'valid_metric' = {value!r}: expected <Metric>@<K>, e.g. Recall@20")
    return match.group(1).lower(), int(match.group(2))


def validate(final: Dict[str, Any], specs: Mapping[str, Key], sources: Optional[Dict[str, str]] = None) -> None:
    """Check every key of ``final`` that ``specs`` describes (each value of a grid key's list),
    converting values in place (e.g. ``field_separator: "\\t"``); then the rules across keys.
    A bad value raises ConfigError naming the key, where it was set and what is accepted."""
    sources = sources or {}
    hyper: List[str] = final.get("hyper_parameters") or []

    def where(k: str) -> str:
        return f" (set in {sources[k]})" if k in sources else ""

    for name, value in list(final.items()):
        if _has_nan(value):  # for every key, described or not (a model may check it late)
            raise ConfigError(f"config key '{name}' = {value!r}{where(name)}: NaN is not a "
                              f"setting; expected a number")
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            if name in hyper and name != "seed":
                if not spec.grid:
                    raise ConfigError(f"config key '{name}' cannot be searched as a grid "
                                      f"(hyper_parameters lists it)")
                if isinstance(value, list):
                    final[name] = [spec.validate(name, v) for v in value]
                    continue
            final[name] = spec.validate(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where(name)}") from None

    for name in hyper:
        if name not in final:
            raise ConfigError(f"hyper_parameters lists '{name}', but no layer sets it"
                              f"{did_you_mean(name, final)}")
    if "valid_metric" in final and "valid_metric" not in hyper:
        metric, k = parse_metric(final["valid_metric"])
        metrics = final.get("metrics", list(METRICS))
        metrics = [metrics] if isinstance(metrics, str) else metrics
        topk = final.get("topk", [20])
        topk = [topk] if _int(topk) else topk
        if metric not in {m.lower() for m in metrics} or k not in topk:
            raise ConfigError(f"config key 'valid_metric' = {final['valid_metric']!r}{where('valid_metric')}: "
                              f"expected <Metric>@<K> with Metric in metrics {metrics} and K in topk "
                              f"{topk}{did_you_mean(metric, metrics)}")
