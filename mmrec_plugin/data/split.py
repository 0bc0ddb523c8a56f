"""Per-user splits of interactions: MMRec's random rule and leave-one-out.

MMRec's rule (its preprocessing notebook ``1splitting.ipynb``): shuffle all interactions,
group them by user keeping the shuffled order, and for a user with ``n`` interactions label
the first ``n_train`` train (0), the next ``n_valid`` valid (1), the rest test (2):

- ``n >= 10``: ``h = floor(0.2 n)`` held out, ``n_valid = h // 2``, ``n_test = h - n_valid``,
  ``n_train = n - h`` (about 80/10/10);
- ``3 <= n < 10``: ``n_train = n - 2``, one valid, one test;
- ``n < 3`` (our choice, documented): everything train. MMRec's code gives a user with
  2 interactions one valid and one test item and no training item (a cold user that no
  model can score from its history), and for ``n = 1`` it emits two labels for one row, so
  every later label is shifted by one (its 5-core data never has such users). Keeping such
  users in train avoids both.

Leave-one-out (the paper's stated protocol): for a user with ``n >= 3`` interactions one
random item is valid, another test, the rest train; users with ``n < 3`` keep everything
in train.

Both are vectorised (one ``lexsort`` on (random key, user); no per-user Python loop) and
deterministic for a seed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np

SeedLike = Union[int, np.random.Generator, np.random.SeedSequence]


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def random_ranks(users: np.ndarray, seed: SeedLike) -> Tuple[np.ndarray, np.ndarray]:
    """A random position of each interaction within its user's group, and the group size.

    Returns:
        pos: ``int64 [n]``, a uniformly random permutation of ``0..n_u-1`` within each user.
        count: ``int64 [n]``, ``n_u`` of each interaction's user.
    """
    users = np.asarray(users, dtype=np.int64)
    n = users.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = _rng(seed).random(n)
    order = np.lexsort((key, users))
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    su = users[order]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64) - starts[su]
    return pos, counts[users]


def mmrec_split(users: np.ndarray, seed: SeedLike = 0) -> np.ndarray:
    """Labels (``int8``: 0 train, 1 valid, 2 test) by MMRec's per-user random rule (see module)."""
    pos, n = random_ranks(users, seed)
    held = np.where(n >= 10, n // 5, np.where(n >= 3, 2, 0))
    n_valid = np.where(n >= 10, held // 2, np.where(n >= 3, 1, 0))
    n_train = n - held
    labels = np.zeros(pos.shape[0], dtype=np.int8)
    labels[pos >= n_train] = 1
    labels[pos >= n_train + n_valid] = 2
    return labels


def loo_split(users: np.ndarray, seed: SeedLike = 0) -> np.ndarray:
    """Leave-one-out labels: one random valid and one random test item per user with n >= 3."""
    pos, n = random_ranks(users, seed)
    labels = np.zeros(pos.shape[0], dtype=np.int8)
    ok = n >= 3
    labels[ok & (pos == 0)] = 1
    labels[ok & (pos == 1)] = 2
    return labels


def split_counts(n: int, loo: bool = False) -> Tuple[int, int, int]:
    """(train, valid, test) sizes for a user with ``n`` interactions under either rule."""
    if n < 3:
        return n, 0, 0
    if loo:
        return n - 2, 1, 1
    if n < 10:
        return n - 2, 1, 1
    h = n // 5
    return n - h, h // 2, h - h // 2


def resplit_dataset(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], name: str,
                    loo: bool = False, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a copy of dataset folder ``src`` with new splits as ``<out_dir>/<name>``.

    All interactions of ``src`` are pooled (their old ``x_label`` ignored; duplicate
    (user, item) pairs dropped, with a warning) and relabelled by :func:`mmrec_split` or,
    with ``loo``, :func:`loo_split`. The feature files named by the source's dataset keys,
    and a ground-truth ``.types`` file if present, are copied; a new ``<name>.yaml`` is
    written. The folder is published atomically.
    """
    import logging
    import shutil

    from mmrec_plugin.data import files

    target = files.target_folder(out_dir, name)
    src = files.check_folder(src)
    if target.resolve() == src.resolve():
        from mmrec_plugin.errors import DataError

        raise DataError(f"{target}: resplit writes a new dataset folder; choose another --name")
    keys = files.dataset_keys(src)
    inter = files.read_dataset(src)
    feats = files.feature_paths(src)
    users, items = inter.users, inter.items
    n_items = max(inter.n_items, 1)
    _, first = np.unique(users * np.int64(n_items) + items, return_index=True)
    if first.size < users.size:
        logging.getLogger(__name__).warning("%s: dropped %d duplicate (user, item) pair(s)",
                                            inter.path, users.size - first.size)
        keep = np.sort(first)
        users, items = users[keep], items[keep]
    labels = loo_split(users, seed) if loo else mmrec_split(users, seed)
    with files.atomic_dir(target, overwrite=overwrite) as tmp:
        files.write_inter(tmp / f"{name}.inter", users, items, labels)
        for slot, path in feats.items():
            if path.is_file():
                shutil.copyfile(path, tmp / path.name)
            else:
                logging.getLogger(__name__).warning("%s: no %s feature file %s", src, slot,
                                                    path.name)
        if "feature_files" in keys:
            extra = {"feature_files": {m: p.name for m, p in feats.items()}}
        else:
            extra = {"vision_feature_file": feats["visual"].name,
                     "text_feature_file": feats["text"].name}
        files.write_dataset_yaml(tmp / f"{name}.yaml", name, extra)
        types = src / f"{inter.path.stem}.types"
        if types.is_file():
            shutil.copyfile(types, tmp / f"{name}.types")
    return target
