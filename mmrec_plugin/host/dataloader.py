"""Training and evaluation loaders with MMRec's batch formats.

Training (:class:`TrainDataLoader`): every epoch the training pairs ``(u, i)`` are shuffled and
each gets one negative ``j`` drawn uniformly from ``I_train \\ I_u``, where ``I_train`` is the
set of items that appear in training and ``I_u`` the user's training items. Sampling is
vectorised rejection sampling: draw all ``j`` uniformly from ``I_train``, look up the codes
``u * n_items + j`` in the sorted array of training codes (``np.searchsorted``) and redraw only
the collisions. A batch is ``LongTensor[3, B]`` = (users, positives, negatives).

Evaluation (:class:`EvalDataLoader`): the users with at least one interaction in the
evaluated split, in increasing id order; a batch is ``[users LongTensor[B], mask LongTensor[2,
nnz]]`` where ``mask`` lists ``(row in batch, item)`` for the user's TRAINING items (from
``additional_dataset``), which the trainer sets to ``-1e10`` before ranking. Only training
items are masked (MMRec's rule): validation items are not masked at test time, nor test items
at validation time. The ground truth is exposed as CSR arrays ``eval_items_per_user =
(indptr, indices)`` aligned with :attr:`EvalDataLoader.eval_users`.

Args (config keys):
    device (torch.device): where batches are put.
    seed (int or [int]): seeds the negative sampler and the shuffle (first entry of a list).
"""
from __future__ import annotations

import logging
import math
from typing import Iterator, List, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from mmrec_plugin.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_MAX_REJECTION_ROUNDS = 1000


def _seed_of(config) -> int:
    seed = config["seed"] if "seed" in config else None
    if isinstance(seed, (list, tuple)):
        seed = seed[0] if seed else None
    if seed is None:
        return 0
    try:
        return int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"config key 'seed' must be an integer, got {seed!r}") from None


def _device_of(config) -> torch.device:
    dev = config["device"] if "device" in config else None
    return torch.device(dev) if dev is not None else torch.device("cpu")


def _check_batch_size(batch_size, key: str) -> int:
    try:
        b = int(batch_size)
    except (TypeError, ValueError):
        b = 0
    if b <= 0 or b != batch_size:
        raise ConfigError(f"config key '{key}' must be a positive integer, got {batch_size!r}")
    return b


class TrainDataLoader:
    """Shuffled (user, positive, uniform negative) batches; see the module docstring.

    Args:
        config: the run configuration (``device``, ``seed``).
        dataset: the training :class:`~mmrec_plugin.host.dataset.RecDataset`.
        batch_size (int): pairs per batch (``train_batch_size``).
        shuffle (bool): shuffle the pairs each epoch (default True).
    """

    def __init__(self, config, dataset, batch_size: int, shuffle: bool = True):
        self.config = config
        self.dataset = dataset
        self.batch_size = _check_batch_size(batch_size, "train_batch_size")
        self.shuffle = bool(shuffle)
        self.device = _device_of(config)
        self.n_items = int(dataset.get_item_num())
        users = np.asarray(dataset.users, dtype=np.int64)
        items = np.asarray(dataset.items, dtype=np.int64)
        if len(users) == 0:
            raise DataError("the training split has no interactions")
        self.users = users
        self.items = items
        # sorted, de-duplicated codes of the training pairs, for membership tests
        self._codes = np.unique(users * self.n_items + items)
        # the candidate negatives: items seen in training
        self.candidate_items = np.unique(items)
        per_user = np.bincount(self._codes // self.n_items)
        full = np.nonzero(per_user >= len(self.candidate_items))[0]
        if len(full):
            raise DataError(
                f"user {int(full[0])} interacted with all {len(self.candidate_items)} training "
                f"items, so no negative item can be sampled for them"
            )
        self._rng = np.random.default_rng(_seed_of(config))
        self.step = self.batch_size
        self.pr = 0

    # ------------------------------------------------------------------ MMRec API
    def pretrain_setup(self) -> None:
        """Reset the sampler to ``config['seed']`` (called once per grid combination)."""
        self._rng = np.random.default_rng(_seed_of(self.config))

    def rng_state(self) -> dict:
        """The sampler's generator state (a resumed run continues its draws)."""
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def inter_matrix(self, form: str = "coo", value_field=None):
        """The training matrix of ones, ``(n_users, n_items)``; ``form`` 'coo' or 'csr'."""
        return self.dataset.inter_matrix(form=form)

    def get_user_num(self) -> int:
        return self.dataset.get_user_num()

    def get_item_num(self) -> int:
        return self.dataset.get_item_num()

    def __len__(self) -> int:
        return math.ceil(len(self.users) / self.batch_size)

    # ------------------------------------------------------------------ sampling
    def sample_negatives(self, users: np.ndarray) -> np.ndarray:
        """One uniform negative from ``I_train \\ I_u`` for each entry of ``users`` (vectorised)."""
        users = np.asarray(users, dtype=np.int64)
        cand = self.candidate_items
        neg = cand[self._rng.integers(0, len(cand), size=len(users))]
        todo = np.arange(len(users))
        for _ in range(_MAX_REJECTION_ROUNDS):
            codes = users[todo] * self.n_items + neg[todo]
            pos = np.searchsorted(self._codes, codes)
            pos[pos == len(self._codes)] = 0
            clash = self._codes[pos] == codes
            todo = todo[clash]
            if len(todo) == 0:
                return neg
            neg[todo] = cand[self._rng.integers(0, len(cand), size=len(todo))]
        raise RuntimeError("negative sampling did not converge")  # unreachable in practice

    def epoch_tensor(self) -> torch.Tensor:
        """All pairs of one epoch, shuffled, with fresh negatives: ``LongTensor[3, N]``."""
        n = len(self.users)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        u = self.users[order]
        i = self.items[order]
        j = self.sample_negatives(u)
        return torch.from_numpy(np.stack([u, i, j])).to(self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        data = self.epoch_tensor()
        n = data.shape[1]
        for start in range(0, n, self.batch_size):
            yield data[:, start:start + self.batch_size]


class EvalDataLoader:
    """Full-ranking evaluation batches; see the module docstring.

    Args:
        config: the run configuration (``device``).
        eval_dataset: the evaluated split (valid or test).
        additional_dataset: the training split, whose items are masked.
        batch_size (int): users per batch (``eval_batch_size``).
    """

    def __init__(self, config, eval_dataset, additional_dataset=None, batch_size: int = 4096):
        self.config = config
        self.dataset = eval_dataset
        self.additional_dataset = additional_dataset
        self.batch_size = _check_batch_size(batch_size, "eval_batch_size")
        self.device = _device_of(config)
        n_users, n_items = eval_dataset.get_user_num(), eval_dataset.get_item_num()
        self.n_items = n_items
        gt = eval_dataset.inter_matrix(form="csr")  # sorted indices, duplicates merged
        gt.sort_indices()
        counts = np.diff(gt.indptr)
        self.eval_users = np.nonzero(counts > 0)[0].astype(np.int64)
        sub = gt[self.eval_users]
        sub.sort_indices()
        self.eval_items_per_user: Tuple[np.ndarray, np.ndarray] = (
            sub.indptr.astype(np.int64), sub.indices.astype(np.int64)
        )
        if additional_dataset is not None:
            train = additional_dataset.inter_matrix(form="csr")
        else:
            train = sp.csr_matrix((n_users, n_items), dtype=np.float32)
        self._mask = train[self.eval_users]
        self._mask.sort_indices()
        self._users_t = torch.from_numpy(self.eval_users)
        self.step = self.batch_size
        self.pr = 0

    # ------------------------------------------------------------------ evaluator API
    def get_eval_users(self) -> np.ndarray:
        return self.eval_users

    def get_eval_len_list(self) -> np.ndarray:
        """``|T_u|`` for each evaluated user, in order."""
        return np.diff(self.eval_items_per_user[0])

    def get_eval_items(self) -> List[np.ndarray]:
        """The ground-truth items of each evaluated user (a list; prefer the CSR arrays)."""
        indptr, indices = self.eval_items_per_user
        return np.split(indices, indptr[1:-1])

    def inter_matrix(self, form: str = "coo"):
        return self.dataset.inter_matrix(form=form)

    def __len__(self) -> int:
        return math.ceil(len(self.eval_users) / self.batch_size)

    def batch(self, start: int, stop: int) -> List[torch.Tensor]:
        """The batch of evaluated users ``start:stop`` (positions in :attr:`eval_users`)."""
        ptr = self._mask.indptr
        lo, hi = ptr[start], ptr[stop]
        rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(ptr[start:stop + 1]))
        cols = self._mask.indices[lo:hi].astype(np.int64)
        mask = torch.from_numpy(np.stack([rows, cols])).to(self.device)
        return [self._users_t[start:stop].to(self.device), mask]

    def __iter__(self) -> Iterator[List[torch.Tensor]]:
        n = len(self.eval_users)
        for start in range(0, n, self.batch_size):
            yield self.batch(start, min(start + self.batch_size, n))
