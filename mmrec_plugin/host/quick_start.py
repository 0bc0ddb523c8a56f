"""Grid search with a resumable results store and a JSON summary (MMRec's quick_start, fixed).

``quick_start(model, dataset)`` builds the layered :class:`~mmrec_plugin.host.config.Config`,
loads the dataset once and splits it, then for each combination of the grid
(:func:`~mmrec_plugin.host.config.expand_grid`, ``seed`` first):

1. seeds ``random``, ``numpy`` and ``torch`` with the combination's seed, builds the loaders,
   calls ``train_data.pretrain_setup()``, builds a fresh model (via the registry) and a
   :class:`~mmrec_plugin.host.trainer.Trainer`, and ``fit()``s it;
2. records the best-valid metrics and epoch, the test metrics at that epoch, the seconds,
   and ``status`` (``'ok'``, or ``'nan'`` when the loss diverged: that combination ends with
   a logged message and the grid goes on);
3. with an ``analyze`` hook (the command line passes the subset analysis,
   :func:`mmrec_plugin.analysis.rerun.record_analysis`), stores its result under ``'analysis'``;
4. saves the best-valid ``state_dict`` and the config to
   ``<results_dir>/models/<MODEL>-<DATASET>-<id>.pt`` (temp file + ``os.replace``);
5. commits the record to the LMDB store ``<results_dir>/store`` under ``run/<digest>`` BEFORE
   the next combination starts.

The digest covers the model, the dataset, the combination's values, every other effective
config value that can change training or its metrics (all keys except the paths, the device
and the grid definition: :data:`NOT_IN_DIGEST`) and the bytes of the dataset's files (the
``.inter`` file and the feature files), so rerunning the same command skips every finished
combination ("skipping, already done") and an interrupted grid (Ctrl-C, ``kill -9``)
resumes with the first unfinished one, while changed data or settings rerun.

The winner is the ``'ok'`` combination with the highest VALIDATION ``valid_metric`` (MMRec
picks by test score, a leak); ties go to the earlier combination. The summary
``<results_dir>/<MODEL>-<DATASET>.json`` (written atomically after every combination) lists
every combination (``id``, ``index``, ``params``, ``config``, ``best_epoch``, ``valid``,
``test``, ``seconds``, ``status``, ``model_path``, ``analysis`` if any, ``history``), the
selected ``best`` and ``selected_by``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from mmrec_plugin.errors import DataError, UserError
from mmrec_plugin.host.config import Config, expand_grid, jsonable, valid_metric_key
from mmrec_plugin.utils import atomic_path, atomic_write_bytes

logger = logging.getLogger(__name__)

STORE_PREFIX = "run/"
# keys that cannot change what a combination learns or scores
NOT_IN_DIGEST = frozenset(
    {
        "data_path", "results_dir", "checkpoint_dir", "device", "use_gpu", "gpu_id",
        "hyper_parameters", "save_recommended_topk", "recommend_topk", "model", "dataset",
        "eval_batch_size",
    }
)


def init_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _finite(obj: Any) -> Any:
    """NaN / infinite floats -> None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN -> null) to ``path`` via a temp file and
    ``os.replace``, so a reader never sees a half-written file."""
    text = json.dumps(_finite(jsonable(obj)), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _save_model_atomic(path: str, obj: Dict[str, Any]) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def data_fingerprint(config) -> str:
    """sha256 over the dataset's interaction file and feature files (those that exist)."""
    folder = os.path.join(config["data_path"], config["dataset"])
    h = hashlib.sha256()
    from mmrec_plugin.host.dataset import feature_files

    names = [("inter_file_name", config.get("inter_file_name"))]
    if config.get("feature_files") is None:  # (keeps the fingerprints of existing results)
        names += [(k, config.get(k)) for k in ("vision_feature_file", "text_feature_file")]
    else:
        names += [(f"feature_files.{m}", f) for m, f in sorted(feature_files(config).items())]
    for key, name in names:
        if not name:
            continue
        path = os.path.join(folder, str(name))
        h.update(f"{key}={name}:".encode())
        if not os.path.isfile(path):
            h.update(b"absent")
            continue
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def combination_key(config, params: Dict[str, Any], fingerprint: str) -> str:
    """The store digest of one combination (see the module docstring)."""
    from mmrec_plugin.store import digest

    rest = {k: v for k, v in config.items() if k not in NOT_IN_DIGEST and k not in params}
    return digest(
        "mmrec_plugin.quick_start/v1",
        config["model"], config["dataset"], jsonable(params), jsonable(rest), fingerprint,
    )


def _ensure_demo(config) -> None:
    folder = os.path.join(config["data_path"], config["dataset"])
    if os.path.isfile(os.path.join(folder, str(config.get("inter_file_name", "demo.inter")))):
        return
    try:
        from mmrec_plugin.data.synthetic import ensure_demo
    except ImportError as exc:
        raise DataError(
            f"the demo dataset is not in {folder}/ and its generator is not available ({exc})"
        ) from None
    logger.info("generating the demo dataset into %s", folder)
    ensure_demo(folder)


def _select(records: List[Dict], metric: str) -> Optional[Dict]:
    best = None
    for rec in records:
        if rec.get("status") != "ok" or not rec.get("valid"):
            continue
        score = rec["valid"].get(metric)
        if score is None:
            continue
        if best is None or score > best["valid"][metric]:
            best = rec
    return best


def _summary(config, records: List[Dict], n_total: int, json_path: str) -> Dict[str, Any]:
    metric = valid_metric_key(config)
    best = _select(records, metric)
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "selected_by": f"valid {metric}",
        "complete": len(records) == n_total,
        "n_combinations": n_total,
        "best": best,
        "combinations": records,
        "path": json_path,
    }


def _train_one(config, params, index, n, dataset_splits, results_dir, model_cls, save_model,
               key, analyze=None) -> Dict[str, Any]:
    """Train one combination and return its record (no store writes here)."""
    from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
    from mmrec_plugin.host.trainer import NanLossError, Trainer

    train_ds, valid_ds, test_ds = dataset_splits
    cfg = config.copy()
    for k, v in params.items():
        cfg[k] = v
    combo_id = key[:12]
    record: Dict[str, Any] = {
        "id": combo_id, "index": index, "params": jsonable(params), "config": cfg.to_dict(),
        "best_epoch": None, "valid": None, "test": None, "seconds": None, "status": None,
        "model_path": None,
    }
    init_seed(int(cfg["seed"]))
    train_data = TrainDataLoader(cfg, train_ds, batch_size=cfg["train_batch_size"], shuffle=True)
    valid_data = EvalDataLoader(cfg, valid_ds, additional_dataset=train_ds,
                                batch_size=cfg["eval_batch_size"])
    test_data = EvalDataLoader(cfg, test_ds, additional_dataset=train_ds,
                               batch_size=cfg["eval_batch_size"])
    train_data.pretrain_setup()
    t0 = time.time()
    model = model_cls(cfg, train_data).to(cfg["device"])
    trainer = Trainer(cfg, model)
    try:
        _, valid_result, test_result = trainer.fit(train_data, valid_data, test_data, saved=False)
    except NanLossError as exc:
        record.update(status="nan", seconds=time.time() - t0, error=str(exc))
        record["history"] = jsonable(getattr(trainer, "history", []))
        logger.error("combination %d/%d: %s; this combination is skipped, the grid goes on",
                     index + 1, n, exc)
        return record
    record.update(
        status="ok", seconds=time.time() - t0, best_epoch=trainer.best_epoch,
        valid=jsonable(valid_result), test=jsonable(test_result),
        history=jsonable(getattr(trainer, "history", [])),
    )
    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    analysis = analyze(model, cfg, train_ds, test_ds) if analyze is not None else None
    if analysis is not None:
        record["analysis"] = analysis
    if save_model:
        path = os.path.join(results_dir, "models", f"{cfg['model']}-{cfg['dataset']}-{combo_id}.pt")
        _save_model_atomic(path, {
            "state_dict": {k: v.detach().cpu() for k, v in (trainer.best_state or model.state_dict()).items()},
            "config": cfg.to_dict(), "params": jsonable(params), "best_epoch": trainer.best_epoch,
        })
        record["model_path"] = path
    return record


def quick_start(
    model: str,
    dataset: str,
    config_dict: Optional[Dict[str, Any]] = None,
    config_file: Optional[str] = None,
    results_dir: Optional[str] = None,
    save_model: bool = True,
    analyze: Optional[Callable] = None,
) -> Dict[str, Any]:
    """Run (or resume) the grid search of ``model`` on ``dataset``; return the summary dict.

    Args:
        model: model name (case-insensitive, see :mod:`mmrec_plugin.registry`).
        dataset: dataset name: ``<data_path>/<dataset>/``; ``demo`` is generated if absent.
        config_dict: highest-priority config overrides (the command line).
        config_file: an extra yaml layer (``--config FILE``).
        results_dir: where the store, the models and the JSON go (default: config
            ``results_dir``, ``results/``).
        save_model: save each combination's best-valid state_dict.
        analyze: ``analyze(model, config, train_dataset, test_dataset) -> dict | None``, run
            on each finished combination's best model and recorded under ``'analysis'``
            (the command line passes :func:`mmrec_plugin.analysis.rerun.record_analysis`;
            the host itself knows no analysis).

    Returns:
        The summary written to ``<results_dir>/<MODEL>-<DATASET>.json`` (its ``path`` key).
    """
    from mmrec_plugin.host.dataset import RecDataset
    from mmrec_plugin.registry import get_model
    from mmrec_plugin.store import Store

    config_dict = dict(config_dict or {})
    if results_dir is not None:
        config_dict["results_dir"] = results_dir
    config = Config(model, dataset, config_dict=config_dict, config_file=config_file)
    results_dir = config["results_dir"]
    grid = expand_grid(config)
    model_cls = get_model(config["model"])
    if config["dataset"] == "demo":
        _ensure_demo(config)

    logger.info("model %s, dataset %s, device %s, %d combination(s) of %s",
                config["model"], config["dataset"], config["device"], len(grid),
                ", ".join(config["hyper_parameters"]))
    full = RecDataset(config)
    splits = full.split()
    fingerprint = data_fingerprint(config)
    json_path = os.path.join(results_dir, f"{config['model']}-{config['dataset']}.json")
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"results_dir: cannot create the results folder {results_dir}: "
                        f"{exc.strerror or exc}") from None
    store = Store(os.path.join(results_dir, "store"))
    records: List[Dict[str, Any]] = []
    try:
        for index, params in enumerate(grid):
            key = combination_key(config, params, fingerprint)
            desc = ", ".join(f"{k}={v!r}" for k, v in params.items())
            done = store.get_json(STORE_PREFIX + key)
            if done is not None:
                logger.info("combination %d/%d: %s: skipping, already done (%s)",
                            index + 1, len(grid), desc, done.get("status"))
                done["index"] = index
                done["params"] = jsonable(params)  # the store sorts keys; keep grid order
                records.append(done)
                continue
            logger.info("combination %d/%d: %s", index + 1, len(grid), desc)
            record = _train_one(config, params, index, len(grid), splits, results_dir,
                                model_cls, save_model, key, analyze)
            store.put_json(STORE_PREFIX + key, record)
            records.append(record)
            if record["status"] == "ok":
                metric = valid_metric_key(config)
                logger.info(
                    "combination %d/%d done in %.1fs: best epoch %s, valid %s %.4f, test %s %.4f",
                    index + 1, len(grid), record["seconds"], record["best_epoch"], metric,
                    record["valid"].get(metric, float("nan")), metric,
                    (record["test"] or {}).get(metric, float("nan")),
                )
            write_json_atomic(json_path, _summary(config, records, len(grid), json_path))
    finally:
        store.close()

    summary = _summary(config, records, len(grid), json_path)
    write_json_atomic(json_path, summary)
    best = summary["best"]
    if best is None:
        logger.error("no combination finished (every one diverged); see %s", json_path)
    else:
        metric = valid_metric_key(config)
        logger.info("best (by valid %s): %s, valid %.4f, test %.4f", metric,
                    ", ".join(f"{k}={v!r}" for k, v in best["params"].items()),
                    best["valid"][metric], (best["test"] or {}).get(metric, float("nan")))
    logger.info("summary written to %s", json_path)
    return summary


__all__ = ["quick_start", "init_seed", "write_json_atomic", "combination_key", "data_fingerprint"]
