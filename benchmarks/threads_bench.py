"""Wall seconds per training epoch against the number of torch threads, on an idle machine
and with every other core busy (how ``mmrec-plugin run --threads``'s default was chosen).

Each measurement is a fresh process (a fresh OpenMP pool) that builds the model on the
dataset (default: BRMRS on the demo data, its first grid combination; the graph cache makes
later builds cheap), then times ``--epochs`` training epochs and one evaluation of the
validation split. ``--threads 0`` leaves torch's own default (the number of cores; what the
command line did before ``--threads``). With ``--busy`` the script starts one
``python -c 'while True: pass'`` per other core for the loaded measurements and stops them
afterwards. Settings alternate (1, 2, 1, 2, ...) so that drift in the machine's load hits
all of them alike. Prints per setting the median epoch and evaluation wall seconds and the
load average seen.

Usage::

    python benchmarks/threads_bench.py [-m BRMRS] [-d demo] [--data-path data]
        [--threads 1,2] [--epochs 5] [--rounds 2] [--busy]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import torch
threads = int(sys.argv[1])
if threads > 0:
    torch.set_num_threads(threads)
from mmrec_plugin.host.config import Config, expand_grid
from mmrec_plugin.runs import build
cfg = Config(sys.argv[2], sys.argv[3], config_dict={"data_path": sys.argv[4]})
if cfg["dataset"] == "demo":
    from mmrec_plugin.data.synthetic import ensure_demo
    ensure_demo(cfg["data_path"] + "demo")
run = build(cfg, expand_grid(cfg)[0])
trainer, tl, vl = run.trainer, run.train_data, run.valid_data
epochs = []
for e in range(int(sys.argv[5])):
    t = time.perf_counter()
    trainer.train_epoch(tl, e)
    epochs.append(time.perf_counter() - t)
t = time.perf_counter()
trainer.evaluate(vl)
print("RESULT " + json.dumps({"threads": torch.get_num_threads(), "epochs": epochs,
                              "eval": time.perf_counter() - t}))
"""


def measure(threads, args):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads), args.model, args.dataset,
                          args.data_path, str(args.epochs)], env=env, capture_output=True,
                         text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(out.stderr[-2000:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default="BRMRS")
    ap.add_argument("-d", "--dataset", default="demo")
    ap.add_argument("--data-path", default="data")
    ap.add_argument("--threads", default="1,2", help="comma-separated; 0 = torch's default")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="also measure with the other cores busy")
    args = ap.parse_args(argv)
    settings = [int(t) for t in args.threads.split(",")]
    measure(settings[0], args)  # warm-up: demo generation, graph cache
    loads = [False, True] if args.busy else [False]
    rows = []
    for loaded in loads:
        burners = []
        if loaded:
            burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                       for _ in range(max(1, (os.cpu_count() or 2) - 1))]
            time.sleep(1.0)  # let the burners reach the run queue before measuring
        try:
            results = {t: {"epochs": [], "eval": [], "load": []} for t in settings}
            for _ in range(args.rounds):
                for t in settings:
                    r = measure(t, args)
                    results[t]["epochs"] += r["epochs"][1:]  # the first epoch warms caches
                    results[t]["eval"].append(r["eval"])
                    results[t]["load"].append(os.getloadavg()[0])
                    results[t]["torch_threads"] = r["threads"]
        finally:
            for b in burners:
                b.kill()
                b.wait()
        for t in settings:
            r = results[t]
            rows.append((("busy" if loaded else "idle"), t, r["torch_threads"],
                         statistics.median(r["epochs"]), min(r["epochs"]), max(r["epochs"]),
                         statistics.median(r["eval"]), statistics.mean(r["load"])))
    print(f"{args.model} on {args.dataset}, {os.cpu_count()} cores, {args.epochs - 1} timed "
          f"epochs x {args.rounds} rounds per setting")
    print("other cores | --threads | torch threads | epoch s median (min-max) | eval s | load avg")
    for other, t, tt, med, lo, hi, ev, load in rows:
        print(f"{other:11} | {t if t else 'default':9} | {tt:13} | {med:.2f} ({lo:.2f}-{hi:.2f}) "
              f"| {ev:.2f} | {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
