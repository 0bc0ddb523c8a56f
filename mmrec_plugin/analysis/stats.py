"""Statistics of a comparison: mean +- sd over seeds and the paired per-user tests.

Per variant ``v`` and paired metric, against baseline ``b``, over the seeds both finished:
each test user's value averaged over those seeds, ``v_u`` and ``b_u`` (pairs by seed and
user; every run of a dataset has the same test users), ``d_u = v_u - b_u``. Then

- ``delta`` = mean of ``d_u`` (= the difference of the table's means over those seeds) and
  ``rel_pct`` = ``100 * delta / mean(b_u)``;
- a paired bootstrap over users (``n_boot`` resamples, seeded): the same resampled users
  for both, percentile 95% CIs of ``delta`` and of ``rel_pct``, and ``p_boot`` = two-sided
  ``2 * min(P*(delta <= 0), P*(delta >= 0))``;
- the Wilcoxon signed-rank test on ``d_u`` (``scipy.stats.wilcoxon``, zero differences
  dropped), two-sided p-value;
- per seed: the difference of the two runs' means, and how many seeds the variant won.

The user is the resampling unit, so the CIs cover user sampling for these seeds; the seed-to-
seed spread is the tables' sd and the per-seed differences.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from mmrec_plugin.errors import DataError

__all__ = ["mean_sd", "bootstrap_sums", "wilcoxon_test", "paired_test", "analyse"]

_BOOT_BLOCK = 1 << 22  # resampled user indices drawn per block


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
