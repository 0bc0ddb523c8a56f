"""The ``mmrec-plugin`` command line.

Subcommands::

    mmrec-plugin run -m MODEL -d DATASET [--data-path DIR] [--results-dir DIR]
                     [--config FILE] [--study NAME] [--threads N] [-q]
                     [--workers N] [--ray-address ADDRESS] [--cpus-per-trial C]
                     [--gpus-per-trial G] [--scheduler asha] [--KEY VALUE ...]
    mmrec-plugin analyze|report|study|compare|install|uninstall|bench|data ...

``run`` is ``python main.py`` (MMRec's ``-m/--model``, ``-d/--dataset``). ``--KEY VALUE``
overrides any key the layered config knows (overall, dataset, model yaml, ``--config``); the
value is parsed as YAML (``--reg_weight "[1e-4, 1e-3]"`` is a list, and a list for a key
whose default is not a list makes it a grid dimension; see :mod:`mmrec_plugin.host.config`).
An unknown flag or key is an error naming the closest known key.

The other subcommands live in their rooms' modules, imported only when they run
(``add_*_arguments(parser)`` / ``run_*(args) -> int``).

Exit status: 0 success, 1 nothing finished (every combination diverged), 2 a user error
(``error: ...`` on stderr, no traceback), 130 interrupted (rerun the same command to resume).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mmrec_plugin.errors import UserError, closest
from mmrec_plugin.utils import default_threads, set_threads, tune_allocator

PROG = "mmrec-plugin"

# subcommand -> (module, add-arguments function, run function, one-line help)
SUBCOMMANDS: Dict[str, Tuple[str, str, str, str]] = {
    "run": ("mmrec_plugin.cli", "add_run_arguments", "run_run",
            "train and evaluate a model: grid search, resumable (= python main.py)"),
    "analyze": ("mmrec_plugin.analysis.cli", "add_analyze_arguments", "run_analyze",
                "user-subset analysis of a trained model"),
    "report": ("mmrec_plugin.analysis.cli", "add_report_arguments", "run_report",
               "tables and plots from results JSON files"),
    "study": ("mmrec_plugin.analysis.cli", "add_study_arguments", "run_study",
              "run a named study (ablations, sweeps, synthetic experiments)"),
    "compare": ("mmrec_plugin.analysis.protocol", "add_arguments", "run",
                "variants x seeds: mean +- sd tables, paired tests vs a baseline, plots"),
    "install": ("mmrec_plugin.bridge.cli", "add_install_arguments", "run_install",
                "install the BRMRS model into an MMRec checkout"),
    "uninstall": ("mmrec_plugin.bridge.cli", "add_uninstall_arguments", "run_uninstall",
                  "remove the BRMRS model from an MMRec checkout"),
    "bench": ("mmrec_plugin.bench", "add_arguments", "run", "speed and memory benchmark"),
    "data": ("mmrec_plugin.data.cli", "add_arguments", "run",
             "dataset tools: demo generator, import, resplit, validate, stats"),
}

_RUN_FLAGS = ("--model", "--dataset", "--data-path", "--results-dir", "--config", "--study",
              "--quiet", "--help", "--threads", "--workers", "--ray-address", "--cpus-per-trial",
              "--gpus-per-trial", "--scheduler")
# the flags that run the grid on Ray (the distributed extra)
_RAY_FLAGS = ("workers", "ray_address", "cpus_per_trial", "gpus_per_trial", "scheduler")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


# --------------------------------------------------------------------------------- run
def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (and of ``python main.py``)."""
    parser.add_argument("-m", "--model", required=True, help="model name, e.g. BRMRS, LightGCN, BPR")
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset name: the folder <data-path>/<dataset>/ (demo is generated)")
    parser.add_argument("--data-path", dest="data_path", default=None,
                        help="root folder of the datasets (default: data/)")
    parser.add_argument("--results-dir", dest="results_dir", default=None,
                        help="results folder: JSON summary, store, models (default: results/)")
    parser.add_argument("--config", dest="config_file", default=None,
                        help="a yaml file applied after the model yaml, before --KEY VALUE")
    parser.add_argument("--study", default=None,
                        help="a named study preset (mmrec_plugin.analysis.studies)")
    # (type int: set_threads names a value below 1 as '--threads must be a positive integer')
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads per training process (this one, or each Ray "
                             "worker; default: OMP_NUM_THREADS if set, else 1: faster on small "
                             "data and on a busy machine)")
    ray = parser.add_argument_group(
        "parallel and distributed grids (Ray: pip install \".[distributed]\")")
    ray.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                     help="train N combinations at once on Ray workers (a local Ray instance "
                          "unless --ray-address)")
    ray.add_argument("--ray-address", dest="ray_address", default=None, metavar="ADDRESS",
                     help="join this Ray cluster (host:port, or auto) instead of starting one")
    ray.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float, default=None,
                     metavar="C", help="Ray CPUs per combination (default 1)")
    ray.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, default=None,
                     metavar="G", help="Ray GPUs per combination (default 1 where the config "
                                       "uses a GPU, else 0; fractions share a GPU)")
    ray.add_argument("--scheduler", choices=["asha"], default=None,
                     help="early termination across the grid on the validation metric "
                          "(Ray Tune's ASHA); pruned combinations are never selected")
    parser.epilog = (
        "--KEY VALUE overrides any config key (value parsed as YAML; a list makes a grid), "
        "e.g. --epochs 50 --reg_weight \"[1e-4, 1e-3]\""
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def distributed_options(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The Ray options of ``run`` for :func:`~mmrec_plugin.host.quick_start.quick_start`
    (None: the sequential path; Ray is not imported)."""
    given = {k: getattr(args, k, None) for k in _RAY_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    if not ({"workers", "ray_address", "scheduler"} & set(given)):
        flag = "--" + next(iter(given)).replace("_", "-")
        raise UserError(f"{flag} sets Ray resources per combination: use it with --workers N "
                        f"or --ray-address ADDRESS")
    opts = {"workers": given.get("workers"), "address": given.get("ray_address"),
            "scheduler": given.get("scheduler")}
    if "cpus_per_trial" in given:
        opts["cpus_per_trial"] = given["cpus_per_trial"]
    if "gpus_per_trial" in given:
        opts["gpus_per_trial"] = given["gpus_per_trial"]
    if opts["workers"] is None and opts["address"] is None:
        opts["workers"] = 1  # --scheduler alone: one local worker
    return opts


def parse_overrides(tokens: Sequence[str], known: Sequence[str]) -> Dict[str, Any]:
    """``['--key', 'value', '--k2=v2']`` -> ``{'key': value, 'k2': v2}`` (values as YAML).

    ``-`` in a key is read as ``_`` when only that spelling is known.

    Raises:
        UserError: a token that is not ``--key``, a key without a value, or a key that the
            layered config does not know (naming the closest known key).
    """
    from mmrec_plugin.host.config import parse_value

    known_set = set(known)
    out: Dict[str, Any] = {}
    i = 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise UserError(f"unexpected argument {tok!r}: options are written --KEY VALUE")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            key = tok[2:]
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UserError(f"option --{key} needs a value (--{key} VALUE)")
            value = tokens[i + 1]
            i += 2
        if key not in known_set and key.replace("-", "_") in known_set:
            key = key.replace("-", "_")
        if key not in known_set:
            candidates = sorted(known_set) + [f.lstrip("-") for f in _RUN_FLAGS]
            near = closest(key, candidates)
            hint = f" (did you mean --{near}?)" if near else ""
            raise UserError(
                f"unknown option --{key}{hint}: --KEY VALUE accepts the keys of the layered "
                f"config (overall, dataset, model yaml, --config)"
            )
        out[key] = parse_value(value)
    return out


def _analyzer() -> Optional[Callable]:
    """The subset analysis recorded with every finished combination (None without the
    analysis package)."""
    try:
        from mmrec_plugin.analysis.rerun import record_analysis
    except ImportError as exc:
        logging.getLogger(__name__).warning("the subset analysis is unavailable: %s", exc)
        return None
    return record_analysis


def run_run(args: argparse.Namespace) -> int:
    """``run``: the grid search of one model on one dataset; prints the summary's path."""
    threads = set_threads(default_threads() if args.threads is None else args.threads)
    logging.getLogger(__name__).info(
        "threads: %d torch thread(s) per training process (--threads N)", threads)

    from mmrec_plugin.host.config import Config
    from mmrec_plugin.host.quick_start import quick_start

    base: Dict[str, Any] = {}
    if args.data_path is not None:
        base["data_path"] = args.data_path
    if args.results_dir is not None:
        base["results_dir"] = args.results_dir
    probe = Config(args.model, args.dataset, config_dict=base, config_file=args.config_file)
    overrides = parse_overrides(getattr(args, "overrides", []), probe.layered_keys)
    # the same thread count for this process and for every Ray worker
    run_opts = {"threads": threads, "distributed": distributed_options(args)}

    if args.study:
        try:
            studies = importlib.import_module("mmrec_plugin.analysis.studies")
        except ImportError as exc:
            raise UserError(f"--study is not available in this installation ({exc})") from None
        if str(args.model).lower() != str(getattr(studies, "MODEL", args.model)).lower():
            logging.getLogger(__name__).warning(
                "study presets are written for %s; running them with %s", studies.MODEL, args.model)

        summaries: List[Dict[str, Any]] = []

        def runner(_model: str, dataset: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
            summaries.append(quick_start(args.model, dataset, config_dict=cfg,
                                         config_file=args.config_file, analyze=_analyzer(),
                                         **run_opts))
            return summaries[-1]

        studies.run_study(
            args.study, dataset=args.dataset,
            results_dir=probe["results_dir"], data_path=args.data_path,
            extra=dict(overrides), runner=runner,
        )
        for summary in summaries:
            print(summary["path"])
        return 0 if all(s.get("best") is not None for s in summaries) else 1

    config_dict = dict(base)
    config_dict.update(overrides)
    summary = quick_start(args.model, args.dataset, config_dict=config_dict,
                          config_file=args.config_file, analyze=_analyzer(), **run_opts)
    print(summary["path"])
    return 0 if summary.get("best") is not None else 1


# --------------------------------------------------------------------------------- main
def _top_help() -> str:
    width = max(len(c) for c in SUBCOMMANDS)
    lines = [
        f"usage: {PROG} <command> [options]   ({PROG} <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {spec[3]}" for name, spec in SUBCOMMANDS.items()]
    return "\n".join(lines) + "\n"


def _load(command: str) -> Optional[Tuple[Callable, Callable]]:
    modname, add_name, run_name, _ = SUBCOMMANDS[command]
    try:
        module = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
            return None
        raise
    add, run = getattr(module, add_name, None), getattr(module, run_name, None)
    if add is None or run is None:
        return None
    return add, run


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``mmrec-plugin``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(_top_help())
        return 0 if argv else 2
    if argv[0] == "--version":
        from mmrec_plugin import __version__

        print(f"{PROG} {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    tune_allocator()
    if command not in SUBCOMMANDS:
        near = closest(command, SUBCOMMANDS)
        hint = f" (did you mean '{near}'?)" if near else ""
        sys.stderr.write(f"error: unknown command '{command}'{hint}; commands: "
                         f"{', '.join(SUBCOMMANDS)}\n")
        return 2
    loaded = _load(command)
    if loaded is None:
        sys.stderr.write(
            f"error: the '{command}' command is not available in this installation "
            f"({SUBCOMMANDS[command][0]} is missing)\n"
        )
        return 2
    add, run = loaded
    parser = _Parser(prog=f"{PROG} {command}", description=SUBCOMMANDS[command][3],
                     allow_abbrev=False)
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    add(parser)
    try:
        if command == "run":
            args, extras = parser.parse_known_args(rest)
            args.overrides = extras
        else:
            args = parser.parse_args(rest)
        _setup_logging(getattr(args, "quiet", False))
        code = run(args)
        return int(code or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a bad command line (2)
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished combinations are kept; rerun the same command "
                         "to resume\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
