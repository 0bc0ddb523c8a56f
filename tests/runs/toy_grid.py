"""A toy model for the grid-runner tests, and a script that runs a grid of it.

``SlowToy`` is a BPR-style embedding model; the environment steers what its constructor
does (files under ``TOY_DIR``, default the working directory):

- appends ``"<pid> <reg_weight>"`` to ``calls.txt``;
- ``N_RUNS``: first waits until that many ``started-*`` files exist (one per script run);
- ``KILL_AT``: SIGKILLs its own process when building that reg_weight, every time;
  ``KILL_ONCE_AT``: only the first time (a ``died-<reg_weight>`` mark file remembers);
- ``SLEEP``: then sleeps that many seconds.

Script: ``python toy_grid.py DATA_PATH GRID [more run flags]`` runs ``mmrec-plugin run`` of
``$TOY_MODEL`` (default SlowToy; or EpochToy) on the dataset ``tiny`` with ``--reg_weight "[GRID]"``, ``--epochs 1``, results in ``res/``, in
the script's process (``--workers 1``) unless the flags say otherwise.
"""
import os
import signal
import sys
import time

import torch

from mmrec_plugin.host.abstract_recommender import GeneralRecommender


#: a model module's source text (a BPR toy named ``{name}``), for tests that write a model file
TOY_SOURCE = '''
"""A toy BPR model."""
import torch
from mmrec_plugin.host.abstract_recommender import GeneralRecommender


class {name}(GeneralRecommender):
    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self.emb = torch.nn.Embedding(self.n_users + self.n_items, 4)

    def calculate_loss(self, x):
        u, p, n = self.emb(x[0]), self.emb(x[1] + self.n_users), self.emb(x[2] + self.n_users)
        return -torch.nn.functional.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()

    def full_sort_predict(self, x):
        return self.emb(x[0]) @ self.emb.weight[self.n_users:].T
'''


def _toy_dir() -> str:
    return os.environ.get("TOY_DIR", ".")


class _BPRToy(GeneralRecommender):
    """BPR over one embedding table of users and items (``dim`` wide)."""

    def __init__(self, config, dataloader, dim: int = 4):
        super().__init__(config, dataloader)
        self.emb = torch.nn.Embedding(self.n_users + self.n_items, dim)

    def calculate_loss(self, x):
        u, p, n = self.emb(x[0]), self.emb(x[1] + self.n_users), self.emb(x[2] + self.n_users)
        return -torch.nn.functional.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()

    def full_sort_predict(self, x):
        return self.emb(x[0]) @ self.emb.weight[self.n_users:].T


class SlowToy(_BPRToy):
    def __init__(self, config, dataloader):
        folder, reg = _toy_dir(), config["reg_weight"]
        deadline = time.time() + 120
        while (sum(f.startswith("started-") for f in os.listdir(folder))
               < int(os.environ.get("N_RUNS", "0")) and time.time() < deadline):
            time.sleep(0.05)
        with open(os.path.join(folder, "calls.txt"), "a") as fh:
            fh.write(f"{os.getpid()} {reg}\n")
        mark = os.path.join(folder, f"died-{reg}")
        if os.environ.get("KILL_AT") == str(reg) or (
                os.environ.get("KILL_ONCE_AT") == str(reg) and not os.path.exists(mark)):
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(os.environ.get("SLEEP", "0")))
        super().__init__(config, dataloader)


class EpochToy(_BPRToy):
    """A BPR model trained for several epochs; with ``KILL_EPOCH=e`` it SIGKILLs its own
    process when epoch ``e`` (counted from 1 in this process) starts, the first time only (a
    ``killed-epoch`` mark file in ``TOY_DIR`` remembers)."""

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader, dim=8)
        self.started = 0

    def pre_epoch_processing(self):
        self.started += 1
        mark = os.path.join(_toy_dir(), "killed-epoch")
        if os.environ.get("KILL_EPOCH") == str(self.started) and not os.path.exists(mark):
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def write_tiny(root, name="tiny", n_users=12, n_items=60):
    """A dataset ``<root>/<name>/``: per user 6 train, 1 valid, 1 test item (distinct).
    Returns each user's valid item."""
    import numpy as np

    rng = np.random.default_rng(3)
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    lines, valid = ["userID\titemID\tx_label"], []
    for u in range(n_users):
        items = rng.choice(n_items, 8, replace=False)
        valid.append(int(items[6]))
        lines += [f"{u}\t{i}\t{0 if j < 6 else j - 5}" for j, i in enumerate(items)]
    with open(os.path.join(folder, f"{name}.inter"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return valid


def calls(folder):
    """``[(pid, reg_weight), ...]`` in the order the constructor saw them."""
    path = os.path.join(str(folder), "calls.txt")
    if not os.path.exists(path):
        return []
    return [(int(p), float(r)) for p, r in (ln.split() for ln in open(path).read().splitlines())]


if __name__ == "__main__":
    from mmrec_plugin import registry
    from mmrec_plugin.cli import main
    from mmrec_plugin.utils import atomic_write_text

    open(os.path.join(_toy_dir(), f"started-{os.getpid()}"), "w").close()
    name = os.environ.get("TOY_MODEL", "SlowToy")
    yaml_path = os.path.abspath(f"{name}-{os.getpid()}.yaml")
    atomic_write_text(yaml_path, "reg_weight: [0.1]\nhyper_parameters: [reg_weight]\n"
                                 "is_multimodal_model: False\n")
    registry.register_model(name, {"SlowToy": SlowToy, "EpochToy": EpochToy}[name], config_path=yaml_path)
    extra = sys.argv[3:]
    if not any(flag in extra for flag in ("--workers", "--ray-address", "--scheduler")):
        extra = ["--workers", "1"] + extra
    sys.exit(main(["run", "-m", name, "-d", "tiny", "--data-path", sys.argv[1],
                   "--results-dir", "res", "--epochs", "1", "--reg_weight", f"[{sys.argv[2]}]"]
                  + extra))
