"""Micro-benchmark: ``torch.topk(scores, k, dim=1)`` vs ``evaluator.topk_rows`` on CPU.

Score blocks are ``[B, d] @ [d, n_items]`` products of random factors (as in
``mmrec-plugin bench``'s floor), ``B = 4096`` users, ``d = 64``, at the Baby (7050 items)
and Clothing (23033 items) sizes. Prints process-CPU milliseconds per block (the median of
``--repeats`` runs, all threads counted), the wall milliseconds, and the ratio
``torch.topk / topk_rows``; checks that the values are equal.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/topk_bench.py [--threads 1] [--k 50] [--repeats 5]
"""
import argparse
import statistics
import time

import torch

from mmrec_plugin.host.evaluator import topk_rows

SHAPES = {"baby": 7050, "clothing": 23033}


def _time(fn, repeats):
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--items", type=int, nargs="*", help="n_items to try instead of Baby/Clothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    shapes = {f"n={n}": n for n in args.items} if args.items else SHAPES
    print(f"threads={args.threads} B={args.batch} k={args.k} (ms per block: CPU / wall)")
    for name, n in shapes.items():
        scores = torch.randn(args.batch, 64, generator=gen) @ torch.randn(64, n, generator=gen)
        ref_v, _ = torch.topk(scores, args.k, dim=1)
        v, i = topk_rows(scores, args.k)
        same = torch.equal(v, ref_v) and torch.equal(scores.gather(1, i), v)
        t_cpu, t_wall = _time(lambda: torch.topk(scores, args.k, dim=1), args.repeats)
        f_cpu, f_wall = _time(lambda: topk_rows(scores, args.k), args.repeats)
        print(f"{name:9s} n={n:6d}  torch.topk {t_cpu:7.1f} / {t_wall:7.1f}   "
              f"topk_rows {f_cpu:7.1f} / {f_wall:7.1f}   ratio CPU {t_cpu / f_cpu:.2f}x "
              f"wall {t_wall / f_wall:.2f}x   values equal: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
