"""``mmrec-plugin compare``: variants x seeds through the run pipeline, and their per-user
test metrics.

Runs: each (variant, seed) is one grid search (:func:`mmrec_plugin.runs.grid`'s machinery,
models saved) into ``<results-dir>/<variant>/seed<S>/``; its result is the combination
selected by validation (``best``). All runs go through ONE executor (``--jobs N`` worker
processes; default ``min(cores, combinations)``), and several ``compare`` processes of the
same command share the work through the grids' claims (each combination is trained once).
Rerunning the command resumes: finished combinations are skipped by the results store.

Per-user metrics: for each run's selected combination, its saved best-valid model is
rebuilt (:func:`mmrec_plugin.runs.load`) and the test users are ranked as the trainer ranks
them; the per-user values are cached in ``<run dir>/peruser-<combination id>-test.npz`` and
their mean is checked against the recorded test metric (``check`` in the JSON; a mismatch
is logged as a warning). Statistics: :mod:`mmrec_plugin.analysis.stats`; report:
:mod:`mmrec_plugin.analysis.compare_report`; command line: :mod:`mmrec_plugin.analysis.compare_cli`.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from mmrec_plugin.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["run_dir", "run_config", "execute_runs", "find_summary", "per_user_test", "collect"]

_ID = re.compile(r"^[0-9a-f]{6,64}$")


def run_dir(root: str, variant: str, seed: int) -> str:
    return os.path.join(root, variant, f"seed{seed}")


def run_config(plan: Dict, seed: int, root: str, variant: str):
    """The Config of one (variant, seed) run: the variant's Config with its seed and folder."""
    config = plan["config"].copy()
    config["seed"] = [int(seed)]
    config["results_dir"] = run_dir(root, variant, seed)
    return config


def execute_runs(plans: Dict[str, Dict], seeds: Sequence[int], root: str, jobs: Optional[int] = None,
                 threads: int = 1) -> None:
    """Train every (variant, seed) run's grid (module docstring); returns when every
    combination is finished (by this process or another)."""
    from mmrec_plugin.host.config import expand_grid
    from mmrec_plugin.runs.executors import default_executor, run_grids
    from mmrec_plugin.runs.grid import GridRun, open_results

    configs = [(v, s, run_config(plans[v], s, root, v)) for v in plans for s in seeds]
    n_total = sum(len(expand_grid(c)) for _, _, c in configs)
    executor = default_executor(configs[0][2], n_total, workers=jobs, threads=threads)
    logger.info("%d run(s), %d combination(s) in all, %s", len(configs), n_total, executor.describe())
    stores, grids = [], []
    try:
        for variant, seed, config in configs:
            store = open_results(config)
            stores.append(store)
            grids.append(GridRun(config, expand_grid(config), store, save_model=True,
                                 checkpointing=executor.local))
        run_grids(grids, executor)
        for gr in grids:
            gr.write_summary()
    finally:
        for gr in grids:
            gr.close()
        for store in stores:
            store.close()


def find_summary(folder: str, model: str, dataset: str) -> Optional[str]:
    """The grid summary ``<folder>/<MODEL>-<DATASET>.json`` of a run, or None."""
    path = os.path.join(folder, f"{model}-{dataset}.json")
    if os.path.isfile(path):
        return path
    hits = glob.glob(os.path.join(glob.escape(folder), f"*-{glob.escape(dataset)}.json"))
    return hits[0] if len(hits) == 1 else None


def per_user_test(summary_path: str, combo: Dict, data_path: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Per-user test metrics of a combination's saved best-valid model, cached next to it.

    Returns ``{'users': int64[N], '<metric>@<K>': float64[N], ...}`` (the config's metrics
    and cut-offs), users in increasing id order.
    """
    from mmrec_plugin.runs import load
    from mmrec_plugin.utils import atomic_path

    cid = str(combo.get("id"))
    if not _ID.match(cid):
        raise DataError(f"{summary_path}: combination id {cid!r} is not a results id (hex digits)")
    cache = os.path.join(os.path.dirname(os.path.abspath(summary_path)), f"peruser-{cid}-test.npz")
    if os.path.isfile(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # a damaged cache is recomputed
            logger.warning("per-user cache %s unreadable (%s); recomputing", cache, exc)
    out = load(summary_path, cid, data_path=data_path).per_user("test")
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **out)
    return out


def collect(plans: Dict[str, Dict], dataset: str, seeds: Sequence[int], root: str,
            data_path: Optional[str], paired_metrics: Sequence[str]) -> Dict[str, Dict]:
    """Per variant and seed: the selected combination and its per-user test metrics.

    Returns ``{variant: {seed: run dict}}``; a run not finished is absent.
    """
    from mmrec_plugin.runs import read_results

    out: Dict[str, Dict] = {}
    for variant, plan in plans.items():
        out[variant] = {}
        for seed in seeds:
            path = find_summary(run_dir(root, variant, seed), plan["model"], dataset)
            if path is None:
                continue
            summary = read_results(path)
            best = summary.get("best")
            if not best or not summary.get("complete", True):
                continue
            per_user = per_user_test(path, best, data_path)
            missing = [m for m in paired_metrics if m not in per_user]
            if missing:
                raise ConfigError(f"--paired-metrics {missing[0]}: run {variant}/seed{seed} "
                                  f"evaluates only {sorted(k for k in per_user if k != 'users')} "
                                  "(config keys metrics / topk)")
            check = {m: abs(float(per_user[m].mean()) - float((best.get("test") or {}).get(m, np.nan)))
                     for m in paired_metrics}
            for m, diff in check.items():
                if not diff <= 1e-6:
                    logger.warning("%s seed %d: the reloaded model's mean per-user %s differs from "
                                   "the recorded one by %.3g", variant, seed, m, diff)
            out[variant][int(seed)] = {
                "results": os.path.abspath(path), "combination": best.get("id"),
                "params": best.get("params"), "best_epoch": best.get("best_epoch"),
                "valid": best.get("valid"), "test": best.get("test"),
                "seconds": best.get("seconds"), "n_combinations": summary.get("n_combinations"),
                "check": check, "per_user": per_user,
            }
    return out

