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

Training (``_train_one``) writes nothing; the process that claimed the combination (this
one, or a Ray driver for its workers: :mod:`mmrec_plugin.host.distributed`) does steps 4-5
(:class:`GridRun`). Runs of the same grid into one results folder cooperate through claims
with leases (:mod:`mmrec_plugin.host.claims`): each combination is trained once.

The digest covers the model, the dataset, the combination's values, every other effective
config value that can change training or its metrics (all keys except the paths, the device
and the grid definition: :data:`NOT_IN_DIGEST`) and the bytes of the dataset's files (the
``.inter`` file and the feature files), so rerunning the same command skips every finished
combination ("skipping, already done") and an interrupted grid (Ctrl-C, ``kill -9``)
resumes with the first unfinished one, while changed data or settings rerun.

The winner is the ``'ok'`` combination with the highest VALIDATION ``valid_metric`` (MMRec
picks by test score, a leak); ties go to the earlier combination. The summary
``<results_dir>/<MODEL>-<DATASET>.json`` (``<MODEL>-<DATASET>-<grid id>.json`` for a second
grid in the folder; rewritten from the store after every combination) lists every finished
combination (``id``, ``index``, ``params``, ``config``, ``best_epoch``, ``valid``, ``test``,
``seconds``, ``status``, ``model_path``, ``analysis`` if any, ``history``), the selected
``best``, ``selected_by``, ``complete`` and ``grid_id``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mmrec_plugin.errors import DataError, UserError
from mmrec_plugin.host.config import Config, expand_grid, jsonable, valid_metric_key
from mmrec_plugin.utils import atomic_path, atomic_write_bytes, set_threads

logger = logging.getLogger(__name__)

STORE_PREFIX = "run/"  # = claims.RUN_PREFIX
SUMMARY_PREFIX = "summary/"  # summary/<MODEL>-<DATASET> -> the id of the grid owning that name
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
    ``os.replace``, so a reader never sees a half-written file. An OS error (an unwritable
    folder, a full disk) is a UserError naming the file; the old file is kept."""
    text = json.dumps(_finite(jsonable(obj)), indent=2, allow_nan=False)
    try:
        atomic_write_bytes(path, (text + "\n").encode())
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc})") from None


def _save_model_atomic(path: str, obj: Dict[str, Any]) -> None:
    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc})") from None


def _check_writable(folder: str) -> None:
    """Fail before any training when ``folder`` does not take a new file (read-only or
    immutable folder, no permission): otherwise the first result would be lost."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"results_dir: the results folder {folder} is not writable "
                        f"({exc.strerror or exc}); make it writable or choose another "
                        f"--results-dir") from None


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


def _train_one(config, params, index, n, dataset_splits, model_cls, key, keep_state=True,
               on_eval=None, analyze=None) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """Train one combination; return its record and, with ``keep_state``, the payload of its
    model file (best-valid ``state_dict`` on the CPU, config, params, best epoch). Writes
    nothing: the caller (this process, or a Ray driver for a worker) commits both.
    ``on_eval``: passed to :meth:`Trainer.fit`; a combination it stops is recorded with
    ``status: 'pruned'`` (its results so far, no model file). ``analyze``: the hook of
    :func:`quick_start`, run on the best model of a finished combination."""
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
        _, valid_result, test_result = trainer.fit(train_data, valid_data, test_data, saved=False,
                                                   on_eval=on_eval)
    except NanLossError as exc:
        record.update(status="nan", seconds=time.time() - t0, error=str(exc))
        record["history"] = jsonable(getattr(trainer, "history", []))
        logger.error("combination %d/%d: %s; this combination is skipped, the grid goes on",
                     index + 1, n, exc)
        return record, None
    record.update(
        status="pruned" if trainer.pruned else "ok", seconds=time.time() - t0,
        best_epoch=trainer.best_epoch,
        valid=jsonable(valid_result), test=jsonable(test_result),
        history=jsonable(getattr(trainer, "history", [])),
    )
    if trainer.pruned:
        return record, None
    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    analysis = analyze(model, cfg, train_ds, test_ds) if analyze is not None else None
    if analysis is not None:
        record["analysis"] = analysis
    payload = None
    if keep_state:
        payload = {
            "state_dict": {k: v.detach().cpu() for k, v in (trainer.best_state or model.state_dict()).items()},
            "config": cfg.to_dict(), "params": jsonable(params), "best_epoch": trainer.best_epoch,
        }
    return record, payload


def _eta(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class GridRun:
    """One run of a grid against a results folder: which combinations are left, claiming
    them, committing results, the JSON summary. Shared by the sequential loop
    (:func:`quick_start`) and the Ray driver (:mod:`mmrec_plugin.host.distributed`): each is
    one way to claim combinations (:class:`~mmrec_plugin.host.claims.Claims`) and commit
    their records; this process is the only writer of what it commits.

    The summary is written from the store, under its write lock, so it holds every finished
    combination of this grid (whoever trained it) and the file written last is the newest.
    Its name is ``<MODEL>-<DATASET>.json`` for the first grid of that model and dataset in the
    folder and ``<MODEL>-<DATASET>-<grid id>.json`` for any other grid (the store records which
    grid owns the plain name), so two grids never overwrite each other's summary.
    """

    #: seconds between looks at combinations that other runs are training
    POLL_SECONDS = 2.0
    #: trains one combination; the Ray driver sends it to its workers (so that
    #: host.distributed need not import this module: no import loop)
    train_one = staticmethod(_train_one)

    def __init__(self, config, grid, fingerprint, store, save_model: bool = True,
                 pruning: bool = False, analyze: Optional[Callable] = None):
        from mmrec_plugin.host.claims import Claims
        from mmrec_plugin.store import digest

        self.config, self.grid, self.store, self.save_model = config, grid, store, save_model
        self.analyze = analyze  # quick_start's hook, run where each combination trains
        self.n = len(grid)
        self.keys = [combination_key(config, params, fingerprint) for params in grid]
        self.grid_id = digest("mmrec_plugin.grid/v1", self.keys)[:16]
        self.metric = valid_metric_key(config)
        self.claims = Claims(store)
        # a combination an early-termination scheduler pruned counts as finished only for
        # runs with a scheduler; a plain run trains it in full (and replaces the record)
        self.redo = () if pruning else ("pruned",)
        self.pending = list(range(self.n))  # not known to be finished (by anyone)
        self.failed: set = set()  # given up in this run (a worker died too often)
        self.trained_here = 0
        self.t0 = time.time()
        self._waiting_on: Optional[frozenset] = None
        self.json_path = self._summary_path()

    def _summary_path(self) -> str:
        name = f"{self.config['model']}-{self.config['dataset']}"
        with self.store.transact() as txn:
            owner = txn.get_json(SUMMARY_PREFIX + name)
            if owner is None:
                txn.put_json(SUMMARY_PREFIX + name, self.grid_id)
                owner = self.grid_id
        if owner != self.grid_id:
            name = f"{name}-{self.grid_id[:8]}"
            logger.info("another grid of %s on %s owns %s-%s.json in this folder; this grid's "
                        "summary is %s.json", self.config["model"], self.config["dataset"],
                        self.config["model"], self.config["dataset"], name)
        return os.path.join(self.config["results_dir"], name + ".json")

    def describe(self, index: int) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.grid[index].items())

    def claim_next(self, exclude=()) -> Optional[int]:
        """Claim the first combination left that no live run holds (skipping, and
        forgetting, finished ones); None when there is none right now."""
        from mmrec_plugin.host.claims import BUSY, DONE

        for index in list(self.pending):
            if index in exclude or index in self.failed:
                continue
            state = self.claims.take(self.keys[index], self.redo)
            if state == DONE:
                logger.info("combination %d/%d: %s: skipping, already done", index + 1, self.n,
                            self.describe(index))
                self.pending.remove(index)
            elif state != BUSY:
                logger.info("combination %d/%d: %s", index + 1, self.n, self.describe(index))
                return index
        return None

    def left(self, exclude=()) -> List[int]:
        return [i for i in self.pending if i not in self.failed and i not in exclude]

    def wait_for_others(self) -> None:
        """Sleep while the combinations left are all held by other live runs (logged once
        per change); their results then appear as finished, or their claims go stale."""
        busy = {}
        for index in self.left():
            holder = self.claims.holder(self.keys[index])
            if holder is not None:
                busy[index] = holder
        if busy and frozenset(busy) != self._waiting_on:
            owners = sorted({f"pid {c.get('pid')} on {c.get('host')}" for c in busy.values()})
            logger.info("waiting for %d combination(s) being trained by another run (%s)",
                        len(busy), ", ".join(owners))
        self._waiting_on = frozenset(busy)
        if busy:
            time.sleep(self.POLL_SECONDS)

    def commit(self, index: int, record: Dict[str, Any], payload: Optional[Dict[str, Any]]) -> None:
        """Save the model file, commit the record (dropping the claim), rewrite the summary,
        log one progress line."""
        record = dict(record, index=index)
        if payload is not None and self.save_model:
            name = f"{self.config['model']}-{self.config['dataset']}-{record['id']}.pt"
            path = os.path.join(self.config["results_dir"], "models", name)
            _save_model_atomic(path, payload)
            record["model_path"] = path
        if not self.claims.commit(self.keys[index], record, self.redo):
            logger.warning("combination %d/%d was committed by another run meanwhile; keeping "
                           "that result", index + 1, self.n)
        if index in self.pending:
            self.pending.remove(index)
        self.trained_here += 1
        summary = self.write_summary()
        n_done = len(summary["combinations"])
        left = len(self.left())
        elapsed = time.time() - self.t0
        eta = _eta(elapsed / self.trained_here * left) if left else "0:00:00"
        if record["status"] == "ok":
            result = (f"best epoch {record['best_epoch']}, valid {self.metric} "
                      f"{record['valid'].get(self.metric, float('nan')):.4f}, test {self.metric} "
                      f"{(record['test'] or {}).get(self.metric, float('nan')):.4f}")
        else:
            result = f"status {record['status']}"
        logger.info("combination %d/%d done in %.1fs: %s; %d/%d finished, ETA %s",
                    index + 1, self.n, record.get("seconds") or 0.0, result, n_done, self.n, eta)

    def release(self, index: int, failed: bool = False) -> None:
        """Give up the claim on ``index``; with ``failed`` this run does not try it again."""
        self.claims.release(self.keys[index])
        if failed:
            self.failed.add(index)

    def write_summary(self) -> Dict[str, Any]:
        """Write the JSON summary from the store (see the class docstring); return it."""
        with self.store.transact() as txn:
            records = []
            for index, (params, key) in enumerate(zip(self.grid, self.keys)):
                rec = txn.get_json(STORE_PREFIX + key)
                if rec is not None:
                    rec["index"] = index
                    rec["params"] = jsonable(params)  # the store sorts keys; keep grid order
                    records.append(rec)
            summary = _summary(self.config, records, self.n, self.json_path)
            summary["grid_id"] = self.grid_id
            write_json_atomic(self.json_path, summary)
        return summary

    def close(self) -> None:
        self.claims.close()


def quick_start(
    model: str,
    dataset: str,
    config_dict: Optional[Dict[str, Any]] = None,
    config_file: Optional[str] = None,
    results_dir: Optional[str] = None,
    save_model: bool = True,
    analyze: Optional[Callable] = None,
    threads: Optional[int] = None,
    distributed: Optional[Dict[str, Any]] = None,
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
            the host itself knows no analysis). With ``distributed`` it runs in the
            workers, so it must be picklable (a module-level function).
        threads: torch threads per training process (this one, or each Ray worker;
            None: unchanged here, 1 in a worker; the command line passes ``--threads``
            or its default, :func:`mmrec_plugin.utils.default_threads`).
        distributed: run the combinations on Ray workers instead of one after another:
            the keyword arguments of :func:`mmrec_plugin.host.distributed.run_on_ray`
            (``workers``, ``address``, ``cpus_per_trial``, ``gpus_per_trial``,
            ``scheduler``). None (the default): the sequential loop, Ray not imported.

    Returns:
        The summary written to the JSON file of this grid (its ``path`` key).
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
    if distributed is not None:
        from mmrec_plugin.host.distributed import require_ray

        require_ray(distributed.get("scheduler"))  # a missing extra: an error before any work
    if config["dataset"] == "demo":
        _ensure_demo(config)

    logger.info("model %s, dataset %s, device %s, %d combination(s) of %s",
                config["model"], config["dataset"], config["device"], len(grid),
                ", ".join(config["hyper_parameters"]))
    full = RecDataset(config)
    splits = full.split()
    fingerprint = data_fingerprint(config)
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"results_dir: cannot create the results folder {results_dir}: "
                        f"{exc.strerror or exc}") from None
    _check_writable(results_dir)
    store = Store(os.path.join(results_dir, "store"))
    try:
        run = GridRun(config, grid, fingerprint, store, save_model=save_model,
                      pruning=bool(distributed and distributed.get("scheduler")), analyze=analyze)
        try:
            if distributed is not None:
                from mmrec_plugin.host.distributed import run_on_ray

                run_on_ray(run, splits, model_cls, threads=threads, **distributed)
            else:
                if threads:
                    set_threads(int(threads))
                _run_sequential(run, splits, model_cls)
        finally:
            run.close()
        summary = run.write_summary()
    finally:
        store.close()

    json_path = summary["path"]
    best = summary["best"]
    if not summary["complete"]:
        logger.warning("%d of %d combination(s) did not finish; rerun the same command to "
                       "train them", summary["n_combinations"] - len(summary["combinations"]),
                       summary["n_combinations"])
    if best is None:
        logger.error("no combination finished with status ok (diverged, pruned or not run); "
                     "see %s", json_path)
    else:
        metric = valid_metric_key(config)
        logger.info("best (by valid %s): %s, valid %.4f, test %.4f", metric,
                    ", ".join(f"{k}={v!r}" for k, v in best["params"].items()),
                    best["valid"][metric], (best["test"] or {}).get(metric, float("nan")))
    logger.info("summary written to %s", json_path)
    return summary


def _run_sequential(run: GridRun, splits, model_cls) -> None:
    """Claim, train and commit combinations one after another in this process; then wait
    for those other runs are training (taking over any whose owner dies)."""
    while run.left():
        index = run.claim_next()
        if index is None:
            run.wait_for_others()
            continue
        try:
            record, payload = _train_one(run.config, run.grid[index], index, run.n, splits,
                                         model_cls, run.keys[index], keep_state=run.save_model,
                                         analyze=run.analyze)
        except BaseException:
            run.release(index)
            raise
        run.commit(index, record, payload)


__all__ = ["quick_start", "GridRun", "init_seed", "write_json_atomic", "combination_key",
           "data_fingerprint"]
