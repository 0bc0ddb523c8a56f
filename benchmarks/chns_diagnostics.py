"""Why does CHNS help or hurt? Per-epoch instruments for one BRMRS configuration.

Trains BRMRS with the host's loaders and trainer (the same path as ``main.py``) and records,
per epoch, in a JSON file:

- ``valid``: Recall@20 of the text, visual and fused branches on the validation users
  (the fused one is what early stopping reads);
- ``false_neg``: the share of the CHNS negatives chosen that epoch that are one of the user's
  validation or test items (items the user does like: a false negative), for the text
  branch's and the visual branch's negatives, next to the same share for a uniform pool item
  (what chance gives);
- ``grad``: on the epoch's first batch, the gradient norm (all parameters) of each loss term
  alone (``bpr``, ``chns``, ``syn``; reg excluded), at the weights in the config.

Usage (from the repository root; the extra ``--KEY VALUE`` pairs are config overrides)::

    OMP_NUM_THREADS=1 python benchmarks/chns_diagnostics.py -d baby --data-path DIR \\
        --out diag.json --epochs 30 [--chns_weight 0.25 ...]
"""
import argparse
import json
import logging
import sys
import time

import numpy as np
import torch
import yaml

from mmrec_plugin.host.config import Config
from mmrec_plugin.runs import build, load_data


def _codes(ds, n_items):
    m = ds.inter_matrix(form="coo")
    return np.unique(m.row.astype(np.int64) * n_items + m.col.astype(np.int64))


def _share_in(codes, users, items, n_items):
    c = users.cpu().numpy().astype(np.int64) * n_items + items.cpu().numpy().astype(np.int64)
    pos = np.searchsorted(codes, c).clip(max=len(codes) - 1)
    return int((codes[pos] == c).sum()), int(c.size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-d", "--dataset", default="baby")
    ap.add_argument("--data-path", default="data/")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    args, rest = ap.parse_known_args(argv)
    over = {}
    for k, v in zip(rest[::2], rest[1::2]):
        over[k.lstrip("-")] = yaml.safe_load(v)
    over.update(data_path=args.data_path, epochs=args.epochs)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = Config("BRMRS", args.dataset, config_dict=over)
    # one combination: the first value of every grid key
    params = {k: cfg[k][0] for k in cfg["hyper_parameters"] if isinstance(cfg[k], list) and cfg[k]}
    data = load_data(cfg)
    run = build(cfg, params, data)
    model, trainer, train, valid = run.model, run.trainer, run.train_data, run.valid_data
    valid_ds, test_ds = data.valid, data.test
    n_items = model.n_items
    held = np.union1d(_codes(valid_ds, n_items), _codes(test_ds, n_items))

    counts = {"t": [0, 0], "v": [0, 0], "uniform": [0, 0]}
    objective = model.net.objective
    orig_negatives = objective.negatives

    def negatives(users, branches, fused=None, pos=None, **kw):
        neg = orig_negatives(users, branches, fused, pos, **kw)
        for name, items in (("t", neg["text"]), ("v", neg["visual"])):
            a, b = _share_in(held, users, items, n_items)
            counts[name][0] += a
            counts[name][1] += b
        uni = torch.randint(n_items, users.shape, device=users.device)
        a, b = _share_in(held, users, uni, n_items)
        counts["uniform"][0] += a
        counts["uniform"][1] += b
        return neg

    objective.negatives = negatives

    def term_grads(batch):
        """Gradient norm of each weighted term of one batch (same pools for all terms)."""
        params = [p for p in model.parameters() if p.requires_grad]
        state = torch.get_rng_state()
        terms = model.net.loss_terms(batch[0], batch[1], batch[2])
        torch.set_rng_state(state)
        out = {}
        for name in ("bpr", "chns", "syn"):
            if name in terms:
                grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
                out[name] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))
        return out

    fused_predict = model.full_sort_predict
    history = []
    for epoch in range(args.epochs):
        for c in counts.values():
            c[0] = c[1] = 0
        model.train()
        first = next(iter(train))
        model.pre_epoch_processing()
        grads = term_grads(first)
        objective._epochs_started -= 1  # term_grads ran no epoch; the trainer's call counts it
        t0 = time.time()
        loss = trainer.train_epoch(train, epoch)
        trainer.lr_scheduler.step()
        rec = {}
        for branch in ("t", "v", "f"):
            if branch == "f":
                model.full_sort_predict = fused_predict
            else:
                model.full_sort_predict = (lambda inter, b=branch: model.branch_scores(inter[0])[b])
            rec[branch] = trainer.evaluate(valid)["recall@20"]
        model.full_sort_predict = fused_predict
        row = {
            "epoch": epoch, "loss": loss, "seconds": time.time() - t0, "valid": rec, "grad": grads,
            "false_neg": {k: (a / b if b else None) for k, (a, b) in counts.items()},
        }
        history.append(row)
        print(json.dumps(row), flush=True)
    with open(args.out, "w") as f:
        json.dump({"config": {k: v for k, v in over.items()}, "history": history}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
