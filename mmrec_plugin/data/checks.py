"""Checking and describing a dataset folder in MMRec's layout: ``validate`` and ``stats``.

The files are read by the host's reader (:mod:`mmrec_plugin.host.files`), the one ``run``
uses: a file ``validate`` refuses, ``run`` refuses too, and the other way round.

``validate`` errors (any of them makes the dataset unusable or its results misleading):

- the interaction file is missing or malformed (missing column, non-integer id, a NUL byte
  or non-ASCII digit, bad label, an id far beyond the number of distinct ids);
- a split (train, valid, test) is empty;
- a (user, item) pair occurs more than once (within or across splits);
- a feature file is missing, not a plain ``.npy`` array (empty, an ``.npz``, Python objects,
  truncated), not a 2-d array of real numbers with at least one column, has a row count
  different from the number of items, or contains NaN/inf (checked in row blocks through
  a memory map).

Warnings (counted and reported, not errors; ``run`` accepts such data too): user or item
ids that are not contiguous from 0 (an id in ``0..max`` with no interaction: MMRec counts
``max id + 1``, so these are users/items without data, usually a sign of raw ids), cold
users (in valid/test, not in train) and cold items (in valid/test, never in train).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from mmrec_plugin.data import files
from mmrec_plugin.errors import DataError
from mmrec_plugin.host.files import check_features, duplicate_pairs, id_gaps, open_features

log = logging.getLogger(__name__)


@dataclass
class Report:
    """The outcome of :func:`validate`: ``errors`` (fatal), ``warnings``, ``info`` (numbers)."""

    folder: Path
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"dataset {self.folder}"]
        for k, v in self.info.items():
            lines.append(f"  {k}: {v}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines.append("  result: " + ("OK" if self.ok else f"{len(self.errors)} error(s)"))
        return "\n".join(lines)


def feature_info(path: Path) -> Dict[str, object]:
    """``{'shape', 'dtype'}`` of a ``.npy`` file, read from its header (memory map)."""
    arr = open_features(path)
    return {"shape": tuple(int(s) for s in arr.shape), "dtype": str(arr.dtype)}


def _check_features(path: Path, slot: str, n_items: int, report: Report) -> None:
    if not os.path.lexists(path):
        report.errors.append(f"{path}: {slot} feature file not found")
        return
    try:
        arr = open_features(path)
        report.info[f"{slot} features"] = f"{path.name} {tuple(arr.shape)} {arr.dtype}"
        check_features(arr, path, n_items)
    except DataError as exc:
        report.errors.append(str(exc))


def validate(folder: os.PathLike, name: Optional[str] = None) -> Report:
    """Check a dataset folder (see the module docstring); never raises for data problems."""
    folder = Path(folder)
    report = Report(folder)
    try:
        inter = files.read_dataset(folder, name)
        feats = files.feature_paths(folder, name)
    except DataError as exc:
        report.errors.append(str(exc))
        return report
    users, items, labels = inter.users, inter.items, inter.labels
    n_users, n_items = inter.n_users, inter.n_items
    report.info.update({"interaction file": inter.path.name, "users": n_users, "items": n_items,
                        "interactions": len(inter)})
    if len(inter) == 0:
        report.errors.append(f"{inter.path}: no interactions")
        return report
    for msg in (id_gaps(users, "user"), id_gaps(items, "item")):
        if msg:
            report.warnings.append(msg)
    sizes = np.bincount(labels, minlength=3)
    report.info["splits (train/valid/test)"] = "/".join(str(int(c)) for c in sizes[:3])
    for j, split in enumerate(files.SPLIT_NAMES):
        if sizes[j] == 0:
            report.errors.append(f"{inter.path}: the {split} split is empty (x_label {j} never "
                                 "occurs); make splits with `mmrec-plugin data resplit`")
    dup = duplicate_pairs(users, items)
    if dup is not None:
        n_dup, first, second = dup
        report.errors.append(f"{inter.path}: {n_dup} (user, item) pair(s) occur more than once "
                             f"(first: user {int(users[first])}, item {int(items[first])}, in "
                             f"data rows {first + 1} and {second + 1})")
    train = labels == 0
    held = ~train
    in_train_u = np.zeros(n_users, dtype=bool)
    in_train_u[users[train]] = True
    in_train_i = np.zeros(n_items, dtype=bool)
    in_train_i[items[train]] = True
    cold_u = np.unique(users[held & ~in_train_u[users]])
    cold_i = np.unique(items[held & ~in_train_i[items]])
    report.info["cold users (valid/test only)"] = int(cold_u.size)
    report.info["cold items (valid/test only)"] = int(cold_i.size)
    if cold_u.size:
        report.warnings.append(f"{cold_u.size} user(s) have valid/test interactions but none in "
                               f"train (first: {cold_u[:5].tolist()})")
    if cold_i.size:
        report.warnings.append(f"{cold_i.size} item(s) occur in valid/test but never in train "
                               f"(first: {cold_i[:5].tolist()})")
    for slot, path in feats.items():
        _check_features(path, slot, n_items, report)
    return report


def stats(folder: os.PathLike, name: Optional[str] = None) -> Dict[str, object]:
    """Numbers describing a dataset folder.

    Returns ``{'folder', 'users', 'items', 'interactions', 'density', 'splits': {train,
    valid, test}, 'per_user': {min, median, mean, max}, 'per_item': {...}, 'features':
    {visual: {file, shape, dtype} | None, text: ...}}``. Raises DataError if unreadable.
    """
    folder = Path(folder)
    inter = files.read_dataset(folder, name)
    feats = files.feature_paths(folder, name)
    n_users, n_items, n = inter.n_users, inter.n_items, len(inter)

    def dist(ids: np.ndarray, size: int) -> Dict[str, float]:
        c = np.bincount(ids, minlength=size) if size else np.zeros(1, np.int64)
        return {"min": int(c.min()), "median": float(np.median(c)), "mean": round(float(c.mean()), 3),
                "max": int(c.max())}

    out: Dict[str, object] = {
        "folder": str(folder), "users": n_users, "items": n_items, "interactions": n,
        "density": float(n) / (n_users * n_items) if n_users and n_items else 0.0,
        "per_user": dist(inter.users, n_users), "per_item": dist(inter.items, n_items),
    }
    if inter.labels is not None:
        c = np.bincount(inter.labels, minlength=3)
        out["splits"] = {s: int(c[j]) for j, s in enumerate(files.SPLIT_NAMES)}
    features: Dict[str, object] = {}
    for slot, path in feats.items():
        if os.path.lexists(path):
            try:
                features[slot] = {"file": path.name, **feature_info(path)}
            except DataError as exc:
                features[slot] = {"file": path.name, "error": str(exc)}
        else:
            features[slot] = None
    out["features"] = features
    return out


def format_stats(s: Dict[str, object]) -> str:
    """A small human-readable table of :func:`stats`."""
    lines = [f"dataset      {s['folder']}",
             f"users        {s['users']}",
             f"items        {s['items']}",
             f"interactions {s['interactions']}",
             f"density      {s['density']:.6f}"]
    if "splits" in s:
        sp = s["splits"]
        lines.append(f"splits       train {sp['train']}, valid {sp['valid']}, test {sp['test']}")
    for key in ("per_user", "per_item"):
        d = s[key]
        lines.append(f"{key.replace('_', ' '):12} min {d['min']}, median {d['median']:g}, "
                     f"mean {d['mean']:g}, max {d['max']}")
    for slot, f in s["features"].items():
        if f is None:
            lines.append(f"{slot:12} (missing)")
        elif "error" in f:
            lines.append(f"{slot:12} {f['file']}: unreadable ({f['error']})")
        else:
            lines.append(f"{slot:12} {f['file']} {tuple(f['shape'])} {f['dtype']}")
    return "\n".join(lines)
