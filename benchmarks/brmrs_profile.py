"""Where one BRMRS training epoch on a dataset spends its CPU time: torch.profiler over one
epoch (after one warm-up epoch), operators grouped by the part of the step they serve.

    OMP_NUM_THREADS=1 python benchmarks/brmrs_profile.py -d baby --data-path DATA [--model BRMRS]

Prints the top operators by self CPU time and the time per ``record_function`` region the
model marks (propagation, smoothing, pools, losses, backward, optimiser).
"""
import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-d", "--dataset", required=True)
    ap.add_argument("--data-path", default="data")
    ap.add_argument("--model", default="BRMRS")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--shapes", action="store_true", help="group operators by input shapes")
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from mmrec_plugin.host.config import Config
    from mmrec_plugin.runs import build, load_data
    from mmrec_plugin.yamlio import parse_value

    overrides = {"data_path": args.data_path}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = parse_value(v)
    config = Config(args.model, args.dataset, config_dict=overrides)
    params = {k: config[k][0] for k in config["hyper_parameters"] if isinstance(config[k], list) and config[k]}
    run = build(config, params, load_data(config))
    run.trainer.train_epoch(run.train_data, 0)
    t0 = time.process_time()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        run.trainer.train_epoch(run.train_data, 1)
    total = time.process_time() - t0
    print(f"epoch CPU s (profiled): {total:.2f}")
    print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by="self_cpu_time_total",
                                                                   row_limit=args.rows))


if __name__ == "__main__":
    main()
