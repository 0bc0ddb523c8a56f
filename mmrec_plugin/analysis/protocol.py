"""``mmrec-plugin compare``: a rerunnable study protocol.

Runs a set of variants over several seeds, then writes mean +- sd tables of the test metrics
at the best-valid epoch and a paired per-user significance test of every variant against a
named baseline, with plots::

    mmrec-plugin compare -d DATASET [-m MODEL] [--data-path DIR] [--results-dir DIR]
        [--seeds S1 S2 ...] [--variant NAME [KEY=VALUE ...]] ... [--variants FILE.yaml]
        [--baseline NAME] [--set KEY=VALUE ...] [--pin-grid]
        [--metrics M@K ...] [--paired-metrics M@K ...] [--bootstrap N] [--bootstrap-seed S]
        [--jobs N] [--report-only] [--out DIR]

Variants: ``--variant NAME [KEY=VALUE ...]`` (repeatable): the name, then config overrides
with YAML values (``--variant nochns chns_weight=0``, ``--variant lgcn model=LightGCN``,
``--variant wide "reg_weight=[1e-4, 1e-3]"``); ``model=NAME`` picks the variant's model
(default ``-m``, BRMRS). ``--variants FILE.yaml`` reads ``{NAME: {KEY: VALUE}}``, or a mapping
with ``variants:`` and optionally ``baseline``, ``seeds``, ``set``, ``model``, ``dataset``
(the command line wins; command-line variants come after the file's). ``--set KEY=VALUE``
applies to every variant whose model knows the key (a variant's own value wins). ``seed``,
``dataset``, ``data_path`` and ``results_dir`` are the protocol's own and cannot be set.

Runs: each (variant, seed) is one host grid search (:func:`mmrec_plugin.host.quick_start.
quick_start`, models saved) into ``<results-dir>/<variant>/seed<S>/``; its result is the
combination selected by validation (``best``). A grid the model yaml or a list value defines
is searched per seed; ``--pin-grid`` pins every grid key the variant and ``--set`` leave open
to its first value (one combination per run). Rerunning the command resumes: finished
combinations are skipped by the host's store. A run is claimed by a lock file
(``<run dir>/.compare.lock``, holding host and pid; a stale one is taken over), so several
processes of the same command share the runs; ``--jobs N`` starts N - 1 such worker processes
itself. The last process to finish writes the complete report; ``--report-only`` writes it
from what is there without training.

Per-user metrics: for each run's selected combination, its saved best-valid model
(``model_path``, read with ``torch.load(weights_only=True)``) is rebuilt through the registry
and the test users are ranked as the trainer does (training items masked); the per-user
values (:meth:`mmrec_plugin.host.evaluator.Evaluator.evaluate_per_user`) are cached in
``<run dir>/peruser-<combination id>-test.npz``. Their mean is checked against the recorded
test metric (``check`` in the JSON; a mismatch is logged as a warning).

Statistics, per variant ``v`` and paired metric, against baseline ``b``, over the seeds both
finished: each test user's value averaged over those seeds, ``v_u`` and ``b_u`` (pairs by
seed and user; every run of a dataset has the same test users), ``d_u = v_u - b_u``. Then

- ``delta`` = mean of ``d_u`` (= the difference of the table's means over those seeds) and
  ``rel_pct`` = ``100 * delta / mean(b_u)``;
- a paired bootstrap over users (``--bootstrap`` resamples, seeded): the same resampled users
  for both, percentile 95% CIs of ``delta`` and of ``rel_pct``, and ``p_boot`` = two-sided
  ``2 * min(P*(delta <= 0), P*(delta >= 0))``;
- the Wilcoxon signed-rank test on ``d_u`` (``scipy.stats.wilcoxon``, zero differences
  dropped), two-sided p-value;
- per seed: the difference of the two runs' means, and how many seeds the variant won.

The user is the resampling unit, so the CIs cover user sampling for these seeds; the seed-to-
seed spread is the tables' sd and the per-seed differences.

Outputs (atomic writes) in ``--out`` (default ``<results-dir>``): ``compare.md`` (the tables,
also printed), ``compare.json`` (everything, with the runs' selected params and paths),
``compare_metrics.png`` (mean +- sd bars, seeds as dots) and ``compare_paired.png`` (relative
change with its 95% CI per variant), the plots only when matplotlib (extra ``plot``) is
importable; otherwise a note.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import socket
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmrec_plugin.analysis.rerun import resolve_model_path
from mmrec_plugin.errors import ConfigError, DataError, UserError, did_you_mean

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PAIRED_METRICS = ("recall@20", "ndcg@20")
DEFAULT_SEEDS = (999, 1, 2)
RESERVED = ("seed", "dataset", "data_path", "results_dir")
LOCK_NAME = ".compare.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_BOOT_BLOCK = 1 << 22  # resampled user indices drawn per block


# =============================================================================== statistics
def mean_sd(values: Sequence[float]) -> Dict:
    """``{'mean', 'sd', 'n'}`` of ``values`` (sample sd, ddof 1; None with fewer than 2)."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(x) == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else None,
            "n": int(len(x))}


def bootstrap_sums(v: np.ndarray, b: np.ndarray, n_boot: int, seed: int = 0,
                   index: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Means of ``v`` and of ``b`` over ``n_boot`` resamples of the same users (paired).

    Args:
        v, b: ``[N]`` per-user values, aligned.
        n_boot: number of resamples.
        seed: seeds ``numpy.random.default_rng``.
        index: optional ``[n_boot, N]`` resample indices (tests); drawn in blocks otherwise.

    Returns:
        ``(mean_v[n_boot], mean_b[n_boot])``.
    """
    v = np.asarray(v, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = len(v)
    if index is not None:
        index = np.asarray(index, dtype=np.int64)
        return v[index].mean(axis=1), b[index].mean(axis=1)
    rng = np.random.default_rng(seed)
    out_v = np.empty(n_boot)
    out_b = np.empty(n_boot)
    step = max(1, _BOOT_BLOCK // max(n, 1))
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out_v[start:stop] = v[idx].mean(axis=1)
        out_b[start:stop] = b[idx].mean(axis=1)
    return out_v, out_b


def wilcoxon_test(d: np.ndarray) -> Dict:
    """Two-sided Wilcoxon signed-rank test of ``d`` (zeros dropped): ``{'statistic',
    'p_value', 'n_nonzero'}``; statistic and p are None when every difference is 0."""
    from scipy import stats

    d = np.asarray(d, dtype=np.float64)
    nz = int(np.count_nonzero(d))
    if nz == 0:
        return {"statistic": None, "p_value": None, "n_nonzero": 0}
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return {"statistic": float(res[0]), "p_value": float(res[1]), "n_nonzero": nz}


def paired_test(v: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0,
                index: Optional[np.ndarray] = None) -> Dict:
    """Paired comparison of per-user values ``v`` (variant) and ``b`` (baseline).

    Returns ``{'n_users', 'baseline', 'variant', 'delta', 'delta_ci', 'rel_pct',
    'rel_pct_ci', 'p_boot', 'wilcoxon': {...}, 'n_boot'}`` (see the module docstring);
    relative values are None when the baseline mean is 0.
    """
    v = np.asarray(v, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if v.shape != b.shape or v.ndim != 1 or len(v) == 0:
        raise ValueError(f"paired_test needs two aligned non-empty vectors, got {v.shape} and {b.shape}")
    mv, mb = float(v.mean()), float(b.mean())
    bv, bb = bootstrap_sums(v, b, n_boot, seed, index)
    deltas = bv - bb
    lo, hi = np.quantile(deltas, [0.025, 0.975])
    out = {
        "n_users": int(len(v)), "baseline": mb, "variant": mv, "delta": mv - mb,
        "delta_ci": [float(lo), float(hi)],
        "p_boot": float(min(1.0, 2.0 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))),
        "n_boot": int(len(deltas)), "rel_pct": None, "rel_pct_ci": None,
    }
    if mb != 0:
        out["rel_pct"] = 100.0 * (mv - mb) / mb
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = 100.0 * deltas / bb
        rel = rel[np.isfinite(rel)]
        if len(rel):
            r_lo, r_hi = np.quantile(rel, [0.025, 0.975])
            out["rel_pct_ci"] = [float(r_lo), float(r_hi)]
    out["wilcoxon"] = wilcoxon_test(v - b)
    return out


# =============================================================================== variants
def parse_assignments(tokens: Sequence[str], where: str) -> Dict:
    """``['k=v', ...]`` -> ``{k: yaml(v)}``; ``where`` names the option in errors."""
    from mmrec_plugin.host.config import parse_value

    out: Dict = {}
    for tok in tokens or []:
        if "=" not in tok or not tok.split("=", 1)[0].strip():
            raise UserError(f"{where}: expected KEY=VALUE, got {tok!r}")
        key, value = tok.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"{where}: variant name {name!r} must be letters, digits, _ . + - "
                        "(it names the results folder)")
    return name


def _check_reserved(overrides: Dict, where: str) -> None:
    for key in RESERVED:
        if key in overrides:
            raise UserError(f"{where}: '{key}' is set by the protocol (use --seeds, -d, "
                            "--data-path, --results-dir), not per variant or --set")


def parse_variant_options(groups: Sequence[Sequence[str]]) -> Dict[str, Dict]:
    """``--variant NAME [KEY=VALUE ...]`` groups -> ``{name: overrides}`` (order kept)."""
    out: Dict[str, Dict] = {}
    for group in groups or []:
        name = _check_name(group[0], "--variant")
        if name in out:
            raise UserError(f"--variant {name}: given twice")
        out[name] = parse_assignments(group[1:], f"--variant {name}")
    return out


SPEC_KEYS = ("variants", "baseline", "seeds", "set", "model", "dataset")


def load_spec(path: str) -> Dict:
    """Read a ``--variants`` yaml (see the module docstring) into ``{'variants': {name:
    overrides}, ...}``; a malformed file is a :class:`DataError` naming it."""
    import yaml

    if not os.path.isfile(path):
        raise DataError(f"--variants: file {path} not found")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise DataError(f"--variants: {path} is not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"--variants: {path} must be a mapping {{NAME: {{KEY: VALUE}}}} or have "
                        f"a 'variants:' mapping")
    spec = dict(data) if "variants" in data else {"variants": data}
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise DataError(f"--variants: {path} has unknown top-level key(s) {unknown}; "
                        f"accepted: {', '.join(SPEC_KEYS)}")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DataError(f"--variants: {path}: 'variants' must be a non-empty mapping NAME: {{KEY: VALUE}}")
    clean = {}
    for name, overrides in variants.items():
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise DataError(f"--variants: {path}: variant {name!r} must map to {{KEY: VALUE}}, "
                            f"got {overrides!r}")
        clean[_check_name(str(name), f"--variants {path}")] = dict(overrides)
    spec["variants"] = clean
    if spec.get("set") is not None and not isinstance(spec["set"], dict):
        raise DataError(f"--variants: {path}: 'set' must be a mapping KEY: VALUE")
    return spec


def resolve_variants(model: str, dataset: str, variants: Dict[str, Dict], common: Dict,
                     data_path: Optional[str], pin_grid: bool) -> Dict[str, Dict]:
    """Validate every variant against its model's layered config and build its overrides.

    Returns ``{name: {'model', 'overrides', 'grid'}}``: ``overrides`` are the config_dict of
    its runs without seed / paths, ``grid`` the number of combinations per seed.
    """
    from mmrec_plugin.host.config import Config, expand_grid

    _check_reserved(common, "--set")
    base = {"data_path": data_path} if data_path else {}
    known_by_model: Dict[str, frozenset] = {}
    plans: Dict[str, Dict] = {}
    for name, given in variants.items():
        given = dict(given)
        _check_reserved(given, f"variant {name}")
        vmodel = str(given.pop("model", model))
        if vmodel not in known_by_model:
            known_by_model[vmodel] = Config(vmodel, dataset, config_dict=dict(base)).layered_keys
        known = known_by_model[vmodel]
        for key in given:
            if key not in known and key != "hyper_parameters":
                raise ConfigError(f"variant {name}: {vmodel} on {dataset} has no config key "
                                  f"'{key}'{did_you_mean(key, known)}")
        overrides = {k: v for k, v in common.items() if k in known or k == "hyper_parameters"}
        dropped = sorted(set(common) - set(overrides))
        if dropped:
            logger.info("variant %s: %s does not know --set %s; not applied", name, vmodel,
                        ", ".join(dropped))
        overrides.update(given)
        try:
            config = Config(vmodel, dataset, config_dict={**base, **overrides})
        except UserError as exc:
            raise type(exc)(f"variant {name}: {exc}") from None
        if pin_grid:
            for key in config["hyper_parameters"]:
                if key != "seed" and key not in overrides and isinstance(config[key], list):
                    overrides[key] = [config[key][0]]
            config = Config(vmodel, dataset, config_dict={**base, **overrides})
        n_grid = len(expand_grid(config)) // max(1, len(config["seed"]))
        plans[name] = {"model": config["model"], "overrides": overrides, "grid": n_grid}
    unknown = [k for k in common if k != "hyper_parameters"
               and not any(k in known for known in known_by_model.values())]
    if unknown:
        allk = frozenset().union(*known_by_model.values())
        raise ConfigError(f"--set: no variant's model knows key '{unknown[0]}'"
                          f"{did_you_mean(unknown[0], allk)}")
    return plans


# =============================================================================== runs
def run_dir(root: str, variant: str, seed: int) -> str:
    return os.path.join(root, variant, f"seed{seed}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def try_lock(folder: str) -> bool:
    """Claim a run folder (``O_EXCL`` lock file holding ``host pid``); a lock left by a dead
    process on this host is taken over. False when another live process holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as fh:
                    host, pid = fh.read().split()
                stale = host == socket.gethostname() and not _pid_alive(int(pid))
            except (OSError, ValueError):
                stale = False  # being written right now, or unreadable: leave it
            if not stale:
                return False
            logger.info("taking over the stale lock %s", path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        return True
    return False


def unlock(folder: str) -> None:
    try:
        os.unlink(os.path.join(folder, LOCK_NAME))
    except FileNotFoundError:
        pass


def _default_runner(model: str, dataset: str, config_dict: Dict) -> None:
    from mmrec_plugin.host.quick_start import quick_start

    quick_start(model, dataset, config_dict=config_dict, save_model=True)


def execute_runs(plans: Dict[str, Dict], dataset: str, seeds: Sequence[int], root: str,
                 data_path: Optional[str],
                 runner: Optional[Callable[[str, str, Dict], None]] = None) -> List[str]:
    """Run every (variant, seed) not held by another process; returns the skipped run
    labels (``variant/seedS``) that another process was running."""
    runner = runner or _default_runner
    busy = []
    todo = [(v, s) for v in plans for s in seeds]
    for j, (variant, seed) in enumerate(todo, 1):
        folder = run_dir(root, variant, seed)
        if not try_lock(folder):
            logger.info("run %d/%d: %s seed %d is being run by another process; skipped",
                        j, len(todo), variant, seed)
            busy.append(f"{variant}/seed{seed}")
            continue
        try:
            logger.info("run %d/%d: variant %s, seed %d -> %s", j, len(todo), variant, seed, folder)
            cfg = dict(plans[variant]["overrides"])
            cfg.update({"seed": [int(seed)], "results_dir": folder})
            if data_path:
                cfg["data_path"] = data_path
            runner(plans[variant]["model"], dataset, cfg)
        finally:
            unlock(folder)
    return busy


def find_summary(folder: str, model: str, dataset: str) -> Optional[str]:
    """The grid summary ``<folder>/<MODEL>-<DATASET>.json`` of a run, or None."""
    path = os.path.join(folder, f"{model}-{dataset}.json")
    if os.path.isfile(path):
        return path
    hits = glob.glob(os.path.join(glob.escape(folder), f"*-{glob.escape(dataset)}.json"))
    return hits[0] if len(hits) == 1 else None


# =============================================================================== per user
class _Splits:
    """RecDataset splits cached by the keys that decide them (one load per dataset)."""

    KEYS = ("data_path", "dataset", "inter_file_name", "field_separator", "USER_ID_FIELD",
            "ITEM_ID_FIELD", "inter_splitting_label")

    def __init__(self):
        self._cache: Dict[str, Tuple] = {}

    def get(self, config):
        from mmrec_plugin.host.dataset import RecDataset

        key = json.dumps([str(config.get(k)) for k in self.KEYS])
        if key not in self._cache:
            self._cache[key] = tuple(RecDataset(config).split())
        return self._cache[key]


def _load_weights(path: str) -> Dict:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read the saved model {path} (weights only): {exc}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise DataError(f"{path}: expected a dict with 'state_dict' and 'config'")
    return saved


_NOT_FROM_SAVED = ("device", "data_path", "results_dir", "hyper_parameters", "model", "dataset")


def per_user_test(summary_path: str, combo: Dict, data_path: Optional[str] = None,
                  splits: Optional[_Splits] = None) -> Dict[str, np.ndarray]:
    """Per-user test metrics of a combination's saved best-valid model, cached next to it.

    Returns ``{'users': int64[N], '<metric>@<K>': float64[N], ...}`` (the config's metrics
    and cut-offs), users in increasing id order.
    """
    from mmrec_plugin.utils import atomic_path

    cache = os.path.join(os.path.dirname(os.path.abspath(summary_path)),
                         f"peruser-{combo.get('id')}-test.npz")
    if os.path.isfile(cache):
        try:
            with np.load(cache) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # a damaged cache is recomputed
            logger.warning("per-user cache %s unreadable (%s); recomputing", cache, exc)
    out = _evaluate_saved(resolve_model_path(combo, summary_path), combo, data_path, splits or _Splits())
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **out)
    return out


def _evaluate_saved(model_path: str, combo: Dict, data_path: Optional[str],
                    splits: _Splits) -> Dict[str, np.ndarray]:
    import torch

    from mmrec_plugin.host.config import Config
    from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
    from mmrec_plugin.host.evaluator import Evaluator, topk_indices
    from mmrec_plugin.registry import get_model

    saved = _load_weights(model_path)
    saved_cfg = dict(saved.get("config") or combo.get("config") or {})
    model_name, dataset = saved_cfg.get("model"), saved_cfg.get("dataset")
    if not model_name or not dataset:
        raise DataError(f"{model_path}: the saved config names no model/dataset")
    dp = data_path or saved_cfg.get("data_path") or "data/"
    config = Config(model_name, dataset, config_dict={"data_path": dp})
    for key, value in saved_cfg.items():
        if key not in _NOT_FROM_SAVED:
            config[key] = value
    train_ds, _valid_ds, test_ds = splits.get(config)
    train_loader = TrainDataLoader(config, train_ds, batch_size=config["train_batch_size"], shuffle=False)
    test_loader = EvalDataLoader(config, test_ds, additional_dataset=train_ds,
                                 batch_size=config["eval_batch_size"])
    model = get_model(model_name)(config, train_loader).to(config["device"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{model_path} does not fit {model_name} built from its config: {exc}") from None
    evaluator = Evaluator(config)
    model.eval()
    tops = []
    with torch.no_grad():
        for batch in test_loader:  # blocks of users, as the trainer ranks them
            scores = model.full_sort_predict(batch)
            scores[batch[1][0], batch[1][1]] = -1e10
            tops.append(topk_indices(scores, min(evaluator.max_k, scores.shape[1])).cpu())
    out = evaluator.evaluate_per_user(torch.cat(tops, dim=0), test_loader)
    out["users"] = np.asarray(test_loader.eval_users, dtype=np.int64)
    return out


# =============================================================================== collect
def collect(plans: Dict[str, Dict], dataset: str, seeds: Sequence[int], root: str,
            data_path: Optional[str], paired_metrics: Sequence[str]) -> Dict[str, Dict]:
    """Per variant and seed: the selected combination and its per-user test metrics.

    Returns ``{variant: {seed: run dict}}``; a run not finished is absent.
    """
    splits = _Splits()
    out: Dict[str, Dict] = {}
    for variant, plan in plans.items():
        out[variant] = {}
        for seed in seeds:
            folder = run_dir(root, variant, seed)
            path = find_summary(folder, plan["model"], dataset)
            if path is None:
                continue
            with open(path) as fh:
                summary = json.load(fh)
            best = summary.get("best")
            if not best or not summary.get("complete", True):
                continue
            per_user = per_user_test(path, best, data_path, splits)
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


def analyse(runs: Dict[str, Dict], baseline: str, metrics: Sequence[str], valid_metric: str,
            paired_metrics: Sequence[str], n_boot: int, boot_seed: int) -> Dict:
    """Mean +- sd per variant and the paired tests of each variant against ``baseline``."""
    summary = {}
    for variant, by_seed in runs.items():
        row = {f"test {m}": mean_sd([(r["test"] or {}).get(m) for r in by_seed.values()])
               for m in metrics}
        row[f"valid {valid_metric}"] = mean_sd([(r["valid"] or {}).get(valid_metric)
                                                for r in by_seed.values()])
        row["best_epoch"] = mean_sd([r["best_epoch"] for r in by_seed.values()])
        summary[variant] = row
    paired: Dict[str, Dict] = {}
    base_runs = runs.get(baseline, {})
    for variant, by_seed in runs.items():
        if variant == baseline:
            continue
        common = sorted(set(by_seed) & set(base_runs))
        if not common:
            continue
        paired[variant] = {"seeds": common}
        for m in paired_metrics:
            vs, bs, per_seed = [], [], []
            for s in common:
                pv, pb = by_seed[s]["per_user"], base_runs[s]["per_user"]
                if not np.array_equal(pv["users"], pb["users"]):
                    raise DataError(f"{variant}/seed{s} and {baseline}/seed{s} were tested on "
                                    "different users: a variant must not change the data split")
                vs.append(pv[m])
                bs.append(pb[m])
                per_seed.append(float(pv[m].mean() - pb[m].mean()))
            res = paired_test(np.mean(vs, axis=0), np.mean(bs, axis=0), n_boot, boot_seed)
            res["per_seed_delta"] = dict(zip([str(s) for s in common], per_seed))
            res["seeds_won"] = int(sum(d > 0 for d in per_seed))
            paired[variant][m] = res
    return {"summary": summary, "paired": paired}


# =============================================================================== output
def _pm(stat: Dict, digits: int = 4) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("sd") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def _p(value, n_boot: Optional[int] = None) -> str:
    if value is None:
        return "-"
    if n_boot and value == 0:
        return f"< {1.0 / n_boot:.1e}"  # no resample crossed 0
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def _pct(value, ci=None) -> str:
    if value is None:
        return "-"
    text = f"{value:+.1f}%"
    return text + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def markdown(result: Dict) -> str:
    from mmrec_plugin.analysis.report import md_table

    baseline = result["baseline"]
    metrics, vm = result["metrics"], result["valid_metric"]
    lines = [f"# Compare on {result['dataset']}: {len(result['variants'])} variants x seeds "
             f"{', '.join(map(str, result['seeds']))}", ""]
    lines.append("Test metrics at the best-valid epoch of each run's selected combination, "
                 "mean ± sd over the finished seeds (sample sd).")
    lines.append("")
    header = ["variant", "model", "seeds", f"valid {vm}"] + [f"test {m}" for m in metrics] + ["best epoch"]
    rows = []
    for name, info in result["variants"].items():
        s = result["summary"].get(name, {})
        label = f"{name} (baseline)" if name == baseline else name
        n = len(info["runs"])
        rows.append([label, info["model"], f"{n}/{len(result['seeds'])}", _pm(s.get(f"valid {vm}"))]
                    + [_pm(s.get(f"test {m}")) for m in metrics] + [_pm(s.get("best_epoch"), 1)])
    lines.append(md_table(header, rows).rstrip("\n"))
    if result["paired"]:
        lines += ["", f"Paired test against `{baseline}`: per test user, each metric averaged over "
                      f"the seeds both finished; Δ = variant - baseline with a 95% bootstrap CI over "
                      f"users ({result['n_boot']} resamples), Wilcoxon signed-rank p (two-sided).", ""]
        header = ["variant", "metric", "seeds", "baseline", "variant mean", "Δ [95% CI]",
                  "Δ% [95% CI]", "Wilcoxon p", "bootstrap p", "seeds won"]
        rows = []
        for name, per in result["paired"].items():
            for m in result["paired_metrics"]:
                r = per.get(m)
                if not r:
                    continue
                ci = r["delta_ci"]
                rows.append([name, m, len(per["seeds"]), f"{r['baseline']:.4f}", f"{r['variant']:.4f}",
                             f"{r['delta']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]",
                             _pct(r["rel_pct"], r["rel_pct_ci"]), _p(r["wilcoxon"]["p_value"]),
                             _p(r["p_boot"], r["n_boot"]), f"{r['seeds_won']}/{len(per['seeds'])}"])
        lines.append(md_table(header, rows).rstrip("\n"))
    lines += ["", "Runs (selected combination per variant and seed):", ""]
    header = ["variant", "seed", "params", "best epoch", f"valid {vm}"] + [f"test {m}" for m in metrics]
    rows = []
    for name, info in result["variants"].items():
        for seed, run in info["runs"].items():
            params = ", ".join(f"{k}={v}" for k, v in (run.get("params") or {}).items() if k != "seed")
            rows.append([name, seed, params or "-", run.get("best_epoch"),
                         _fmt((run.get("valid") or {}).get(vm))]
                        + [_fmt((run.get("test") or {}).get(m)) for m in metrics])
    lines.append(md_table(header, rows).rstrip("\n"))
    if result["missing"]:
        lines += ["", f"Not finished (rerun the command to complete): {', '.join(result['missing'])}"]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def plots(result: Dict, out_dir: str, notes: List[str]) -> List[str]:
    """``compare_metrics.png`` and ``compare_paired.png``; a note without matplotlib."""
    from mmrec_plugin.analysis.report import PLOT_HINT, _matplotlib, _save_figure_atomic

    plt = _matplotlib()
    if plt is None:
        notes.append(PLOT_HINT)
        return []
    written = []
    names = [n for n in result["variants"] if result["variants"][n]["runs"]]
    metrics = list(result["metrics"])
    if names:
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(metrics) * max(1, len(names)) / 2, 3.6))
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            runs = result["variants"][name]["runs"]
            xs = np.arange(len(metrics)) + (j - (len(names) - 1) / 2) * width
            stats = [result["summary"][name][f"test {m}"] for m in metrics]
            means = [s["mean"] if s["mean"] is not None else np.nan for s in stats]
            sds = [s["sd"] or 0.0 for s in stats]
            ax.bar(xs, means, width, yerr=sds, capsize=3, label=name, alpha=0.8)
            for x, m in zip(xs, metrics):
                vals = [(r["test"] or {}).get(m) for r in runs.values()]
                vals = [v for v in vals if v is not None]
                ax.plot([x] * len(vals), vals, "k.", ms=5, zorder=3)
        ax.set_xticks(np.arange(len(metrics)))
        ax.set_xticklabels([f"test {m}" for m in metrics])
        ax.set_ylabel("mean ± sd over seeds")
        ax.set_title(f"{result['dataset']}: seeds {', '.join(map(str, result['seeds']))}")
        ax.legend(fontsize=8)
        written.append(_save_figure_atomic(fig, os.path.join(out_dir, "compare_metrics.png")))
        plt.close(fig)
    rows = [(name, m, r) for name, per in result["paired"].items()
            for m in result["paired_metrics"] if (r := per.get(m)) and r["rel_pct"] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 0.9 + 0.35 * len(rows)))
        ys = np.arange(len(rows))[::-1]
        for y, (name, m, r) in zip(ys, rows):
            ci = r["rel_pct_ci"] or [r["rel_pct"], r["rel_pct"]]
            ax.errorbar(r["rel_pct"], y, xerr=[[r["rel_pct"] - ci[0]], [ci[1] - r["rel_pct"]]],
                        fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{name} {m}" for name, m, _ in rows])
        ax.set_xlabel(f"change vs {result['baseline']} (%), 95% bootstrap CI over users")
        written.append(_save_figure_atomic(fig, os.path.join(out_dir, "compare_paired.png")))
        plt.close(fig)
    return written


def _jsonable_runs(runs: Dict[str, Dict]) -> Dict:
    return {v: {str(s): {k: val for k, val in r.items() if k != "per_user"} for s, r in by.items()}
            for v, by in runs.items()}


def build_result(plans, runs, analysis, *, dataset, seeds, baseline, metrics, valid_metric,
                 paired_metrics, n_boot, boot_seed, missing, command) -> Dict:
    jruns = _jsonable_runs(runs)
    return {
        "command": command, "dataset": dataset, "seeds": list(seeds), "baseline": baseline,
        "metrics": list(metrics), "valid_metric": valid_metric,
        "paired_metrics": list(paired_metrics), "n_boot": n_boot, "bootstrap_seed": boot_seed,
        "variants": {v: {"model": p["model"], "overrides": p["overrides"], "grid": p["grid"],
                         "runs": jruns.get(v, {})} for v, p in plans.items()},
        "summary": analysis["summary"], "paired": analysis["paired"], "missing": missing,
    }


# =============================================================================== CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", default=None, help="dataset name (required here or in --variants)")
    parser.add_argument("-m", "--model", default=None, help="model of variants without model= (default BRMRS)")
    parser.add_argument("--data-path", default=None, metavar="DIR", help="data folder")
    parser.add_argument("--results-dir", default="results/compare", metavar="DIR",
                        help="runs go to <DIR>/<variant>/seed<S>/ (default results/compare)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help=f"seeds (default {' '.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--variant", action="append", nargs="+", default=[], metavar="NAME [KEY=VALUE",
                        help="a variant: its name, then config overrides (YAML values); repeatable")
    parser.add_argument("--variants", default=None, metavar="FILE.yaml",
                        help="variants from a yaml file ({NAME: {KEY: VALUE}} or with 'variants:')")
    parser.add_argument("--baseline", default=None, metavar="NAME",
                        help="the variant the others are tested against (default: the first)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every variant (YAML value), e.g. --set epochs=60")
    parser.add_argument("--pin-grid", action="store_true",
                        help="pin the grid keys the variant leaves open to their first value")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="M@K",
                        help="test metrics of the table (default: %(default)s)")
    parser.add_argument("--paired-metrics", nargs="+", default=list(PAIRED_METRICS), metavar="M@K",
                        help="per-user paired test metrics (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=10000, metavar="N",
                        help="bootstrap resamples of users (default 10000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, metavar="S")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="processes running runs at once (default 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the finished runs, train nothing")
    parser.add_argument("--out", default=None, metavar="DIR", help="report folder (default: --results-dir)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def _settings(args) -> Dict:
    spec = load_spec(args.variants) if args.variants else {"variants": {}}
    variants = dict(spec["variants"])
    for name, overrides in parse_variant_options(args.variant).items():
        if name in variants:
            raise UserError(f"--variant {name}: also defined in {args.variants}")
        variants[name] = overrides
    if not variants:
        raise UserError("no variants: give --variant NAME [KEY=VALUE ...] (at least one) or --variants FILE.yaml")
    seeds = args.seeds or spec.get("seeds") or list(DEFAULT_SEEDS)
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be distinct integers, got {seeds!r}")
    baseline = args.baseline or spec.get("baseline") or next(iter(variants))
    if baseline not in variants:
        raise UserError(f"--baseline {baseline!r} is not a variant{did_you_mean(str(baseline), variants)}; "
                        f"variants: {', '.join(variants)}")
    dataset = args.dataset or spec.get("dataset")
    if not dataset:
        raise UserError("no dataset: give -d DATASET")
    common = dict(spec.get("set") or {})
    common.update(parse_assignments(args.set, "--set"))
    for opt, names in (("--metrics", args.metrics), ("--paired-metrics", args.paired_metrics)):
        for m in names:
            if not re.match(r"^(recall|ndcg|precision|map)@\d+$", m.lower()):
                raise UserError(f"{opt}: {m!r} is not <metric>@<K> with metric in recall, ndcg, precision, map")
    if args.bootstrap < 100:
        raise UserError(f"--bootstrap needs at least 100 resamples, got {args.bootstrap}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    return {"variants": variants, "seeds": [int(s) for s in seeds], "baseline": baseline,
            "dataset": str(dataset), "common": common,
            "model": args.model or spec.get("model") or "BRMRS"}


def command_line(args) -> List[str]:
    """The ``mmrec-plugin compare`` command line of ``args`` (for the JSON and the workers)."""
    argv = ["compare"]
    for flag, value in (("-d", args.dataset), ("-m", args.model), ("--data-path", args.data_path),
                        ("--results-dir", args.results_dir), ("--variants", args.variants),
                        ("--baseline", args.baseline), ("--out", args.out)):
        if value is not None:
            argv += [flag, str(value)]
    if args.seeds:
        argv += ["--seeds"] + [str(s) for s in args.seeds]
    for group in args.variant:
        argv += ["--variant"] + list(group)
    for item in args.set:
        argv += ["--set", item]
    if args.pin_grid:
        argv.append("--pin-grid")
    argv += ["--metrics"] + list(args.metrics) + ["--paired-metrics"] + list(args.paired_metrics)
    argv += ["--bootstrap", str(args.bootstrap), "--bootstrap-seed", str(args.bootstrap_seed)]
    return argv


def _spawn_workers(args, n: int) -> List[subprocess.Popen]:
    """``n`` processes of the same command that only run (``--worker``, no report)."""
    argv = [sys.executable, "-m", "mmrec_plugin.cli"] + command_line(args) + ["--worker"]
    if getattr(args, "quiet", False):
        argv.append("-q")
    logger.info("starting %d worker process(es)", n)
    return [subprocess.Popen(argv) for _ in range(n)]


def run(args) -> int:
    from mmrec_plugin.analysis.report import write_text_atomic
    from mmrec_plugin.host.config import Config, valid_metric_key
    from mmrec_plugin.host.quick_start import write_json_atomic

    st = _settings(args)
    metrics = [m.lower() for m in args.metrics]
    paired_metrics = [m.lower() for m in args.paired_metrics]
    plans = resolve_variants(st["model"], st["dataset"], st["variants"], st["common"],
                             args.data_path, args.pin_grid)
    root = args.results_dir
    for name, plan in plans.items():
        logger.info("variant %s: %s, %d combination(s) per seed, overrides %s",
                    name, plan["model"], plan["grid"], plan["overrides"])
    busy: List[str] = []
    if not args.report_only:
        workers = _spawn_workers(args, args.jobs - 1) if args.jobs > 1 and not args.worker else []
        try:
            busy = execute_runs(plans, st["dataset"], st["seeds"], root, args.data_path)
        finally:
            codes = [p.wait() for p in workers]
        if any(codes):
            logger.error("a worker process failed (exit status %s)", codes)
        if args.worker:
            return 0
    base_plan = plans[st["baseline"]]
    vm = valid_metric_key(Config(base_plan["model"], st["dataset"],
                                 config_dict={**base_plan["overrides"],
                                              **({"data_path": args.data_path} if args.data_path else {})}))
    runs = collect(plans, st["dataset"], st["seeds"], root, args.data_path, paired_metrics)
    missing = [f"{v}/seed{s}" for v in plans for s in st["seeds"] if s not in runs.get(v, {})]
    analysis = analyse(runs, st["baseline"], metrics, vm, paired_metrics, args.bootstrap,
                       args.bootstrap_seed)
    result = build_result(plans, runs, analysis, dataset=st["dataset"], seeds=st["seeds"],
                          baseline=st["baseline"], metrics=metrics, valid_metric=vm,
                          paired_metrics=paired_metrics, n_boot=args.bootstrap,
                          boot_seed=args.bootstrap_seed, missing=missing,
                          command=["mmrec-plugin"] + command_line(args))
    out = args.out or root
    written = [os.path.join(out, "compare.json")]
    write_json_atomic(written[0], result)
    text = markdown(result)
    written.append(write_text_atomic(os.path.join(out, "compare.md"), text))
    notes: List[str] = []
    written += plots(result, out, notes)
    print(text)
    for path in written:
        print(f"written: {path}")
    for note in notes:
        print(f"note: {note}")
    if missing:
        print(f"note: {len(missing)} run(s) not finished"
              + (f" ({len(busy)} running in another process)" if busy else "")
              + "; rerun the same command to complete the report")
    return 0
