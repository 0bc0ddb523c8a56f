"""``mmrec-plugin bench``: where the time and memory of a model go, measured in one run.

For each model (default: BRMRS and the host's LightGCN) a separate worker process (so each
peak RSS is its own) measures, on the same dataset, with the same config layering as
``run``:

- ``build_s``: the loaders and the model (:func:`mmrec_plugin.runs.build`), including graph
  building with the graph cache off (cold);
- ``epoch_s``: one training epoch (the second one, so one-off warm-up is not counted;
  the first is reported as ``first_epoch_s``);
- ``pool_select_s`` / ``pool_select_frac`` (models with candidate pools, e.g. BRMRS): the time
  of candidate-pool sampling plus hard-negative selection inside that epoch, and its share;
- ``eval_s``: one full-ranking evaluation of every user that has a test item (scores, mask
  training items, top-k, metrics), as the trainer does it;
- ``floor_s``: the floor for that evaluation: the dense product of the same users' vectors with
  all item vectors, in the same batches, with random ``[n, d]`` factors (``eval_over_floor``);
  ``d`` (``floor_dim``) is the width of the model's scoring vectors: its ``score_dim``
  attribute where it has one (BRMRS: 128 with the concat fusion), else ``embedding_size``;
- ``peak_rss_mb``: the worker's peak resident memory.

Every time is measured twice: wall-clock (``*_s``) and CPU seconds of the worker process
(``*_cpu_s``, :func:`time.process_time`, all its threads). On a loaded machine the CPU
seconds are the stable number (run with ``--threads 1`` to compare single-core costs); the
shares and ratios in the table use them (``pool_select_cpu_frac``, ``eval_over_floor_cpu``).

The table ends with the ratios of each model to the first baseline model (LightGCN).
Numbers are wall-clock on a shared machine: compare ratios within one run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("LightGCN", "BRMRS")


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024.0


class _Clock:
    """Wall-clock and process CPU seconds since construction (``.wall()``, ``.cpu()``)."""

    def __init__(self) -> None:
        self.w0, self.c0 = time.perf_counter(), time.process_time()

    def wall(self) -> float:
        return time.perf_counter() - self.w0

    def cpu(self) -> float:
        return time.process_time() - self.c0


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def measure(model: str, dataset: str, config_dict: Optional[Dict[str, Any]] = None,
            config_file: Optional[str] = None) -> Dict[str, Any]:
    """Measure one model in this process (the worker's job; see the module docstring)."""
    import numpy as np
    import torch

    from mmrec_plugin.host.config import Config
    from mmrec_plugin.runs import build, load_data

    config_dict = dict(config_dict or {})
    config = Config(model, dataset, config_dict=config_dict, config_file=config_file)
    if "graph_cache" in config:
        config["graph_cache"] = False  # measure a cold graph build
    # one combination: the first value of each grid list
    params = {k: config[k][0] for k in config["hyper_parameters"] if isinstance(config[k], list) and config[k]}
    if config["dataset"] == "demo":
        from mmrec_plugin.data.synthetic import ensure_demo

        ensure_demo(os.path.join(config["data_path"], config["dataset"]))
    clk = _Clock()
    data = load_data(config, cache=False)
    load_s, load_cpu_s = clk.wall(), clk.cpu()

    clk = _Clock()
    run = build(config, params, data)
    device = run.config["device"]
    _sync(device)
    build_s, build_cpu_s = clk.wall(), clk.cpu()
    net, trainer, train_data, test_data = run.model, run.trainer, run.train_data, run.test_data
    full, train_ds = data.full, data.train

    # time candidate pools + hard-negative selection where the model (or a submodule of it,
    # e.g. BRMRS's BRObjective) has them; negatives() calls candidate_pool(): only the
    # outermost call is counted
    spent = {"wall": 0.0, "cpu": 0.0, "depth": 0}
    names = ("candidate_pool", "negatives", "hard_negatives")
    owners = [m for m in (net.modules() if hasattr(net, "modules") else [net])
              if any(callable(getattr(type(m), n, None)) for n in names)]
    for owner in owners:
        for name in names:
            fn = getattr(owner, name, None)
            if callable(fn):
                def timed(*a, _fn=fn, **kw):
                    spent["depth"] += 1
                    try:
                        if spent["depth"] > 1:
                            return _fn(*a, **kw)
                        _sync(device)
                        c = _Clock()
                        out = _fn(*a, **kw)
                        _sync(device)
                        spent["wall"] += c.wall()
                        spent["cpu"] += c.cpu()
                        return out
                    finally:
                        spent["depth"] -= 1
                setattr(owner, name, timed)
    has_pools = bool(owners)

    epochs = []
    for epoch in range(2):
        spent["wall"] = spent["cpu"] = 0.0
        clk = _Clock()
        trainer.train_epoch(train_data, epoch)
        _sync(device)
        epochs.append((clk.wall(), clk.cpu()))
    epoch_s, epoch_cpu_s = epochs[-1]
    pool_s, pool_cpu_s = spent["wall"], spent["cpu"]

    net.eval()
    clk = _Clock()
    result = trainer.evaluate(test_data)
    _sync(device)
    eval_s, eval_cpu_s = clk.wall(), clk.cpu()

    # the floor: [B, d] x [d, n_items] per batch of evaluated users, nothing else; d is the
    # width of the model's own scoring vectors (``score_dim``, e.g. 2 * embedding_size for
    # BRMRS's concat fusion), else embedding_size
    d = int(getattr(net, "score_dim", None) or config["embedding_size"])
    n_eval = len(test_data.get_eval_users())
    gen = torch.Generator(device="cpu").manual_seed(0)
    users = torch.randn(full.get_user_num(), d, generator=gen).to(device)
    items = torch.randn(full.get_item_num(), d, generator=gen).to(device)
    idx = torch.as_tensor(np.asarray(test_data.get_eval_users()), device=device)
    bs = int(config["eval_batch_size"])
    with torch.no_grad():
        _sync(device)
        clk = _Clock()
        for s in range(0, n_eval, bs):
            out = users[idx[s:s + bs]] @ items.T
            del out
        _sync(device)
        floor_s, floor_cpu_s = clk.wall(), clk.cpu()

    rec = {
        "model": config["model"], "dataset": dataset, "device": str(device),
        "n_users": full.get_user_num(), "n_items": full.get_item_num(), "n_train": len(train_ds),
        "n_eval_users": n_eval, "load_s": load_s, "load_cpu_s": load_cpu_s,
        "build_s": build_s, "build_cpu_s": build_cpu_s,
        "first_epoch_s": epochs[0][0], "first_epoch_cpu_s": epochs[0][1],
        "epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu_s, "batches": len(train_data),
        "eval_s": eval_s, "eval_cpu_s": eval_cpu_s, "floor_s": floor_s, "floor_cpu_s": floor_cpu_s,
        "floor_dim": d,
        "eval_over_floor": eval_s / max(floor_s, 1e-9),
        "eval_over_floor_cpu": eval_cpu_s / max(floor_cpu_s, 1e-9),
        "peak_rss_mb": _peak_rss_mb(), "torch_threads": torch.get_num_threads(),
        "test_recall@20_untrained": float(result.get("recall@20", float("nan"))),
    }
    if has_pools:
        rec["pool_select_s"] = pool_s
        rec["pool_select_frac"] = pool_s / max(epoch_s, 1e-9)
        rec["pool_select_cpu_s"] = pool_cpu_s
        rec["pool_select_cpu_frac"] = pool_cpu_s / max(epoch_cpu_s, 1e-9)
    if device.type == "cuda":
        rec["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


_WORKER_ERROR = "BENCH_USER_ERROR "


def _worker_main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="mmrec_plugin.bench --worker")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--config-json", default="{}")
    p.add_argument("--config-file", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from mmrec_plugin.utils import tune_allocator

    tune_allocator()  # as the `mmrec-plugin` entry point does for a real run
    from mmrec_plugin.errors import UserError

    try:
        rec = measure(a.model, a.dataset, json.loads(a.config_json), a.config_file)
    except UserError as exc:  # the parent re-raises this line as the user's error
        sys.stderr.write(f"{_WORKER_ERROR}{exc}\n")
        return 2
    sys.stdout.write("BENCH_JSON " + json.dumps(rec) + "\n")
    return 0


def run_worker(model: str, dataset: str, config_dict: Dict[str, Any],
               config_file: Optional[str] = None, threads: Optional[int] = None) -> Dict[str, Any]:
    """Run :func:`measure` for ``model`` in a fresh Python process; return its record."""
    from mmrec_plugin.errors import UserError

    cmd = [sys.executable, "-m", "mmrec_plugin.bench", "--worker", "--model", model,
           "--dataset", dataset, "--config-json", json.dumps(config_dict)]
    if config_file:
        cmd += ["--config-file", config_file]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    errors = [l for l in proc.stderr.splitlines() if l.startswith(_WORKER_ERROR)]
    if errors:
        raise UserError(errors[-1][len(_WORKER_ERROR):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
    raise UserError(f"bench of {model} on {dataset} failed (exit {proc.returncode}):\n{tail}")


COLUMNS = [("build_cpu_s", "build CPU s"), ("epoch_cpu_s", "epoch CPU s"),
           ("epoch_s", "epoch wall s"), ("pool_select_cpu_frac", "pools+select share"),
           ("eval_cpu_s", "full eval CPU s"), ("floor_cpu_s", "floor CPU s"),
           ("eval_over_floor_cpu", "eval/floor"), ("peak_rss_mb", "peak RSS MB")]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def format_table(records: List[Dict[str, Any]]) -> str:
    """A markdown table of the records plus ratios to the first record."""
    head = "| model | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in records:
        lines.append(f"| {r['model']} | " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |")
    if len(records) > 1:
        base = records[0]
        for r in records[1:]:
            ratios = []
            for k, _ in COLUMNS:
                a, b = r.get(k), base.get(k)
                ratios.append(f"{a / b:.2f}x" if isinstance(a, (int, float)) and b else "-")
            lines.append(f"| {r['model']} / {base['model']} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def ratios(records: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """``{model: {key: value / baseline value}}`` against the first record."""
    base = records[0]
    out = {}
    for r in records[1:]:
        out[r["model"]] = {k: r[k] / base[k] for k, _ in COLUMNS
                           if isinstance(r.get(k), (int, float)) and base.get(k)}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_plugin.cliargs import positive_int

    parser.add_argument("-d", "--dataset", required=True, help="dataset name (folder under --data-path)")
    parser.add_argument("--data-path", default=None, help="folder holding the dataset folders")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated models; the first is the baseline of the ratios "
                             "(default: %(default)s)")
    parser.add_argument("--config", default=None, help="an extra yaml config layer")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="OMP_NUM_THREADS for the workers (default: the environment's, "
                             "else torch's own)")
    parser.add_argument("--out", default=None, help="write the records and ratios as JSON here")


def run(args) -> int:
    from mmrec_plugin.runs.records import write_json_atomic

    config_dict: Dict[str, Any] = {}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    records = []
    for i, m in enumerate(models):
        logger.info("bench %d/%d: %s on %s", i + 1, len(models), m, args.dataset)
        records.append(run_worker(m, args.dataset, config_dict, args.config, args.threads))
    table = format_table(records)
    sys.stdout.write(table + "\n")
    if args.out:
        write_json_atomic(args.out, {"dataset": args.dataset, "records": records,
                                     "ratios_to_" + records[0]["model"]: ratios(records)})
        sys.stdout.write(f"written to {args.out}\n")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(_worker_main(sys.argv[1:]))
    ap = argparse.ArgumentParser(prog="python -m mmrec_plugin.bench")
    add_arguments(ap)
    sys.exit(run(ap.parse_args()))
