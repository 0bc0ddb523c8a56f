"""Cold-start items: evaluation on items that training never saw (the protocol of CLCRec and GAR).

A cold-item split (``mmrec-plugin data resplit --cold-items FRACTION``) lists its cold items
in ``<data_path>/<dataset>/<dataset>.cold`` (one item id per line, after a header line
``itemID``): items with features whose interactions all went to valid and test. On such a
dataset every run reports, besides the usual metrics (all items ranked, training items
masked):

- ``valid_cold`` / ``test_cold``: each user's held-out cold items ranked among the cold items
  only (:class:`ColdEvalDataLoader`; users without a cold item in the split are not
  evaluated);
- ``valid_warm`` / ``test_warm``: the usual ranking over all items, with the ground truth
  restricted to warm items (those with training interactions), so that the warm quality can
  be compared with a standard split's.
"""
from __future__ import annotations

import math
import os
from typing import Iterator, List, Optional

import numpy as np
import torch

from mmrec_plugin.errors import DataError

__all__ = ["cold_items_path", "read_cold_items", "ColdEvalDataLoader", "warm_only"]


def cold_items_path(config) -> str:
    return os.path.join(str(config["data_path"]), str(config["dataset"]), f"{config['dataset']}.cold")


def read_cold_items(config, n_items: int) -> Optional[np.ndarray]:
    """The sorted cold item ids of the dataset, or None when it has no ``.cold`` file."""
    path = cold_items_path(config)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip()]
    if not lines or lines[0] != "itemID":
        raise DataError(f"{path}: expected a header line 'itemID', then one item id per line")
    ids = []
    for line_no, text in enumerate(lines[1:], start=2):
        if not (text.isascii() and text.isdigit()) or int(text) >= n_items:
            raise DataError(f"{path}, line {line_no}: {text[:30]!r} is not an item id in 0..{n_items - 1}")
        ids.append(int(text))
    if not ids:
        raise DataError(f"{path} lists no cold items")
    return np.unique(np.asarray(ids, dtype=np.int64))


class ColdEvalDataLoader:
    """Batches of the users with a held-out cold item in ``eval_dataset``; their items are
    ranked among ``cold_items`` only (the loader's ``columns``), ground truth = their
    held-out cold items as positions in ``cold_items``. A batch is ``[users, mask]`` with an
    empty mask (no training item is cold).

    The evaluator and :func:`~mmrec_plugin.host.evaluator.rank_loader` read ``columns``,
    ``eval_users``, ``eval_items_per_user`` and ``n_items`` (= the number of cold items).
    """

    def __init__(self, config, eval_dataset, cold_items: np.ndarray, batch_size: int = 4096):
        self.device = torch.device(config["device"])
        self.batch_size = int(batch_size)
        cold = np.asarray(cold_items, dtype=np.int64)
        pos = np.full(eval_dataset.get_item_num(), -1, dtype=np.int64)
        pos[cold] = np.arange(len(cold))
        users = np.asarray(eval_dataset.users, dtype=np.int64)
        items = pos[np.asarray(eval_dataset.items, dtype=np.int64)]
        keep = items >= 0
        users, items = users[keep], items[keep]
        codes = np.unique(users * len(cold) + items)
        users, items = codes // len(cold), codes % len(cold)
        self.eval_users, counts = np.unique(users, return_counts=True)
        self.eval_items_per_user = (np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items)
        self.n_items = len(cold)
        self.columns = torch.as_tensor(cold, device=self.device)
        self._users_t = torch.from_numpy(self.eval_users)

    def get_eval_users(self) -> np.ndarray:
        return self.eval_users

    def get_eval_len_list(self) -> np.ndarray:
        return np.diff(self.eval_items_per_user[0])

    def __len__(self) -> int:
        return math.ceil(len(self.eval_users) / self.batch_size)

    def __iter__(self) -> Iterator[List[torch.Tensor]]:
        empty = torch.zeros((2, 0), dtype=torch.long, device=self.device)
        for start in range(0, len(self.eval_users), self.batch_size):
            yield [self._users_t[start:start + self.batch_size].to(self.device), empty]


def warm_only(eval_dataset, cold_items: np.ndarray):
    """``eval_dataset`` without its interactions with ``cold_items`` (same counts)."""
    cold = np.zeros(eval_dataset.get_item_num(), dtype=bool)
    cold[np.asarray(cold_items, dtype=np.int64)] = True
    keep = ~cold[eval_dataset.items]
    return eval_dataset.copy({"users": eval_dataset.users[keep], "items": eval_dataset.items[keep],
                              "labels": eval_dataset.labels[keep]})
