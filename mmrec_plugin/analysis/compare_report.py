"""The report of ``mmrec-plugin compare``: markdown tables, the JSON document and plots.

Outputs (atomic writes) in ``--out`` (default ``<results-dir>``): ``compare.md`` (the tables,
also printed), ``compare.json`` (everything, with the runs' selected params and paths),
``compare_metrics.png`` (mean +- sd bars, seeds as dots) and ``compare_paired.png`` (relative
change with its 95% CI per variant), the plots only when matplotlib (extra ``plot``) is
importable; otherwise a note.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

__all__ = ["markdown", "plots", "build_result"]


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
