"""One BRMRS training epoch split into the parts of a step, in CPU ms per step.

    python benchmarks/brmrs_step_profile.py -d baby --data-path DATA [--set KEY=VALUE ...]

torch.profiler (no shapes) over the second epoch; the parts are ``record_function`` regions
put around the model's pieces here (the package is not changed) and autograd's backward
nodes. Inclusive times: a region's children are part of it.
"""
import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function


def _wrap(obj, name, label):
    fn = getattr(obj, name)

    def wrapped(*a, **k):
        with record_function(label):
            return fn(*a, **k)

    setattr(obj, name, wrapped)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-d", "--dataset", required=True)
    ap.add_argument("--data-path", default="data")
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides")
    ap.add_argument("--ops", type=int, default=0, help="also print the top N operators")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from mmrec_plugin.utils import tune_allocator

    tune_allocator()  # as the entry points do
    from mmrec_plugin.host.config import Config
    from mmrec_plugin.method import model as mm
    from mmrec_plugin.method import objective as ob
    from mmrec_plugin.runs import build, load_data
    from mmrec_plugin.yamlio import parse_value

    overrides = {"data_path": args.data_path}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = parse_value(v)
    config = Config("BRMRS", args.dataset, config_dict=overrides)
    params = {k: config[k][0] for k in config["hyper_parameters"] if isinstance(config[k], list) and config[k]}
    run = build(config, params, load_data(config))
    for name, label in [("lightgcn_l2", "lightgcn fwd"), ("smooth", "smooth items fwd"),
                        ("smooth_rows", "smooth_rows users fwd")]:
        _wrap(mm, name, label)
    for name in ("layer0", "_layer0_blocks"):  # (the training step's layer-0 assembly)
        if hasattr(mm.BRMRSNet, name):
            _wrap(mm.BRMRSNet, name, "layer0 fwd")
    _wrap(mm.BRMRSNet, "start_epoch", "start_epoch (pruned G_ui)")
    _wrap(mm.BRMRSNet, "loss_terms", "loss_terms fwd (all)")
    _wrap(ob.BRObjective, "candidate_pool", "pool sampling")
    _wrap(ob.BRObjective, "negatives", "pool scoring + selection")
    _wrap(ob.BRObjective, "forward", "objective fwd (all)")
    opt = run.trainer.optimizer
    _wrap(opt, "step", "optimizer step")
    _wrap(opt, "zero_grad", "zero_grad")
    orig_backward = torch.Tensor.backward

    def backward(self, *a, **k):
        with record_function("backward (all)"):
            return orig_backward(self, *a, **k)

    torch.Tensor.backward = backward
    run.trainer.train_epoch(run.train_data, 0)
    steps = len(run.train_data) if hasattr(run.train_data, "__len__") else None
    t0 = time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run.trainer.train_epoch(run.train_data, 1)
    total = time.process_time() - t0
    t1 = time.process_time()
    run.trainer.train_epoch(run.train_data, 2)
    plain = time.process_time() - t1
    if not steps:
        steps = sum(1 for _ in run.train_data)
    print(f"steps/epoch {steps}; epoch CPU s profiled {total:.2f}, unprofiled {plain:.2f} "
          f"({1000 * plain / steps:.1f} ms/step)")
    rows = collections.OrderedDict()
    for e in prof.key_averages():
        key = e.key
        if key.startswith("autograd::engine::evaluate_function: "):
            key = "bwd " + key.split(": ", 1)[1]
        elif not (" " in key and not key.startswith("aten::")):
            continue
        rows[key] = (e.cpu_time_total / 1000.0 / steps, e.count / steps)
    print(f"{'part':48s} {'ms/step':>8s} {'calls/step':>10s}")
    for key, (ms, n) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        if ms >= 0.05:
            print(f"{key:48s} {ms:8.2f} {n:10.2f}")
    if args.ops:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
