"""Cold-item splits: a share of the items lose all their training interactions.

``cold_split(users, items, labels, fraction, seed)``: ``round(fraction * n)`` of the ``n``
items with interactions are drawn uniformly (seeded) as cold items; all their interactions
leave training: each user's interactions with cold items are shuffled and split half to
valid, half to test (an odd one goes to test). The other interactions keep their labels, so
the warm part of the split is the source's. A user left without a training interaction by
the draw would be a cold user too, so the items of such users are put back among the warm
items (and kept warm), and other items are drawn in their place, until every user who had
training interactions still has one (the share ends below ``fraction`` only when no item
can be drawn; the count is logged and returned).

``cold_resplit_dataset`` writes the result as a new dataset folder with a ``<name>.cold``
file (a header ``itemID``, then one cold item per line), which every run on it reads to
report the cold-item metrics (:mod:`mmrec_plugin.host.cold`).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from mmrec_plugin.errors import DataError, UserError

logger = logging.getLogger(__name__)

__all__ = ["cold_split", "cold_resplit_dataset", "MAX_COLD_FRACTION"]

#: the largest share of cold items (at least a tenth of the items stay warm)
MAX_COLD_FRACTION = 0.9


def check_fraction(fraction) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not (0.0 < f <= MAX_COLD_FRACTION):
        raise UserError(f"--cold-items must be a fraction in (0, {MAX_COLD_FRACTION}], got {fraction!r}")
    return f


def cold_split(users: np.ndarray, items: np.ndarray, labels: np.ndarray, fraction: float,
               seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(new labels, sorted cold item ids)`` (module docstring)."""
    fraction = check_fraction(fraction)
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64).copy()
    rng = np.random.default_rng(seed)
    present = np.unique(items)
    n_cold = int(round(fraction * len(present)))
    if n_cold < 1:
        raise UserError(f"--cold-items {fraction}: {len(present)} items give no cold item")
    is_cold = np.zeros(int(items.max()) + 1, dtype=bool)
    protected = np.zeros_like(is_cold)  # items put back so that a user keeps a training item
    train = labels == 0
    had_train = np.unique(users[train])
    while True:
        need = n_cold - int(is_cold.sum())
        candidates = present[~is_cold[present] & ~protected[present]]
        if need > 0 and candidates.size:
            is_cold[rng.choice(candidates, size=min(need, candidates.size), replace=False)] = True
        left = np.unique(users[train & ~is_cold[items]])
        lost = np.setdiff1d(had_train, left)
        if lost.size == 0 and (need <= 0 or candidates.size == 0):
            break
        back = np.unique(items[train & np.isin(users, lost)])
        is_cold[back] = False
        protected[back] = True
    moved = is_cold[items]
    idx = np.nonzero(moved)[0]
    # per user: a random order of their cold interactions, the first half to valid
    order = idx[np.lexsort((rng.random(idx.size), users[idx]))]
    u = users[order]
    start = np.searchsorted(u, u, side="left")
    count = np.searchsorted(u, u, side="right") - start
    rank = np.arange(order.size) - start
    labels[order] = np.where(rank < count // 2, 1, 2)
    cold = np.nonzero(is_cold)[0]
    logger.info("cold items: %d of %d (%.1f%%), %d interactions moved to valid/test", cold.size,
                present.size, 100.0 * cold.size / present.size, idx.size)
    return labels, cold


def cold_resplit_dataset(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], name: str,
                         fraction: float, seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``src`` with a cold-item split as ``<out_dir>/<name>`` (module docstring): its
    interaction file, its feature files (copied), a dataset yaml and ``<name>.cold``; the
    folder is published atomically."""
    from mmrec_plugin.data import files

    fraction = check_fraction(fraction)
    target = files.target_folder(out_dir, name)
    src = files.check_folder(src)
    if target.resolve() == src.resolve():
        raise DataError(f"{target}: resplit writes a new dataset folder; choose another --name")
    inter = files.read_dataset(src)
    if inter.labels is None:
        raise DataError(f"{inter.path}: no x_label column; a cold-item split starts from a split "
                        f"(mmrec-plugin data resplit without --cold-items makes one)")
    labels, cold = cold_split(inter.users, inter.items, inter.labels, fraction, seed)
    feats = files.feature_paths(src)
    with files.atomic_dir(target, overwrite=overwrite) as tmp:
        files.write_inter(tmp / f"{name}.inter", inter.users, inter.items, labels)
        for slot, path in feats.items():
            if not path.is_file():
                raise DataError(f"{src}: cold items are ranked from their content, but the "
                                f"{slot} feature file {path.name} is missing")
            shutil.copyfile(path, tmp / path.name)
        extra = {"vision_feature_file": feats["visual"].name, "text_feature_file": feats["text"].name}
        files.write_dataset_yaml(tmp / f"{name}.yaml", name, extra)
        with open(tmp / f"{name}.cold", "w", encoding="utf-8") as fh:
            fh.write("itemID\n" + "".join(f"{int(i)}\n" for i in cold))
    return target
