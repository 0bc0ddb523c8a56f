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

from mmrec_plugin.cliargs import add_threads_argument, positive_int
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
    "compare": ("mmrec_plugin.analysis.compare_cli", "add_arguments", "run",
                "variants x seeds: mean +- sd tables, paired tests vs a baseline, plots"),
    "recommend": ("mmrec_plugin.recommend", "add_arguments", "run",
                  "top-K recommendations of a trained model (CSV or JSON lines)"),
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
              "--gpus-per-trial", "--scheduler", "--print-config", "--reuse-results",
              "--max-combinations")
# the flags that run the grid on Ray (the distributed extra)
_RAY_FLAGS = ("ray_address", "cpus_per_trial", "gpus_per_trial", "scheduler")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def _setup_logging(quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:  # (a run's log file may ask for more)
        handler.setLevel(level)


# --------------------------------------------------------------------------------- run
def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (and of ``python main.py``)."""
    parser.add_argument("-m", "--model", required=True, help="model name, e.g. BRMRS, LightGCN, BPR")
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset name: the folder <data-path>/<dataset>/ (demo is generated)")
    parser.add_argument("--data-path", dest="data_path", default=None,
                        help="root folder of the datasets (default: data/)")
    parser.add_argument("--results-dir", dest="results_dir", default=None,
                        help="results folder: JSON summary, store, models, logs (default: results/)")
    parser.add_argument("--config", dest="config_file", default=None,
                        help="a yaml file applied after the model yaml, before --KEY VALUE")
    parser.add_argument("--study", default=None,
                        help="a named study preset (mmrec_plugin.analysis.studies)")
    parser.add_argument("--print-config", dest="print_config", action="store_true",
                        help="print the resolved config (value, where it was set, meaning) and exit")
    add_threads_argument(parser)
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="combinations trained at once (default: min(cores / threads, "
                             "combinations) worker processes; 1: one after another in this "
                             "process; with --ray-address: Ray workers)")
    parser.add_argument("--reuse-results", dest="reuse_results", action="store_true",
                        help="keep finished results of the same settings although the code "
                             "that trained them changed (default: train them again)")
    parser.add_argument("--max-combinations", dest="max_combinations", type=positive_int,
                        default=None, metavar="N",
                        help=f"refuse grids larger than N combinations (default {MAX_COMBINATIONS})")
    ray = parser.add_argument_group(
        "distributed grids (Ray: pip install \".[distributed]\")")
    ray.add_argument("--ray-address", dest="ray_address", default=None, metavar="ADDRESS",
                     help="train on Ray: join this cluster (host:port, or auto), or start a "
                          "local instance (local)")
    ray.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float, default=None,
                     metavar="C", help="Ray CPUs per combination (default 1)")
    ray.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, default=None,
                     metavar="G", help="Ray GPUs per combination (default 1 where the config "
                                       "uses a GPU, else 0; fractions share a GPU)")
    ray.add_argument("--scheduler", choices=["asha"], default=None,
                     help="early termination across the grid on the validation metric "
                          "(Ray Tune's ASHA, on a local Ray instance unless --ray-address); "
                          "pruned combinations are never selected")
    parser.epilog = (
        "--KEY VALUE overrides any config key (value parsed as YAML; a list makes a grid), "
        "e.g. --epochs 50 --reg_weight \"[1e-4, 1e-3]\""
    )


MAX_COMBINATIONS = 1000  # = mmrec_plugin.runs.grid.MAX_COMBINATIONS (not imported for --help)


def make_executor(args: argparse.Namespace, config, n_combinations: int, threads: int):
    """The executor of ``run``'s flags: Ray with ``--ray-address`` / ``--scheduler``, else the
    local default (:func:`mmrec_plugin.runs.executors.default_executor`; ``--workers``)."""
    ray_flags = {k: getattr(args, k, None) for k in _RAY_FLAGS}
    ray_flags = {k: v for k, v in ray_flags.items() if v is not None}
    if ray_flags:
        if not ({"ray_address", "scheduler"} & set(ray_flags)):
            flag = "--" + next(iter(ray_flags)).replace("_", "-")
            raise UserError(f"{flag} sets Ray resources per combination: use it with "
                            f"--ray-address ADDRESS (or local)")
        options = dict(threads=threads, workers=args.workers, address=args.ray_address,
                       cpus_per_trial=ray_flags.get("cpus_per_trial"),
                       gpus_per_trial=ray_flags.get("gpus_per_trial"))
        if args.scheduler:
            from mmrec_plugin.runs.tune import RayTune

            return RayTune(config, scheduler=args.scheduler, **options)
        from mmrec_plugin.runs.ray import Ray

        return Ray(config, **options)
    from mmrec_plugin.runs.executors import default_executor

    return default_executor(config, n_combinations, workers=args.workers, threads=threads)


def parse_overrides(tokens: Sequence[str], known: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``['--key', 'value', '--k2=v2']`` -> ``{'key': value, 'k2': v2}`` (values as YAML).

    With ``known``, ``-`` in a key is read as ``_`` when only that spelling is known, and a
    key not in ``known`` is an error naming the closest known key (or run flag).

    Raises:
        UserError: a token that is not ``--key``, a key without a value, or an unknown key.
    """
    from mmrec_plugin.host.config import parse_value

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
        if known is not None:
            key = known_key(key, known)
        out[key] = parse_value(value, f"--{key}")
    return out


def known_key(key: str, known) -> str:
    """``key`` (``-`` read as ``_`` where only that spelling is known) if ``known`` has it;
    else a UserError naming the closest key or run flag."""
    known_set = set(known)
    if key not in known_set and key.replace("-", "_") in known_set:
        key = key.replace("-", "_")
    if key not in known_set:
        candidates = sorted(known_set) + [f.lstrip("-") for f in _RUN_FLAGS]
        near = closest(key, candidates)
        hint = f" (did you mean --{near}?)" if near else ""
        raise UserError(f"unknown option --{key}{hint}: --KEY VALUE accepts the keys of the "
                        f"layered config (host, dataset, model, --config)")
    return key


def _analyzer() -> Optional[Callable]:
    """The subset analysis recorded with every finished combination (None without the
    analysis package)."""
    try:
        from mmrec_plugin.analysis.rerun import record_analysis
    except ImportError as exc:
        logging.getLogger(__name__).warning("the subset analysis is unavailable: %s", exc)
        return None
    return record_analysis


def build_config(model: str, dataset: str, base: Dict[str, Any], overrides: Dict[str, Any],
                 config_file: Optional[str]):
    """The run's Config, built once: ``base`` (paths) and the command line's ``overrides``,
    whose keys must be known to the layered config."""
    from mmrec_plugin.host.config import Config

    return Config(model, dataset, config_dict={**base, **overrides}, config_file=config_file,
                  check_keys=lambda key, known: known_key(key, known))


def _ensure_demo(config) -> None:
    """Generate the demo dataset when ``-d demo`` names a folder that does not have it."""
    import os

    folder = os.path.join(config["data_path"], config["dataset"])
    if config["dataset"] != "demo" or os.path.isfile(os.path.join(folder, config["inter_file_name"])):
        return
    from mmrec_plugin.data.synthetic import ensure_demo

    logging.getLogger(__name__).info("generating the demo dataset into %s", folder)
    ensure_demo(folder)


def run_run(args: argparse.Namespace) -> int:
    """``run``: the grid search of one model on one dataset; prints the summary's path."""
    threads = set_threads(default_threads() if args.threads is None else args.threads)
    from mmrec_plugin.runs import grid as run_grid

    base: Dict[str, Any] = {}
    if args.data_path is not None:
        base["data_path"] = args.data_path
    if args.results_dir is not None:
        base["results_dir"] = args.results_dir
    overrides = parse_overrides(getattr(args, "overrides", []))
    limit = args.max_combinations or MAX_COMBINATIONS

    def train(dataset: str, cfg: Dict[str, Any]):
        config = build_config(args.model, dataset, {}, cfg, args.config_file)
        if args.print_config:
            print(config.describe())
            return None
        from mmrec_plugin.host.config import expand_grid
        from mmrec_plugin.runs.grid import check_grid_size

        n = len(expand_grid(config))
        check_grid_size(config, n, limit)
        executor = make_executor(args, config, n, threads)
        _ensure_demo(config)
        logging.getLogger(__name__).info("threads: %d torch thread(s) per training process "
                                         "(--threads N)", threads)
        return run_grid(config, executor=executor, analyze=_analyzer(),
                        reuse_results=args.reuse_results, max_combinations=limit)

    if args.study:
        try:
            studies = importlib.import_module("mmrec_plugin.analysis.studies")
        except ImportError as exc:
            raise UserError(f"--study is not available in this installation ({exc})") from None
        if str(args.model).lower() != str(getattr(studies, "MODEL", args.model)).lower():
            logging.getLogger(__name__).warning(
                "study presets are written for %s; running them with %s", studies.MODEL, args.model)
        summaries: List[Any] = []

        def runner(_model: str, dataset: str, cfg: Dict[str, Any]):
            summaries.append(train(dataset, cfg))
            return summaries[-1]

        results_dir = args.results_dir or "results/"
        studies.run_study(args.study, dataset=args.dataset, results_dir=results_dir,
                          data_path=args.data_path, extra=dict(overrides), runner=runner)
        if args.print_config:
            return 0
        for summary in summaries:
            print(summary["path"])
        return 0 if all(s.get("best") is not None for s in summaries) else 1

    summary = train(args.dataset, {**base, **overrides})
    if summary is None:  # --print-config
        return 0
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
        from mmrec_plugin.version import __version__

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
