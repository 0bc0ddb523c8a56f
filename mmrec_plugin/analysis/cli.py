"""``mmrec-plugin analyze``, ``mmrec-plugin report`` and ``mmrec-plugin study``.

analyze::

    mmrec-plugin analyze --results results/BRMRS-baby.json [--combination ID|best] [--k 20]
                         [--data-path DIR] [--split test|valid] [--out FILE.json]

Loads the saved best-valid model of one grid-search combination (``model_path`` of the
combination in the results file, ``{'state_dict', 'config'}``), rebuilds it through the
registry and the host's Config / RecDataset / TrainDataLoader, and computes the subset
analysis (:func:`mmrec_plugin.analysis.subsets.analyze_model`) of the chosen split's
(user, target) pairs: the six classes, the seed subsets, and on synthetic data (when
``<data_path>/<dataset>/<dataset>.types`` exists) Recall@K per ground-truth pair type.
Prints a table and writes JSON (default ``<results dir>/analysis-<id>-<split>-k<K>.json``).

report::

    mmrec-plugin report RESULTS.json [RESULTS2.json ...] [--out DIR]

Markdown tables and PNG plots per results file (:func:`mmrec_plugin.analysis.report.report`);
with several files also ``comparison.md`` of their best combinations.

study::

    mmrec-plugin study NAME [-d DATASET] [--results-dir DIR] [--data-path DIR]
                       [--set KEY=VALUE ...] [--print-config] [--no-report]
    mmrec-plugin study gamma_sweep [--gammas 0,0.5,1,2,4] [--out DIR] [--set ...]

Runs a named preset (:mod:`mmrec_plugin.analysis.studies`) as grid searches (resumable),
then writes its report.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

from mmrec_plugin.errors import UserError

from .rerun import analyze_results

logger = logging.getLogger(__name__)


# ============================================================================ analyze
def format_analysis(result: Dict) -> str:
    """The printed table of an analysis dict."""
    from mmrec_plugin.analysis.subsets import CLASSES, SEED_SUBSETS

    k = result.get("k")
    lines = [f"{result.get('model', '')} on {result.get('dataset', '')}, combination "
             f"{result.get('combination', '')}, {result.get('split', 'test')} pairs: "
             f"{result['n_pairs']}, K = {k}", ""]
    lines.append(f"{'class':<18}{'count':>10}{'ratio':>10}")
    for name in CLASSES:
        e = result["partition"][name]
        lines.append(f"{name:<18}{e['count']:>10d}{e['ratio']:>10.4f}")
    lines.append("")
    lines.append(f"{'seed subset':<18}{'count':>10}{'ratio':>10}")
    for name in SEED_SUBSETS:
        e = result["seed_subsets"][name]
        lines.append(f"{name:<18}{e['count']:>10d}{e['ratio']:>10.4f}")
    hr = result.get("branch_hit_rate")
    if hr:
        lines.append("")
        lines.append("hit rate @K per branch: " + ", ".join(f"{m} {hr[m]:.4f}" for m in ("t", "v", "f")))
    ptr = result.get("per_type_recall")
    if ptr:
        lines.append("")
        lines.append(f"{'pair type':<18}{'pairs':>10}{'Recall@' + str(k):>12}")
        for name, e in ptr.items():
            rec = "-" if e["recall"] is None else f"{e['recall']:.4f}"
            lines.append(f"{name:<18}{e['n_pairs']:>10d}{rec:>12}")
    return "\n".join(lines)


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, metavar="FILE.json",
                        help="grid-search results file (<results_dir>/<MODEL>-<DATASET>.json)")
    parser.add_argument("--combination", default="best", metavar="ID|best",
                        help="which combination's saved model (default: best by validation)")
    parser.add_argument("--k", type=int, default=20, help="success cutoff K (default 20)")
    parser.add_argument("--data-path", default=None, metavar="DIR",
                        help="data folder (default: the one the run used)")
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="which held-out pairs to analyse (default test)")
    parser.add_argument("--batch-size", type=int, default=1024, help="users scored per block")
    parser.add_argument("--out", default=None, metavar="FILE.json",
                        help="JSON output (default: <results dir>/analysis-<id>-<split>-k<K>.json)")


def run_analyze(args) -> int:
    from mmrec_plugin.analysis.report import write_text_atomic

    result = analyze_results(args.results, combination=args.combination, k=args.k,
                             data_path=args.data_path, split=args.split, batch_size=args.batch_size)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results)),
                                   f"analysis-{result['combination']}-{args.split}-k{args.k}.json")
    write_text_atomic(out, json.dumps(result, indent=2))
    print(format_analysis(result))
    print(f"\nwritten: {out}")
    return 0


# ============================================================================ report
def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS.json",
                        help="results file(s): a grid-search summary or gamma_sweep.json")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: <folder of the first file>/report)")


def run_report(args) -> int:
    from mmrec_plugin.analysis.report import compare, report

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results[0])), "report")
    notes: List[str] = []
    written: List[str] = []
    if len(args.results) == 1:
        written += report(args.results[0], out, notes=notes)
    else:
        for path in args.results:
            stem = os.path.splitext(os.path.basename(path))[0]
            parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
            written += report(path, os.path.join(out, f"{parent}-{stem}"), notes=notes)
        written += compare(args.results, out, notes=notes)
    for path in written:
        print(f"written: {path}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    return 0


# ============================================================================ study
def _parse_set(items: Sequence[str]) -> Dict:
    from mmrec_plugin.analysis.variants import parse_assignments

    return parse_assignments(items, "--set")


def _parse_gammas(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--gammas expects comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise UserError(f"--gammas needs numbers >= 0, got {text!r}")
    return values


def _typed_analysis(results_path: str, data_path: Optional[str]) -> Optional[Dict]:
    """A fresh analysis of the best combination when the dataset has ground-truth types but
    the grid's record carries no per-type recall; None otherwise."""
    from mmrec_plugin.analysis.report import load_results, write_text_atomic

    results = load_results(results_path)
    best = results.get("best") or {}
    analysis = best.get("analysis") or {}
    if not best or analysis.get("per_type_recall"):
        return None
    cfg = best.get("config") or {}
    folder = os.path.join(data_path or cfg.get("data_path") or "data/", str(results.get("dataset")))
    if not os.path.isfile(os.path.join(folder, f"{results.get('dataset')}.types")):
        return None
    k = int(analysis.get("k") or 20)
    fresh = analyze_results(results_path, "best", k=k, data_path=data_path)
    out = os.path.join(os.path.dirname(os.path.abspath(results_path)),
                       f"analysis-{fresh['combination']}-test-k{k}.json")
    write_text_atomic(out, json.dumps(fresh, indent=2))
    return fresh


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_plugin.analysis.studies import STUDIES

    parser.add_argument("name", help="study preset: " + ", ".join(STUDIES))
    parser.add_argument("-d", "--dataset", default=None, help="dataset (default: the study's)")
    parser.add_argument("--results-dir", default="results", metavar="DIR",
                        help="parent results folder; the study writes <DIR>/<study>/<variant>/")
    parser.add_argument("--data-path", default=None, metavar="DIR", help="data folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every run (YAML value), e.g. --set epochs=50")
    parser.add_argument("--print-config", action="store_true",
                        help="print each variant's config overrides (YAML) and exit")
    parser.add_argument("--no-report", action="store_true", help="do not write the report")
    parser.add_argument("--gammas", default=None, metavar="G1,G2,...",
                        help="gamma_sweep: values of gamma_s (default: the preset's)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="gamma_sweep: output folder (default: <results-dir>/gamma_sweep)")


def run_study(args) -> int:
    import yaml

    from mmrec_plugin.analysis import studies
    from mmrec_plugin.analysis.report import compare, report

    if args.name not in studies.STUDIES:
        raise studies._unknown(args.name)
    extra = _parse_set(args.set)
    if extra:  # every --set key must be one the study's model knows
        from mmrec_plugin.host.config import Config, strict_key

        dataset = args.dataset or studies.STUDIES[args.name]["dataset"]
        Config(studies.MODEL, dataset, config_dict=extra, check_keys=strict_key)
    if args.print_config:
        for variant, cfg in studies.study_variants(args.name).items():
            print(f"# study {args.name}, variant {variant}")
            print(yaml.safe_dump(cfg, sort_keys=False).rstrip())
        return 0
    if args.name == "gamma_sweep":
        gammas = _parse_gammas(args.gammas) if args.gammas else studies.STUDIES["gamma_sweep"]["gammas"]
        out = args.out or os.path.join(args.results_dir, "gamma_sweep")
        studies.run_gamma_sweep(gammas, out, extra=extra)
        files = [os.path.join(out, "gamma_sweep.json")]
        if not args.no_report:
            files += report(files[0], os.path.join(out, "report"))
        for f in files:
            print(f"written: {f}")
        return 0
    paths = studies.run_study(args.name, dataset=args.dataset, results_dir=args.results_dir,
                              data_path=args.data_path, extra=extra)
    written: List[str] = list(paths.values())
    notes: List[str] = []
    if not args.no_report:
        for variant, path in paths.items():
            written += report(path, os.path.join(os.path.dirname(path), "report"), notes=notes)
        if len(paths) > 1:
            analyses = [_typed_analysis(p, args.data_path) for p in paths.values()]
            written += compare(list(paths.values()), os.path.join(args.results_dir, args.name, "report"),
                               labels=list(paths), notes=notes, analyses=analyses)
    for f in written:
        print(f"written: {f}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    return 0
