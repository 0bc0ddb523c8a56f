"""Reports: a grid-search results file -> markdown tables and PNG plots.

Input: the host's JSON summary ``<results_dir>/<MODEL>-<DATASET>.json``
(``{"model", "dataset", "hyper_parameters", "combinations": [...], "best", "selected_by"}``,
each combination with ``params``, ``valid``, ``test``, ``best_epoch``, ``status`` and, for a
model with ``branch_scores``, ``analysis`` from :func:`mmrec_plugin.analysis.subsets.analyze_model`),
or the summary of :func:`mmrec_plugin.analysis.studies.run_gamma_sweep` (``gamma_sweep.json``).

Output in ``out_dir`` (every file written atomically: temp file + ``os.replace``):

- ``report.md``: one row per combination in three tables: metrics (params, best epoch,
  status, valid and test metrics), subset analysis (the six classes' and the seed subsets'
  ratios at the analysis cutoff K), per-type Recall@K (synthetic data); the selected best is
  marked ``*``.
- PNG plots (only when matplotlib is importable; it is imported lazily): for each swept key
  (a ``hyper_parameters`` key taking more than one value) ``sweep_<key>.png`` with the
  selection metric (valid and test) against the key, one line per setting of the other swept
  keys, the seed-subset ratios against the key at the other keys' first values (Fig. 1
  style) and, at the same settings, the six-way partition as stacked bars (all_fail is the
  rest up to 1);
  ``per_type_recall.png`` (bars per type, one bar per combination) when the
  combinations carry per-type recall. Without matplotlib the tables are written and the
  returned notes say how to get the plots (``pip install matplotlib`` or the ``plot`` extra).
  For a gamma sweep: ``gamma_sweep.md`` and ``gamma_sweep.png`` (per-type recall against
  gamma_s, one line style per model variant).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmrec_plugin import limits
from mmrec_plugin.analysis.subsets import CLASSES, PAIR_TYPES, SEED_SUBSETS
from mmrec_plugin.errors import UserError
from mmrec_plugin.host.results import check_results, load_results  # noqa: F401 (re-exported)
from mmrec_plugin.utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

PLOT_HINT = ("PNG plots need matplotlib: pip install matplotlib "
             "(or install the plugin with its plot extra: pip install 'mmrec-plugin[plot]')")


# ----------------------------------------------------------------------------- io
def write_text_atomic(path: str, text: str, what: str = "output file") -> str:
    """Write ``text`` to ``path`` atomically (:func:`mmrec_plugin.utils.atomic_write_text`):
    a ``path`` that is a folder, or whose folder cannot be created, and a failed write (a
    full disk, no permission) are one UserError naming the path; nothing half-written stays."""
    limits.check_output_file(path, what)
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"{what} {path} could not be written ({exc.strerror or exc}); "
                        "nothing was written") from None


def _save_figure_atomic(fig, path: str) -> str:
    limits.check_output_file(path, "plot file")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise UserError(f"plot file {path} could not be written ({exc.strerror or exc})") from None
    return path


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


# ----------------------------------------------------------------------- formatting
def fmt(value) -> str:
    """Cell text: floats with 4 decimals, None/missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _metric_order(name: str) -> Tuple:
    base, _, k = name.partition("@")
    order = {"recall": 0, "ndcg": 1, "precision": 2, "map": 3}
    return (order.get(base.lower(), 9), base, int(k) if k.isdigit() else 0)


def _metric_names(combos: Sequence[Dict], split: str) -> List[str]:
    names = set()
    for c in combos:
        names.update((c.get(split) or {}).keys())
    return sorted(names, key=_metric_order)


def _param_keys(results: Dict) -> List[str]:
    keys = list(results.get("hyper_parameters") or [])
    for c in results["combinations"]:
        for k in (c.get("params") or {}):
            if k not in keys:
                keys.append(k)
    return keys


def swept_keys(results: Dict) -> List[str]:
    """Parameter keys that take more than one value over the combinations."""
    out = []
    for k in _param_keys(results):
        values = {json.dumps((c.get("params") or {}).get(k), sort_keys=True) for c in results["combinations"]}
        if len(values) > 1:
            out.append(k)
    return out


def selection_metric(results: Dict) -> str:
    """The metric key the grid selected by (``selected_by`` may read ``valid recall@20``)."""
    sel = str(results.get("selected_by") or "recall@20").strip()
    return sel[len("valid "):] if sel.lower().startswith("valid ") else sel


def _is_best(results: Dict, combo: Dict) -> bool:
    best = results.get("best") or {}
    return best.get("id") is not None and best.get("id") == combo.get("id")


# ----------------------------------------------------------------------- tables
def tables_markdown(results: Dict) -> str:
    """The markdown of ``report.md`` for a grid-search results dict."""
    combos = results["combinations"]
    keys = _param_keys(results)
    sel = selection_metric(results)
    best = results.get("best") or {}
    out = [f"# {results.get('model', '?')} on {results.get('dataset', '?')}\n",
           f"{len(combos)} combination(s); best by validation {sel}: "
           f"{fmt(best.get('id'))} (marked *).\n",
           "\n## Metrics (valid: best-valid epoch; test: at that epoch)\n\n"]
    vnames, tnames = _metric_names(combos, "valid"), _metric_names(combos, "test")
    header = ["id"] + keys + ["epoch", "status"] + [f"valid {m}" for m in vnames] + [f"test {m}" for m in tnames]
    rows = []
    for c in combos:
        p, v, t = c.get("params") or {}, c.get("valid") or {}, c.get("test") or {}
        rows.append([_cid(results, c)] + [p.get(k) for k in keys] + [c.get("best_epoch"), c.get("status")]
                    + [v.get(m) for m in vnames] + [t.get(m) for m in tnames])
    out.append(md_table(header, rows))

    analysed = [c for c in combos if c.get("analysis")]
    if analysed:
        k = analysed[0]["analysis"].get("k")
        out.append(f"\n## Subset analysis (ratios of test pairs, K = {fmt(k)})\n\n")
        header = ["id"] + keys + ["pairs"] + list(CLASSES) + list(SEED_SUBSETS)
        rows = []
        for c in analysed:
            a, p = c["analysis"], c.get("params") or {}
            part, seeds = a.get("partition") or {}, a.get("seed_subsets") or {}
            rows.append([_cid(results, c)] + [p.get(key) for key in keys] + [a.get("n_pairs")]
                        + [(part.get(n) or {}).get("ratio") for n in CLASSES]
                        + [(seeds.get(n) or {}).get("ratio") for n in SEED_SUBSETS])
        out.append(md_table(header, rows))
    typed = [c for c in analysed if c["analysis"].get("per_type_recall")]
    if typed:
        types = _type_names(c["analysis"]["per_type_recall"] for c in typed)
        out.append(f"\n## Recall@{fmt(typed[0]['analysis'].get('k'))} per ground-truth pair type "
                   "(fused branch; hits / pairs of that type)\n\n")
        header = ["id"] + keys + [f"{t} (n)" for t in types]
        rows = []
        for c in typed:
            ptr, p = c["analysis"]["per_type_recall"], c.get("params") or {}
            rows.append([_cid(results, c)] + [p.get(key) for key in keys]
                        + [_recall_cell(ptr.get(t)) for t in types])
        out.append(md_table(header, rows))
    return "".join(out)


def _cid(results, c) -> str:
    return f"{c.get('id')}{' *' if _is_best(results, c) else ''}"


def _type_names(dicts: Iterable[Dict]) -> List[str]:
    names = list(PAIR_TYPES)
    for d in dicts:
        for t in d:
            if t not in names:
                names.append(t)
    return names


def _recall_cell(entry: Optional[Dict]) -> str:
    if not entry or entry.get("recall") is None:
        return "-"
    return f"{entry['recall']:.4f} ({entry.get('n_pairs', '?')})"


# ----------------------------------------------------------------------- plots
def _sort_values(values: List) -> List:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _plot_sweeps(plt, results: Dict, out_dir: str) -> List[str]:
    combos = [dict(c, params=c.get("params") or {}) for c in results["combinations"]
              if c.get("valid")]
    sel = selection_metric(results)
    written = []
    swept = swept_keys({**results, "combinations": combos}) if combos else []
    for key in swept:
        others = [k for k in swept if k != key]
        xs = _sort_values(list({json.dumps(c["params"].get(key)): c["params"].get(key) for c in combos}.values()))
        numeric = _numeric(xs)
        pos = {json.dumps(x): (x if numeric else j) for j, x in enumerate(xs)}
        groups: Dict[str, List[Dict]] = {}
        for c in combos:
            label = ", ".join(f"{k}={fmt(c['params'].get(k))}" for k in others)
            groups.setdefault(label, []).append(c)
        fig, axes = plt.subplots(1, 3, figsize=(16, 4))
        ax = axes[0]
        for label, cs in groups.items():
            cs = sorted(cs, key=lambda c: xs.index(c["params"].get(key)))
            x = [pos[json.dumps(c["params"].get(key))] for c in cs]
            for split, style in (("valid", "-o"), ("test", "--s")):
                ax.plot(x, [(c.get(split) or {}).get(sel) for c in cs], style,
                        label=f"{split}{' ' + label if label else ''}")
        ax.set_xlabel(key)
        ax.set_ylabel(sel)
        ax.set_title(f"{sel} against {key}")
        ax.legend(fontsize=7)
        ax = axes[1]
        first = {k: _sort_values(list({json.dumps(c["params"].get(k)): c["params"].get(k)
                                       for c in combos}.values()))[0] for k in others}
        sl = [c for c in combos if c.get("analysis")
              and all(c["params"].get(k) == v for k, v in first.items())]
        sl.sort(key=lambda c: xs.index(c["params"].get(key)))
        if sl:
            x = [pos[json.dumps(c["params"].get(key))] for c in sl]
            for name in SEED_SUBSETS:
                ax.plot(x, [((c["analysis"].get("seed_subsets") or {}).get(name) or {}).get("ratio")
                            for c in sl], "-o", label=f"R({name})")
            k = sl[0]["analysis"].get("k")
            where = ", ".join(f"{k2}={fmt(v)}" for k2, v in first.items())
            ax.set_title(f"subset ratios at K={k}" + (f" ({where})" if where else ""), fontsize=9)
            ax.legend(fontsize=7)
        else:
            ax.set_title("no subset analysis recorded")
        ax.set_xlabel(key)
        ax.set_ylabel("ratio of test pairs")
        ax = axes[2]
        if sl:
            # evenly spaced bars (swept values are often 0, 0.1, 1); all_fail, usually the
            # bulk, is the rest up to 1 and is left out so the five others stay readable
            bottom = [0.0] * len(sl)
            slots = list(range(len(sl)))
            for name in CLASSES[:-1]:
                vals = [((c["analysis"].get("partition") or {}).get(name) or {}).get("ratio") or 0.0
                        for c in sl]
                ax.bar(slots, vals, 0.6, bottom=bottom, label=name)
                bottom = [b + v for b, v in zip(bottom, vals)]
            ax.set_xticks(slots)
            ax.set_xticklabels([fmt(c["params"].get(key)) for c in sl])
            ax.set_title(f"six-way partition at K={sl[0]['analysis'].get('k')} "
                         f"(stacked; {CLASSES[-1]} = the rest)", fontsize=9)
            ax.legend(fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel("ratio of test pairs")
        for ax in axes[:2]:
            if not numeric:
                ax.set_xticks(list(range(len(xs))))
                ax.set_xticklabels([fmt(x) for x in xs])
        written.append(_save_figure_atomic(fig, os.path.join(out_dir, f"sweep_{_safe(key)}.png")))
        plt.close(fig)
    return written


def _plot_per_type(plt, bars: List[Tuple[str, Dict]], path: str, k) -> Optional[str]:
    """Grouped bars: x = pair type, one bar per labelled per-type-recall dict."""
    if not bars:
        return None
    types = _type_names(d for _, d in bars)
    types = [t for t in types if any((d.get(t) or {}).get("recall") is not None for _, d in bars)]
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(types) + 0.3 * len(bars)), 4))
    width = 0.8 / len(bars)
    for j, (label, d) in enumerate(bars):
        vals = [((d.get(t) or {}).get("recall") or 0.0) for t in types]
        ax.bar([i + j * width - 0.4 + width / 2 for i in range(len(types))], vals, width, label=label)
    ax.set_xticks(list(range(len(types))))
    ax.set_xticklabels(types)
    ax.set_ylabel(f"Recall@{k}")
    ax.set_title(f"Recall@{k} per ground-truth pair type")
    ax.legend(fontsize=7)
    out = _save_figure_atomic(fig, path)
    plt.close(fig)
    return out


def _safe(name: str) -> str:
    """A file-name part from a parameter key: ASCII letters, digits, '-', '_', at most 80."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "_"
                   for ch in str(name))[:80]


# ----------------------------------------------------------------------- gamma sweep
def gamma_sweep_markdown(summary: Dict) -> str:
    rows_in = summary["rows"]
    k = summary.get("k", 20)
    types = _type_names((r.get("per_type_recall") or {}) for r in rows_in)
    header = ["gamma_s", "dataset", "variant", "valid recall@20", "test recall@20"] + [f"{t} R@{k} (n)" for t in types]
    rows = []
    for r in rows_in:
        ptr = r.get("per_type_recall") or {}
        rows.append([r.get("gamma_s"), r.get("dataset"), r.get("variant"),
                     (r.get("valid") or {}).get("recall@20"), (r.get("test") or {}).get("recall@20")]
                    + [_recall_cell(ptr.get(t)) for t in types])
    return (f"# gamma_s sweep: per-type Recall@{k} of the best (by validation) combination\n\n"
            + md_table(header, rows))


def _plot_gamma(plt, summary: Dict, path: str) -> str:
    k = summary.get("k", 20)
    rows = summary["rows"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    types = [t for t in _type_names((r.get("per_type_recall") or {}) for r in rows)
             if any(((r.get("per_type_recall") or {}).get(t) or {}).get("recall") is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(7, 4))
    styles = ["-o", "--s", ":^", "-.d"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for vi, variant in enumerate(variants):
        rs = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["gamma_s"])
        for ti, t in enumerate(types):
            ax.plot([r["gamma_s"] for r in rs],
                    [((r.get("per_type_recall") or {}).get(t) or {}).get("recall") for r in rs],
                    styles[vi % len(styles)], color=colors[ti % len(colors)], label=f"{variant}: {t}")
    ax.set_xlabel("gamma_s")
    ax.set_ylabel(f"Recall@{k}")
    ax.set_title("per-type recall against gamma_s")
    ax.legend(fontsize=7)
    out = _save_figure_atomic(fig, path)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------- entry points
def report(results_json: str, out_dir: str, notes: Optional[List[str]] = None) -> List[str]:
    """Write the report of one results file into ``out_dir``.

    Args:
        results_json: a grid-search summary or a gamma-sweep summary.
        out_dir: output folder (created).
        notes: when given, messages for the user are appended (e.g. how to get plots).

    Returns:
        The list of written files (markdown first, then PNGs).
    """
    results = load_results(results_json)
    limits.check_output_dir(out_dir, "--out")
    plt = _matplotlib()
    written: List[str] = []
    if "rows" in results and "combinations" not in results:
        written.append(write_text_atomic(os.path.join(out_dir, "gamma_sweep.md"), gamma_sweep_markdown(results)))
        if plt is not None and results["rows"]:
            written.append(_plot_gamma(plt, results, os.path.join(out_dir, "gamma_sweep.png")))
    else:
        written.append(write_text_atomic(os.path.join(out_dir, "report.md"), tables_markdown(results)))
        if plt is not None:
            written += _plot_sweeps(plt, results, out_dir)
            swept = swept_keys(results)
            bars = [(" ".join([str(c.get("id"))] + [f"{k}={fmt((c.get('params') or {}).get(k))}" for k in swept]),
                     c["analysis"]["per_type_recall"]) for c in results["combinations"]
                    if (c.get("analysis") or {}).get("per_type_recall")]
            if bars:
                k = results["combinations"][0].get("analysis", {}).get("k", 20)
                p = _plot_per_type(plt, bars, os.path.join(out_dir, "per_type_recall.png"), k)
                if p:
                    written.append(p)
    if plt is None:
        logger.warning(PLOT_HINT)
        if notes is not None:
            notes.append(PLOT_HINT)
    for path in written:
        logger.info("report: wrote %s", path)
    return written


COMPARE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def compare(results_files: Sequence[str], out_dir: str, labels: Optional[Sequence[str]] = None,
            notes: Optional[List[str]] = None,
            analyses: Optional[Sequence[Optional[Dict]]] = None) -> List[str]:
    """Side by side: the best combination of each results file (e.g. BRMRS vs fused BPR).

    Writes ``comparison.md`` (test Recall/NDCG@10/20, seed-subset ratios, per-type recall of
    each best) and, with matplotlib, ``comparison_per_type_recall.png``. ``analyses[j]``,
    when given and not None, replaces the ``analysis`` of file j's best combination (e.g. a
    fresh ``mmrec-plugin analyze`` result carrying per-type recall).
    """
    limits.check_output_dir(out_dir, "--out")
    labels = list(labels) if labels else [os.path.basename(os.path.dirname(os.path.abspath(p))) or p
                                         for p in results_files]
    bests = []
    for j, (label, path) in enumerate(zip(labels, results_files)):
        best = dict(load_results(path).get("best") or {})
        if analyses is not None and j < len(analyses) and analyses[j] is not None:
            best["analysis"] = analyses[j]
        bests.append((label, best))
    tnames = _metric_names([b for _, b in bests], "test")
    preferred = [m for m in COMPARE_METRICS if m in tnames]
    tnames = preferred or tnames
    rows = []
    for label, b in bests:
        a = b.get("analysis") or {}
        rows.append([label, b.get("id")] + [(b.get("test") or {}).get(m) for m in tnames]
                    + [((a.get("seed_subsets") or {}).get(n) or {}).get("ratio") for n in SEED_SUBSETS]
                    + [_recall_cell((a.get("per_type_recall") or {}).get(t)) for t in PAIR_TYPES])
    header = ["run", "best id"] + [f"test {m}" for m in tnames] + list(SEED_SUBSETS) + [f"{t} (n)" for t in PAIR_TYPES]
    text = "# Comparison of the best combinations\n\n" + md_table(header, rows)
    written = [write_text_atomic(os.path.join(out_dir, "comparison.md"), text)]
    plt = _matplotlib()
    bars = [(label, (b.get("analysis") or {}).get("per_type_recall")) for label, b in bests]
    bars = [(l, d) for l, d in bars if d]
    if plt is not None and bars:
        k = (bests[0][1].get("analysis") or {}).get("k", 20)
        p = _plot_per_type(plt, bars, os.path.join(out_dir, "comparison_per_type_recall.png"), k)
        if p:
            written.append(p)
    elif plt is None and notes is not None:
        notes.append(PLOT_HINT)
    return written
