"""Interaction datasets in MMRec's layout: ``<data_path>/<dataset>/<dataset>.inter``.

The ``.inter`` file is a delimited text file (``field_separator``, a tab by default) with a
header line. Columns are found by name: ``USER_ID_FIELD`` (``userID``), ``ITEM_ID_FIELD``
(``itemID``) and ``x_label`` (0 train, 1 valid, 2 test); any other column (``rating``,
``timestamp``) is ignored. Ids are non-negative integers already mapped to ``0..n-1``; as in
MMRec, ``n_users = max(userID) + 1`` and ``n_items = max(itemID) + 1`` over the whole file, so
every split shares the same counts. The file is read by
:func:`mmrec_plugin.host.files.read_interactions` (the reader of ``data validate`` too), which
also refuses an id far beyond the number of distinct ids (docs/limits.md).

Features (``.npy`` arrays ``[n_items, d]``, one per modality: ``vision_feature_file`` /
``text_feature_file``, or any number of modalities with ``feature_files``) live in the same
folder and are read by :func:`load_modalities`.

Args (config keys):
    data_path (str): root folder of the datasets.
    dataset (str): the dataset name, also the folder name.
    inter_file_name (str, default ``<dataset>.inter``): the interaction file.
    field_separator (str, default ``"\\t"``): the column separator.
    USER_ID_FIELD (str, default ``userID``), ITEM_ID_FIELD (str, default ``itemID``).
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from mmrec_plugin.errors import DataError
from mmrec_plugin.host.files import (LABEL_FIELD, duplicate_pairs, load_features, read_interactions,
                                     separator)
from mmrec_plugin.utils import cfg_get as _cfg

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")

_MMREC_HINT = (
    "MMRec's datasets (baby, sports, clothing) are downloaded from the Google Drive folder "
    "linked in MMRec's README (github.com/enoche/MMRec)"
)


def dataset_dir(config) -> str:
    """The dataset folder ``<data_path>/<dataset>``."""
    return os.path.join(str(_cfg(config, "data_path", "data/")), str(config["dataset"]))


def _expected_layout(name: str, folder: str) -> str:
    return (
        f"expected {name}.inter, image_feat.npy and text_feat.npy in {folder}/; "
        + _MMREC_HINT
    )


def _separator(config) -> str:
    return separator(_cfg(config, "field_separator", "\t"))


def read_inter_file(config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Read ``users, items, labels`` (int64 arrays) and the file path from the ``.inter`` file
    (through :func:`mmrec_plugin.host.files.read_interactions`, the reader ``data validate``
    uses too).

    Raises:
        DataError: a missing folder or file, a file that is not UTF-8 text, a missing column,
            a malformed line (named), an unknown label, an id far beyond the number of
            distinct ids (named), or a (user, item) pair that occurs more than once (within
            or across splits).
    """
    name = str(config["dataset"])
    folder = dataset_dir(config)
    fname = str(_cfg(config, "inter_file_name", f"{name}.inter"))
    path = os.path.join(folder, fname)
    data_path = str(_cfg(config, "data_path", "data/"))
    if os.path.exists(os.path.normpath(data_path)) and not os.path.isdir(data_path):
        raise DataError(f"data_path {data_path} is a file, not a folder; give the folder that "
                        f"holds the dataset folders (<data_path>/{name}/{name}.inter)")
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "not found"
        raise DataError(
            f"dataset folder {folder} {what} (data_path={_cfg(config, 'data_path')!r}, "
            f"dataset={name!r}); " + _expected_layout(name, folder)
        )
    if not os.path.lexists(path):
        raise DataError(
            f"interaction file {path} not found; " + _expected_layout(name, folder)
        )
    inter = read_interactions(path, str(_cfg(config, "USER_ID_FIELD", "userID")),
                              str(_cfg(config, "ITEM_ID_FIELD", "itemID")), LABEL_FIELD,
                              _separator(config))
    _check_duplicates(inter.users, inter.items, path)
    return inter.users, inter.items, inter.labels.astype(np.int64), path


def _check_duplicates(users: np.ndarray, items: np.ndarray, path: str) -> None:
    """A (user, item) pair twice (in one split or across splits) is a DataError, as in
    ``mmrec-plugin data validate``: a pair in train and test leaks the answer, one twice in
    train is counted twice by the sampler."""
    dup = duplicate_pairs(users, items)
    if dup is None:
        return
    n_dup, first, second = dup
    raise DataError(
        f"{path}: {n_dup} (user, item) pair(s) occur more than once (first: user "
        f"{int(users[first])}, item {int(items[first])}, in data rows {first + 1} and "
        f"{second + 1}); each pair must occur once (mmrec-plugin data validate lists them)"
    )


class RecDataset:
    """A set of interactions with the whole file's user and item counts (MMRec's RecDataset).

    ``RecDataset(config)`` reads the file; ``split()`` returns ``[train, valid, test]``
    sharing ``n_users`` / ``n_items``. ``df`` is internal: a dict with ``users``, ``items``,
    ``labels`` arrays (used by :meth:`split` and :meth:`copy`).
    """

    def __init__(self, config, df: Optional[dict] = None):
        self.config = config
        self.dataset_name = str(config["dataset"])
        self.uid_field = str(_cfg(config, "USER_ID_FIELD", "userID"))
        self.iid_field = str(_cfg(config, "ITEM_ID_FIELD", "itemID"))
        self.splitting_label = LABEL_FIELD
        if df is None:
            users, items, labels, path = read_inter_file(config)
            self.path = path
            self.n_users = int(users.max()) + 1
            self.n_items = int(items.max()) + 1
            logger.info(
                "read %s: %d users, %d items, %d interactions",
                path, self.n_users, self.n_items, len(users),
            )
        else:
            users = np.asarray(df["users"], dtype=np.int64)
            items = np.asarray(df["items"], dtype=np.int64)
            labels = np.asarray(df.get("labels", np.zeros(len(users))), dtype=np.int64)
            self.path = df.get("path", "")
            self.n_users = int(df["n_users"]) if "n_users" in df else int(users.max()) + 1
            self.n_items = int(df["n_items"]) if "n_items" in df else int(items.max()) + 1
        self.users: np.ndarray = users
        self.items: np.ndarray = items
        self.labels: np.ndarray = labels

    # ------------------------------------------------------------------ MMRec API
    def get_user_num(self) -> int:
        return self.n_users

    def get_item_num(self) -> int:
        return self.n_items

    @property
    def inter_num(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        return len(self.users)

    def _sub(self, mask: np.ndarray) -> "RecDataset":
        df = {
            "users": self.users[mask], "items": self.items[mask], "labels": self.labels[mask],
            "n_users": self.n_users, "n_items": self.n_items, "path": self.path,
        }
        return RecDataset(self.config, df)

    def copy(self, df: dict) -> "RecDataset":
        """A dataset with the same counts and other interactions (``df``: users, items, labels)."""
        df = dict(df)
        df.setdefault("n_users", self.n_users)
        df.setdefault("n_items", self.n_items)
        return RecDataset(self.config, df)

    def split(self) -> List["RecDataset"]:
        """``[train, valid, test]`` by ``x_label`` 0 / 1 / 2; an empty split is a DataError."""
        parts = []
        for label, name in enumerate(SPLIT_NAMES):
            mask = self.labels == label
            if not mask.any():
                raise DataError(
                    f"{self.path or self.dataset_name}: the {name} split is empty (no rows with "
                    f"{LABEL_FIELD} = {label}); every split 0 train, 1 valid, 2 test needs rows"
                )
            parts.append(self._sub(mask))
        in_train = np.zeros(self.n_users, dtype=bool)
        in_train[parts[0].users] = True
        cold = np.unique(self.users[~in_train[self.users]])
        if cold.size:
            logger.warning(
                "%s: %d user(s) have valid/test interactions but none in train (first: %s); "
                "they are evaluated with untrained user vectors (mmrec-plugin data validate "
                "lists them)", self.path or self.dataset_name, cold.size, cold[:5].tolist())
        return parts

    def inter_matrix(self, form: str = "coo", value_field=None):
        """The interactions as a scipy matrix of ones, shape ``(n_users, n_items)``.

        Duplicate pairs count once. ``form``: ``'coo'`` or ``'csr'``.
        """
        if form not in ("coo", "csr"):
            raise ValueError(f"inter_matrix form must be 'coo' or 'csr', got {form!r}")
        data = np.ones(len(self.users), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat.tocoo() if form == "coo" else mat

    def __repr__(self) -> str:
        return (
            f"RecDataset({self.dataset_name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={len(self)})"
        )


def feature_files(config) -> Dict[str, str]:
    """Modality name -> feature file name: ``feature_files`` when the config sets it (a
    mapping, e.g. ``{visual: image_feat.npy, text: text_feat.npy, audio: audio_feat.npy}``),
    else MMRec's two keys, ``{visual: <vision_feature_file>, text: <text_feature_file>}``."""
    files = _cfg(config, "feature_files", None)
    if files is None:
        return {"visual": str(_cfg(config, "vision_feature_file", "image_feat.npy")),
                "text": str(_cfg(config, "text_feature_file", "text_feat.npy"))}
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise DataError(f"feature_files: expected a mapping modality -> .npy file name, e.g. "
                        f"{{visual: image_feat.npy, text: text_feat.npy}}, got {files!r}")
    return {str(k): v for k, v in files.items()}


def load_modalities(config, n_items: int) -> Dict[str, Optional[np.ndarray]]:
    """Modality name -> float32 array ``[n_items, d]`` (None for an absent file), for every
    modality of :func:`feature_files`, read from ``<data_path>/<dataset>/`` through
    :func:`mmrec_plugin.host.files.load_features` (the loader ``data validate`` uses too).

    A file that is not a plain ``.npy`` array (empty, an ``.npz``, Python objects, truncated),
    whose row count differs from ``n_items``, that is not 2-D with at least one column, that
    does not hold real numbers (strings, complex) or that holds NaN/inf is a DataError naming
    the file and its shape, dtype or first bad row.
    """
    folder = dataset_dir(config)
    out: Dict[str, Optional[np.ndarray]] = {}
    for name, fname in feature_files(config).items():
        path = os.path.join(folder, fname)
        if not os.path.lexists(path):
            logger.info("%s features: %s not found, not used", name, path)
            out[name] = None
            continue
        out[name] = load_features(path, n_items)
    return out
