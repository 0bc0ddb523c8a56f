"""Grid search with a resumable results store and a JSON summary (MMRec's quick_start, fixed).

:func:`grid` runs (or resumes) every combination of a config's grid
(:func:`~mmrec_plugin.host.config.expand_grid`, ``seed`` first) through an executor
(:mod:`mmrec_plugin.runs.executors`: in this process, on a local process pool, or on Ray).
Per combination the executor calls :func:`~mmrec_plugin.runs.build.train_one`, then this
process, the claim holder, commits it (:meth:`GridRun.commit`): it saves the best-valid
model to ``<results_dir>/models/<MODEL>-<DATASET>-<id>.pt`` and commits the record to the
LMDB store ``<results_dir>/store`` under ``run/<key>``, in one transaction and only while
it still holds the combination's claim, before the next combination starts. Runs of the
same grid into one folder cooperate through claims with leases
(:mod:`mmrec_plugin.runs.claims`): each combination is trained once.

Rerunning the same command skips every finished combination ("skipping, already done"); an
interrupted grid (Ctrl-C, ``kill -9``) resumes with the unfinished ones, each from its last
epoch checkpoint; changed data, settings or code train again ("code changed since ...":
the key includes the code digest, :func:`~mmrec_plugin.runs.records.code_digest`), unless
``reuse_results`` accepts the earlier results of the same settings on purpose.

The winner is the ``'ok'`` combination with the highest VALIDATION ``valid_metric`` (MMRec
picks by test score, a leak); ties go to the earlier combination. The summary
``<results_dir>/<MODEL>-<DATASET>.json`` (``<MODEL>-<DATASET>-<grid id>.json`` for a second
grid in the folder; rewritten from the store after every combination) lists every finished
combination (``id``, ``index``, ``params``, ``config``, ``best_epoch``, ``valid``, ``test``,
``seconds``, ``status``, ``model_path``, ``provenance``, ``analysis`` if any, ``history``),
the selected ``best``, ``selected_by``, ``complete`` and ``grid_id``. A plain-text log of
the run goes to ``<results_dir>/logs/``.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

from mmrec_plugin.errors import ConfigError, UserError
from mmrec_plugin.utils import jsonable

from . import checkpoints
from .records import (code_digest, combination_key, data_fingerprint, now, summary_dict,
                      write_json_atomic, save_model_file)

logger = logging.getLogger(__name__)

__all__ = ["GridRun", "GridResult", "grid", "quick_start", "MAX_COMBINATIONS"]

RUN_PREFIX = "run/"
BASE_PREFIX = "base/"  # base/<key without the code> -> the newest record's key and code
SUMMARY_PREFIX = "summary/"  # summary/<MODEL>-<DATASET> -> the id of the grid owning that name
#: the largest grid :func:`grid` starts without ``max_combinations`` raised
MAX_COMBINATIONS = 1000


def _eta(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class GridResult(dict):
    """The summary of a grid (the dict written to its JSON file), with ``path``, ``best``
    and ``combinations`` as attributes and :meth:`load` to get a trained model back."""

    @property
    def path(self) -> str:
        return self["path"]

    @property
    def best(self) -> Optional[Dict[str, Any]]:
        return self.get("best")

    @property
    def combinations(self) -> List[Dict[str, Any]]:
        return self.get("combinations", [])

    def load(self, combination: str = "best", data_path: Optional[str] = None):
        """The saved model of a combination (``best``, an id or an index), rebuilt: a
        :class:`~mmrec_plugin.runs.build.Run` (see :func:`mmrec_plugin.runs.load.load`)."""
        from .load import load

        return load(self.path, combination, data_path=data_path)


class GridRun:
    """One run of a grid against a results folder: which combinations are left, claiming
    them, committing results, the JSON summary. Every executor is one way to train the
    combinations it claims; this process is the only writer of what it commits.

    The summary is written from the store, under its write lock, so it holds every finished
    combination of this grid (whoever trained it) and the file written last is the newest.
    Its name is ``<MODEL>-<DATASET>.json`` for the first grid of that model and dataset in the
    folder and ``<MODEL>-<DATASET>-<grid id>.json`` for any other grid (the store records which
    grid owns the plain name), so two grids never overwrite each other's summary.
    """

    #: seconds between looks at combinations that other runs are training
    POLL_SECONDS = 2.0

    def __init__(self, config, params_list: List[Dict[str, Any]], store, save_model: bool = True,
                 pruning: bool = False, analyze: Optional[Callable] = None,
                 reuse_results: bool = False, checkpointing: bool = True):
        from mmrec_plugin.registry import get_model
        from mmrec_plugin.store import digest

        from .claims import Claims

        self.config, self.grid, self.store, self.save_model = config, params_list, store, save_model
        self.analyze = analyze  # run where each combination trains
        self.reuse_results = reuse_results
        self.checkpointing = checkpointing
        self.n = len(params_list)
        fingerprint = data_fingerprint(config)
        self.model_cls = get_model(config["model"])
        self.code = code_digest(self.model_cls)
        self.base_keys = [combination_key(config, p, fingerprint, "") for p in params_list]
        self.keys = [digest(b, self.code) for b in self.base_keys]
        self.grid_id = digest("mmrec_plugin.grid/v1", self.keys)[:16]
        self.metric = config.valid_metric_key
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

    # -- names and paths ----------------------------------------------------------------
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

    def model_path(self, index: int) -> str:
        name = f"{self.config['model']}-{self.config['dataset']}-{self.keys[index][:12]}.pt"
        return os.path.join(self.config["results_dir"], "models", name)

    def checkpoint_path(self, index: int) -> Optional[str]:
        if not self.checkpointing:
            return None
        return checkpoints.path_for(self.config["results_dir"], self.keys[index])

    def describe(self, index: int) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.grid[index].items())

    # -- claims -------------------------------------------------------------------------
    def _older_result(self, index: int) -> Optional[Dict[str, Any]]:
        """The newest record of the same settings trained by other code, if any."""
        with self.store.transact() as txn:
            ref = txn.get_json(BASE_PREFIX + self.base_keys[index])
            if not ref or ref.get("key") == self.keys[index]:
                return None
            rec = txn.get_json(RUN_PREFIX + ref["key"])
        return None if rec is None or rec.get("status") in self.redo else dict(rec, _ref=ref)

    def claim_next(self, exclude=()) -> Optional[int]:
        """Claim the first combination left that no live run holds (skipping, and
        forgetting, finished ones); None when there is none right now."""
        from .claims import BUSY, DONE

        for index in list(self.pending):
            if index in exclude or index in self.failed:
                continue
            state = self.claims.take(self.keys[index], self.redo)
            if state == DONE:
                logger.info("combination %d/%d: %s: skipping, already done", index + 1, self.n,
                            self.describe(index))
                self.pending.remove(index)
            elif state != BUSY:
                older = self._older_result(index)
                if older is not None and self.reuse_results:
                    self._reuse(index, older)
                    continue
                if older is not None:
                    ref = older["_ref"]
                    logger.info("combination %d/%d: %s: code changed since its result of %s (code "
                                "%s -> %s); training again (--reuse-results keeps that result)",
                                index + 1, self.n, self.describe(index), ref.get("finished"),
                                str(ref.get("code"))[:10], self.code[:10])
                else:
                    logger.info("combination %d/%d: %s", index + 1, self.n, self.describe(index))
                return index
        return None

    def _reuse(self, index: int, older: Dict[str, Any]) -> None:
        record = {k: v for k, v in older.items() if k != "_ref"}
        record["reused_from_code"] = (record.get("provenance") or {}).get("code")
        self.claims.commit(self.keys[index], record, self.redo)
        logger.info("combination %d/%d: %s: reusing its result of %s trained by other code "
                    "(--reuse-results)", index + 1, self.n, self.describe(index),
                    older["_ref"].get("finished"))
        self.pending.remove(index)

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

    # -- results ------------------------------------------------------------------------
    def commit(self, index: int, record: Dict[str, Any], payload: Optional[Dict[str, Any]]) -> bool:
        """Write the model file (to a temporary file), then, in one store transaction and only
        while this run still holds the claim, move it into place, commit the record and drop
        the claim; rewrite the summary and log one progress line. Returns whether this
        run's result was kept."""
        record = dict(record, index=index)
        files = {}
        if payload is not None and self.save_model:
            path = self.model_path(index)
            record["model_path"] = path
            files[path] = save_model_file(path, payload)
        key = self.keys[index]
        kept = self.claims.commit(key, record, self.redo, files=files)
        if kept:
            with self.store.transact() as txn:
                txn.put_json(BASE_PREFIX + self.base_keys[index],
                             {"key": key, "code": self.code, "finished": now()})
            ckpt = self.checkpoint_path(index)
            if ckpt:
                checkpoints.remove(ckpt)
        else:
            logger.warning("combination %d/%d: this run lost its claim (its lease expired) and "
                           "another run committed or holds the combination; its result is "
                           "discarded and the other run's files are left as they are",
                           index + 1, self.n)
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
        return kept

    def release(self, index: int, failed: bool = False) -> None:
        """Give up the claim on ``index``; with ``failed`` this run does not try it again."""
        self.claims.release(self.keys[index])
        if failed:
            self.failed.add(index)

    def write_summary(self) -> GridResult:
        """Write the JSON summary from the store (see the class docstring); return it."""
        with self.store.transact() as txn:
            records = []
            for index, (params, key) in enumerate(zip(self.grid, self.keys)):
                rec = txn.get_json(RUN_PREFIX + key)
                if rec is not None:
                    rec["index"] = index
                    rec["params"] = jsonable(params)  # the store sorts keys; keep grid order
                    records.append(rec)
            summary = GridResult(summary_dict(self.config, records, self.n, self.json_path))
            summary["grid_id"] = self.grid_id
            write_json_atomic(self.json_path, summary)
        return summary

    def close(self) -> None:
        self.claims.close()


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


def open_results(config):
    """Create and check ``config['results_dir']``; return its open results Store."""
    from mmrec_plugin.store import Store

    results_dir = config["results_dir"]
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"results_dir: cannot create the results folder {results_dir}: "
                        f"{exc.strerror or exc}") from None
    _check_writable(results_dir)
    return Store(os.path.join(results_dir, "store"))


def grid(config, executor=None, analyze: Optional[Callable] = None, save_model: bool = True,
         reuse_results: bool = False, max_combinations: int = MAX_COMBINATIONS) -> GridResult:
    """Run (or resume) the grid search of ``config``; return its summary.

    Args:
        config: a :class:`~mmrec_plugin.host.config.Config` (its ``hyper_parameters`` grid).
        executor: how combinations train (:mod:`mmrec_plugin.runs.executors`); default
            :func:`~mmrec_plugin.runs.executors.default_executor`: a local process pool of
            ``min(cores, combinations)`` single-threaded workers, or this process for one.
        analyze: ``analyze(model, config, train_dataset, test_dataset) -> dict | None``, run
            on each finished combination's best model and recorded under ``'analysis'``
            (the command line passes :func:`mmrec_plugin.analysis.rerun.record_analysis`).
            Workers in other processes call it, so it must be a module-level function.
        save_model: save each combination's best-valid weights.
        reuse_results: accept results of the same settings trained by other code.
        max_combinations: refuse a larger grid (a typo such as a 10^6-combination grid
            would otherwise start silently).
    """
    from mmrec_plugin.host.config import expand_grid

    from .executors import default_executor, run_grids

    params_list = expand_grid(config)
    check_grid_size(config, len(params_list), max_combinations)
    if executor is None:
        executor = default_executor(config, len(params_list))
    store = open_results(config)
    log = run_log(config)
    logger.info("model %s, dataset %s, device %s, %d combination(s) of %s, %s; log %s",
                config["model"], config["dataset"], config["device"], len(params_list),
                ", ".join(config["hyper_parameters"]), executor.describe(), log.path)
    try:
        gr = GridRun(config, params_list, store, save_model=save_model,
                     pruning=bool(getattr(executor, "pruning", False)), analyze=analyze,
                     reuse_results=reuse_results, checkpointing=executor.local)
        try:
            run_grids([gr], executor)
        finally:
            gr.close()
        summary = gr.write_summary()
        _log_end(config, summary)
    finally:
        store.close()
        log.close()
    return summary


def quick_start(model: str, dataset: str, config_dict: Optional[Dict[str, Any]] = None,
                config_file: Optional[str] = None, results_dir: Optional[str] = None,
                workers: Optional[int] = None, threads: int = 1, **grid_kwargs) -> GridResult:
    """MMRec's entry point, fixed: build the Config of ``model`` on ``dataset`` (``config_dict``
    overrides, ``config_file`` an extra yaml layer, ``results_dir``) and run its grid
    (:func:`grid`; ``workers``: 1 trains in this process, None the default pool)."""
    from mmrec_plugin.host.config import Config

    from .executors import default_executor

    config_dict = dict(config_dict or {})
    if results_dir is not None:
        config_dict["results_dir"] = results_dir
    config = Config(model, dataset, config_dict=config_dict, config_file=config_file)
    executor = grid_kwargs.pop("executor", None)
    if executor is None:
        executor = default_executor(config, expand_grid_size(config), workers=workers, threads=threads)
    return grid(config, executor=executor, **grid_kwargs)


def expand_grid_size(config) -> int:
    from mmrec_plugin.host.config import expand_grid

    return len(expand_grid(config))


def check_grid_size(config, n: int, limit: int = MAX_COMBINATIONS) -> None:
    """A grid of more than ``limit`` combinations is a ConfigError naming its dimensions."""
    if n <= limit:
        return
    sizes = " x ".join(f"{len(config[k])} {k}" for k in config["hyper_parameters"])
    raise ConfigError(f"the grid has {n} combinations ({sizes}), more than the limit {limit}; "
                      f"shrink the lists or raise the limit with --max-combinations {n}")


class run_log:
    """A plain-text log of this run in ``<results_dir>/logs/<MODEL>-<DATASET>-<time>.log``:
    every message of the package's loggers at INFO and above while it is open."""

    def __init__(self, config):
        stamp = now().replace(":", "").replace("-", "")[:15]
        name = f"{config['model']}-{config['dataset']}-{stamp}-{os.getpid()}.log"
        self.path = os.path.join(config["results_dir"], "logs", name)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s",
                                                    "%Y-%m-%d %H:%M:%S"))
        self.handler.setLevel(logging.INFO)
        self.logger = logging.getLogger("mmrec_plugin")
        self.level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()


def _log_end(config, summary: GridResult) -> None:
    best = summary.best
    if not summary["complete"]:
        logger.warning("%d of %d combination(s) did not finish; rerun the same command to "
                       "train them", summary["n_combinations"] - len(summary["combinations"]),
                       summary["n_combinations"])
    if best is None:
        logger.error("no combination finished with status ok (diverged, pruned or not run); "
                     "see %s", summary.path)
    else:
        metric = config.valid_metric_key
        logger.info("best (by valid %s): %s, valid %.4f, test %.4f", metric,
                    ", ".join(f"{k}={v!r}" for k, v in best["params"].items()),
                    best["valid"][metric], (best["test"] or {}).get(metric, float("nan")))
    logger.info("summary written to %s", summary.path)
