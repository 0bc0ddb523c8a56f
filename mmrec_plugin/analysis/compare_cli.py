"""``mmrec-plugin compare``: a rerunnable study protocol (its command line).

Runs a set of variants over several seeds, then writes mean +- sd tables of the test metrics
at the best-valid epoch and a paired per-user significance test of every variant against a
named baseline, with plots::

    mmrec-plugin compare -d DATASET [-m MODEL] [--data-path DIR] [--results-dir DIR]
        [--seeds S1 S2 ...] [--variant NAME [KEY=VALUE ...]] ... [--variants FILE.yaml]
        [--baseline NAME] [--set KEY=VALUE ...] [--pin-grid]
        [--metrics M@K ...] [--paired-metrics M@K ...] [--bootstrap N] [--bootstrap-seed S]
        [--jobs N] [--threads N] [--report-only] [--out DIR]

Variants: :mod:`mmrec_plugin.analysis.variants`; runs and per-user metrics:
:mod:`mmrec_plugin.analysis.compare`; statistics: :mod:`mmrec_plugin.analysis.stats`;
outputs: :mod:`mmrec_plugin.analysis.compare_report`. ``--report-only`` writes the report
from what is there without training.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Dict, List

from mmrec_plugin.cliargs import add_threads_argument, positive_int
from mmrec_plugin.errors import UserError, did_you_mean

from .compare import collect, execute_runs
from .compare_report import build_result, markdown, plots
from .stats import analyse
from .variants import load_spec, parse_assignments, parse_variant_options, resolve_variants

logger = logging.getLogger(__name__)

__all__ = ["add_arguments", "run", "command_line", "DEFAULT_METRICS", "PAIRED_METRICS", "DEFAULT_SEEDS"]

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PAIRED_METRICS = ("recall@20", "ndcg@20")
DEFAULT_SEEDS = (999, 1, 2)


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
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help="combinations trained at once, across all runs (default: "
                             "min(cores, combinations) worker processes; 1: in this process)")
    add_threads_argument(parser)
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the finished runs, train nothing")
    parser.add_argument("--out", default=None, metavar="DIR", help="report folder (default: --results-dir)")


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


def run(args) -> int:
    from mmrec_plugin.runs.records import write_json_atomic
    from mmrec_plugin.utils import atomic_write_text, default_threads, set_threads

    st = _settings(args)
    threads = set_threads(default_threads() if args.threads is None else args.threads)
    metrics = [m.lower() for m in args.metrics]
    paired_metrics = [m.lower() for m in args.paired_metrics]
    plans = resolve_variants(st["model"], st["dataset"], st["variants"], st["common"],
                             args.data_path, args.pin_grid)
    root = args.results_dir
    for name, plan in plans.items():
        logger.info("variant %s: %s, %d combination(s) per seed, overrides %s",
                    name, plan["model"], plan["grid"], plan["overrides"])
    if not args.report_only:
        execute_runs(plans, st["seeds"], root, jobs=args.jobs, threads=threads)
    vm = plans[st["baseline"]]["config"].valid_metric_key
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
    written.append(atomic_write_text(os.path.join(out, "compare.md"), text))
    notes: List[str] = []
    written += plots(result, out, notes)
    print(text)
    for path in written:
        print(f"written: {path}")
    for note in notes:
        print(f"note: {note}")
    if missing:
        print(f"note: {len(missing)} run(s) not finished; rerun the same command to complete "
              f"the report")
    return 0
