"""Recommendations out of a trained model: :class:`TrainedModel` and ``mmrec-plugin recommend``.

::

    mmrec-plugin recommend RESULTS_JSON [--combination best|ID|N] [--users all|FILE] [--k 20]
                           [--exclude train|train+valid|none] [--out FILE.csv|FILE.jsonl]
                           [--data-path DIR] [--batch-size N]

Top-K items per user from a finished run (default: the combination selected by validation),
ranked exactly as the evaluator ranks them (:func:`mmrec_plugin.host.evaluator.rank_batch`):
the model's full-ranking scores, the excluded items set to the mask value, the K best. With
the default ``--exclude train`` (MMRec's rule at test time: only training items are masked),
recall@K recomputed from the file against the test split equals the run's test recall@K.
Users are scored in batches (``--batch-size``, default ``eval_batch_size``): no users x items
matrix is built.

Ids are the dataset's own, as in its ``.inter`` file. Where the dataset folder holds MMRec's
id maps (``u_id_mapping.csv``, ``i_id_mapping.csv``: the original id, then the mapped one),
the output also carries the original ids (``user_original``, ``item_original``).

Output by extension: ``.csv`` (``user_id,rank,item_id,score[,user_original,item_original]``,
one row per recommendation, rank from 1) or ``.jsonl`` (one object per user: ``user_id``,
``items``, ``scores``[, originals]); written to a temporary file and moved into place. A user
with fewer than K items left after the exclusion gets only those.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np

from mmrec_plugin.errors import DataError, UserError

logger = logging.getLogger(__name__)

__all__ = ["TrainedModel", "load_model", "EXCLUDE", "add_arguments", "run"]

EXCLUDE = ("train", "train+valid", "none")


def _id_map(path: str) -> Optional[Dict[int, str]]:
    """MMRec's id map (``<original>\\t<mapped id>`` lines after a header) as mapped -> original."""
    if not os.path.isfile(path):
        return None
    out: Dict[int, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)
        for row in reader:
            if len(row) >= 2 and row[1].strip().isdigit():
                out[int(row[1])] = row[0]
    return out


class TrainedModel:
    """A trained model, ready to recommend (what :func:`mmrec_plugin.load_model` returns).

    Args:
        run: the :class:`~mmrec_plugin.runs.build.Run` of a combination whose weights are loaded.

    Attributes:
        model, config, record: the model (eval mode), its config and its combination's record.
        n_users, n_items: the dataset's counts (valid ids are ``0 .. n - 1``).
    """

    def __init__(self, run):
        self.run = run
        self.model, self.config, self.record = run.model, run.config, run.record or {}
        self.n_users = int(run.data.full.get_user_num())
        self.n_items = int(run.data.full.get_item_num())
        self.model.eval()

    def __repr__(self) -> str:
        return (f"TrainedModel({self.config['model']} on {self.config['dataset']}, combination "
                f"{self.record.get('id')}, {self.n_users} users, {self.n_items} items)")

    # -- helpers -------------------------------------------------------------------------
    def _users(self, user_ids) -> np.ndarray:
        users = np.asarray(user_ids)
        if users.ndim != 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
            raise UserError(f"user ids must be a 1-D sequence of integers (the dataset's ids), got "
                            f"{np.asarray(user_ids).dtype} of shape {users.shape}")
        users = users.astype(np.int64)
        bad = users[(users < 0) | (users >= self.n_users)]
        if bad.size:
            raise UserError(f"unknown user id {int(bad[0])} ({bad.size} unknown in all); the dataset "
                            f"has user ids 0..{self.n_users - 1}")
        return users

    def exclusion(self, exclude: str = "train"):
        """The items masked per user: a scipy CSR ``(n_users, n_items)`` (``exclude``: train,
        train+valid, or none)."""
        import scipy.sparse as sp

        if exclude not in EXCLUDE:
            raise UserError(f"--exclude must be one of {', '.join(EXCLUDE)}, got {exclude!r}")
        data = self.run.data
        if exclude == "none":
            return sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32)
        mask = data.train.inter_matrix(form="csr")
        if exclude == "train+valid":
            mask = (mask + data.valid.inter_matrix(form="csr")).tocsr()
        mask.sort_indices()
        return mask

    # -- the API -------------------------------------------------------------------------
    def recommend(self, user_ids, k: int = 20, exclude: str = "train",
                  batch_size: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each user: ``(item_ids int64[n, k], scores float32[n, k])``,
        one row per entry of ``user_ids``, best first, in the dataset's ids. Items a user has
        fewer than ``k`` of after ``exclude`` are padded with item id -1 and score NaN."""
        users = self._users(user_ids)
        k = int(k)
        if not 1 <= k <= self.n_items:
            raise UserError(f"--k must be between 1 and the {self.n_items} items of the catalogue, got {k}")
        mask = self.exclusion(exclude)
        t0, last = time.time(), [time.time()]

        def progress(done: int) -> None:
            if time.time() - last[0] > 10:
                last[0] = time.time()
                logger.info("recommend: %d/%d users (%.0f users/s)", done, len(users),
                            done / max(last[0] - t0, 1e-9))

        return self.run.rank(users, k, mask, batch_size=batch_size, progress=progress)

    def score(self, user_ids, item_ids) -> np.ndarray:
        """Scores of (user, item) pairs: ``item_ids`` ``[n]`` aligned with ``user_ids`` gives
        ``[n]``; ``item_ids`` ``[n, m]`` gives each user's scores of its ``m`` items."""
        import torch

        users = self._users(user_ids)
        items = np.asarray(item_ids, dtype=np.int64)
        pairs = items.ndim == 1
        items2 = items[:, None] if pairs else items
        if items2.shape[0] != len(users):
            raise UserError(f"score: {len(users)} users but item ids of shape {items.shape}")
        if items2.size and (items2.min() < 0 or items2.max() >= self.n_items):
            raise UserError(f"unknown item id; the dataset has item ids 0..{self.n_items - 1}")
        out = np.empty(items2.shape, dtype=np.float32)
        bs = int(self.config["eval_batch_size"])
        device = self.config["device"]
        with torch.no_grad():
            for start in range(0, len(users), bs):
                ub = torch.as_tensor(users[start:start + bs], device=device)
                full = self.model.full_sort_predict([ub])
                idx = torch.as_tensor(items2[start:start + bs], device=device)
                out[start:start + len(ub)] = full.gather(1, idx).float().cpu().numpy()
        return out[:, 0] if pairs else out

    def embeddings(self) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """Branch name -> ``(user vectors [n_users, d], item vectors [n_items, d])`` whose inner
        products are that branch's scores (``fused`` ranks), e.g. for an ANN index."""
        import torch

        model = self.model
        with torch.no_grad():
            if callable(getattr(model, "embeddings", None)):
                reps = model.embeddings()
            else:
                try:  # a two-tower model: forward() -> (users, items), e.g. LightGCN, FREEDOM
                    reps = {"fused": tuple(model.forward())}
                except (TypeError, NotImplementedError):
                    if not (hasattr(model, "user_embedding") and hasattr(model, "item_embedding")):
                        raise UserError(f"{self.config['model']} does not expose user and item "
                                        f"vectors (no embeddings(); forward() is not (users, "
                                        f"items))") from None
                    reps = {"fused": (model.user_embedding.weight, model.item_embedding.weight)}
        return {name: (u.detach().cpu().numpy(), i.detach().cpu().numpy()) for name, (u, i) in reps.items()}

    def original_ids(self) -> Tuple[Optional[Dict[int, str]], Optional[Dict[int, str]]]:
        """MMRec's id maps of the dataset folder (mapped id -> original id), or None each."""
        folder = os.path.join(self.config["data_path"], self.config["dataset"])
        return _id_map(os.path.join(folder, "u_id_mapping.csv")), _id_map(os.path.join(folder, "i_id_mapping.csv"))


def load_model(results_json: str, combination="best", data_path: Optional[str] = None) -> TrainedModel:
    """The trained model of ``combination`` (``best``, an id, or an index) in ``results_json``,
    rebuilt with its saved weights (``torch.load(weights_only=True)``; anything else is
    refused): a :class:`TrainedModel`. ``data_path``: where the dataset is now, if it moved."""
    from mmrec_plugin.runs import load

    return TrainedModel(load(results_json, combination, data_path=data_path))


# ------------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_plugin.cliargs import positive_int

    parser.add_argument("results", metavar="RESULTS_JSON", help="a grid's results file")
    parser.add_argument("--combination", default="best", metavar="best|ID|N",
                        help="which combination's model (default: best by validation)")
    parser.add_argument("--users", default="all", metavar="all|FILE",
                        help="all users, or a file of user ids (one per line, the dataset's ids)")
    parser.add_argument("--k", type=positive_int, default=20, help="recommendations per user (20)")
    parser.add_argument("--exclude", choices=EXCLUDE, default="train",
                        help="items not recommended to a user (default train: MMRec's rule)")
    parser.add_argument("--out", default=None, metavar="FILE.csv|FILE.jsonl",
                        help="output (default: <results dir>/recommendations-<id>-k<K>.csv)")
    parser.add_argument("--data-path", default=None, metavar="DIR",
                        help="data folder (default: the one the run used)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="users scored at once (default: the run's eval_batch_size)")


def _read_users(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"--users: {path} is not a file (give 'all' or a file of user ids)")
    ids = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if not (text.isascii() and text.isdigit()):
                raise UserError(f"--users: {path}, line {line_no}: {text[:40]!r} is not a user id "
                                f"(a non-negative integer)")
            ids.append(int(text))
    if not ids:
        raise UserError(f"--users: {path} lists no user ids")
    return np.asarray(ids, dtype=np.int64)


def write(path: str, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
          user_map=None, item_map=None) -> str:
    """Write recommendations to ``path`` (.csv or .jsonl), atomically."""
    from mmrec_plugin.utils import atomic_path

    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".jsonl"):
        raise UserError(f"--out {path}: the extension must be .csv or .jsonl")
    if os.path.isdir(path):
        raise UserError(f"--out {path} is a folder; give a file name ending in .csv or .jsonl")
    originals = user_map is not None and item_map is not None
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            if ext == ".csv":
                out = csv.writer(fh)
                out.writerow(["user_id", "rank", "item_id", "score"]
                             + (["user_original", "item_original"] if originals else []))
                for u, row_i, row_s in zip(users.tolist(), items, scores):
                    for rank, (i, s) in enumerate(zip(row_i.tolist(), row_s.tolist()), start=1):
                        if i < 0:
                            break
                        extra = [user_map.get(u, ""), item_map.get(i, "")] if originals else []
                        out.writerow([u, rank, i, f"{s:.6g}"] + extra)
            else:
                for u, row_i, row_s in zip(users.tolist(), items, scores):
                    keep = row_i >= 0
                    rec = {"user_id": u, "items": row_i[keep].tolist(),
                           "scores": [float(f"{s:.6g}") for s in row_s[keep].tolist()]}
                    if originals:
                        rec["user_original"] = user_map.get(u)
                        rec["items_original"] = [item_map.get(i) for i in rec["items"]]
                    fh.write(json.dumps(rec) + "\n")
    return path


def run(args) -> int:
    model = load_model(args.results, args.combination, data_path=args.data_path)
    users = (np.arange(model.n_users, dtype=np.int64) if args.users == "all"
             else _read_users(args.users))
    cid = str(model.record.get("id"))
    if not cid.isalnum():
        raise DataError(f"{args.results}: combination id {cid!r} is not a results id")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results)),
                                   f"recommendations-{cid}-k{args.k}.csv")
    logger.info("recommend: %s, %d users, k %d, exclude %s", model, len(users), args.k, args.exclude)
    items, scores = model.recommend(users, k=args.k, exclude=args.exclude, batch_size=args.batch_size)
    user_map, item_map = model.original_ids()
    write(out, users, items, scores, user_map, item_map)
    print(f"written: {out} ({len(users)} users x {args.k})")
    return 0

