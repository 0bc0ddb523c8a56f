"""Interaction datasets in MMRec's layout: ``<data_path>/<dataset>/<dataset>.inter``.

The ``.inter`` file is a delimited text file (``field_separator``, a tab by default) with a
header line. Columns are found by name: ``USER_ID_FIELD`` (``userID``), ``ITEM_ID_FIELD``
(``itemID``) and ``x_label`` (0 train, 1 valid, 2 test); any other column (``rating``,
``timestamp``) is ignored. Ids are non-negative integers already mapped to ``0..n-1``; as in
MMRec, ``n_users = max(userID) + 1`` and ``n_items = max(itemID) + 1`` over the whole file, so
every split shares the same counts.

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

import csv
import logging
import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from mmrec_plugin.errors import DataError
from mmrec_plugin.utils import cfg_get as _cfg

logger = logging.getLogger(__name__)

LABEL_FIELD = "x_label"
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
    sep = _cfg(config, "field_separator", "\t")
    if sep == "\\t":  # a literal backslash-t from a command line or a quoted yaml string
        sep = "\t"
    if not isinstance(sep, str) or len(sep) != 1:
        raise DataError(
            f"config key 'field_separator' must be a single character, got {sep!r}"
        )
    return sep


def _parse_int_column(values: List[str], lines: np.ndarray, path: str, column: str) -> np.ndarray:
    """Strings -> int64 array; on failure name the first bad line (1-based, header = line 1)."""
    try:
        arr = np.asarray(values, dtype=np.str_).astype(np.int64)
    except (ValueError, OverflowError):
        arr = None
    if arr is None:
        for value, line in zip(values, lines):  # error path only
            try:
                int(value)
            except ValueError:
                raise DataError(
                    f"{path}, line {int(line)}: column '{column}' must hold integer ids, "
                    f"got {value!r}"
                ) from None
        raise DataError(f"{path}: column '{column}' holds values that are not 64-bit integers")
    return arr


def _read_columns_fast(path: str, sep: str, usecols: List[int]):
    """``(users, items, labels)`` of a well-formed file in one vectorised ``np.loadtxt`` call,
    or None when anything is unusual (the caller's per-row parser then names the bad line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. numpy 1.23's float-string-to-int deprecation
            data = np.loadtxt(path, delimiter=sep, skiprows=1, usecols=usecols, dtype=np.int64,
                              ndmin=2, comments=None, encoding="utf-8")
    except (ValueError, TypeError, OverflowError, Warning):
        return None
    if data.shape[0] == 0 or data[:, :2].min() < 0:
        return None
    labels = data[:, 2]
    if ((labels < 0) | (labels > 2)).any():
        return None
    return (np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1]),
            np.ascontiguousarray(labels))


def read_inter_file(config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Read ``users, items, labels`` (int64 arrays) and the file path from the ``.inter`` file.

    Raises:
        DataError: a missing folder or file, a file that is not UTF-8 text, a missing column,
            a malformed line (named), an unknown label, or a (user, item) pair that occurs
            more than once (within or across splits).
    """
    try:
        users, items, labels, path = _read_inter_file(config)
    except UnicodeDecodeError as exc:
        path = os.path.join(dataset_dir(config),
                            str(_cfg(config, "inter_file_name", f"{config['dataset']}.inter")))
        raise DataError(
            f"{path}: not a UTF-8 text file (undecodable byte {exc.object[exc.start:exc.start + 1]!r}); "
            f"expected {_separator(config)!r}-separated text with a header line"
        ) from None
    _check_duplicates(users, items, path)
    return users, items, labels, path


def _check_duplicates(users: np.ndarray, items: np.ndarray, path: str) -> None:
    """A (user, item) pair twice (in one split or across splits) is a DataError, as in
    ``mmrec-plugin data validate``: a pair in train and test leaks the answer, one twice in
    train is counted twice by the sampler."""
    if len(users) < 2:
        return
    codes = users * np.int64(int(items.max()) + 1) + items
    order = np.argsort(codes, kind="stable")
    same = codes[order[1:]] == codes[order[:-1]]
    if not same.any():
        return
    k = int(np.argmax(same))
    first, second = int(order[k]), int(order[k + 1])
    n_dup = int(np.unique(codes[order[1:]][same]).size)
    raise DataError(
        f"{path}: {n_dup} (user, item) pair(s) occur more than once (first: user "
        f"{int(users[first])}, item {int(items[first])}, in data rows {first + 1} and "
        f"{second + 1}); each pair must occur once (mmrec-plugin data validate lists them)"
    )


def _read_inter_file(config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    name = str(config["dataset"])
    folder = dataset_dir(config)
    fname = _cfg(config, "inter_file_name", f"{name}.inter")
    path = os.path.join(folder, fname)
    if not os.path.isdir(folder):
        raise DataError(
            f"dataset folder {folder} not found (data_path={_cfg(config, 'data_path')!r}, "
            f"dataset={name!r}); " + _expected_layout(name, folder)
        )
    if not os.path.isfile(path):
        raise DataError(
            f"interaction file {path} not found; " + _expected_layout(name, folder)
        )
    uid = str(_cfg(config, "USER_ID_FIELD", "userID"))
    iid = str(_cfg(config, "ITEM_ID_FIELD", "itemID"))
    sep = _separator(config)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty: expected a header line with {uid}, {iid}, {LABEL_FIELD}")
        header = [h.strip() for h in header]
        cols = {}
        for field in (uid, iid, LABEL_FIELD):
            if field not in header:
                raise DataError(
                    f"{path}, line 1: column '{field}' not found in the header {header} "
                    f"(separator {sep!r}; columns needed: {uid}, {iid}, {LABEL_FIELD})"
                )
            cols[field] = header.index(field)
        need = max(cols.values()) + 1
        fast = _read_columns_fast(path, sep, [cols[uid], cols[iid], cols[LABEL_FIELD]])
        if fast is not None:
            return fast[0], fast[1], fast[2], path
        rows = []  # error path (or an unusual file): per-row parsing naming the bad line
        line_nos = []
        for line_no, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < need:
                raise DataError(
                    f"{path}, line {line_no}: expected {len(header)} fields separated by "
                    f"{sep!r}, got {len(row)}"
                )
            rows.append(row)
            line_nos.append(line_no)
    if not rows:
        raise DataError(f"{path} has a header but no interactions")
    lines = np.asarray(line_nos, dtype=np.int64)
    out = []
    for field in (uid, iid, LABEL_FIELD):
        j = cols[field]
        values = [r[j].strip() for r in rows]
        arr = _parse_int_column(values, lines, path, field)
        if field != LABEL_FIELD and arr.min() < 0:
            k = int(np.argmax(arr < 0))
            raise DataError(
                f"{path}, line {int(lines[k])}: column '{field}' must be a non-negative id, "
                f"got {int(arr[k])}"
            )
        out.append(arr)
    labels = out[2]
    bad = (labels < 0) | (labels > 2)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {int(lines[k])}: unknown {LABEL_FIELD} {int(labels[k])} "
            f"(accepted: 0 train, 1 valid, 2 test)"
        )
    return out[0], out[1], labels, path


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
    modality of :func:`feature_files`, read from ``<data_path>/<dataset>/``.

    A file whose row count differs from ``n_items``, that is not 2-D with at least one
    column, that does not hold real numbers (strings, complex) or that holds NaN/inf is a
    DataError naming the file and its shape, dtype or first bad row.
    """
    folder = dataset_dir(config)
    out: Dict[str, Optional[np.ndarray]] = {}
    for name, fname in feature_files(config).items():
        path = os.path.join(folder, fname)
        if not os.path.isfile(path):
            logger.info("%s features: %s not found, not used", name, path)
            out[name] = None
            continue
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot read as a .npy array ({exc})") from None
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataError(f"{path}: feature array has dtype {arr.dtype}; expected real numbers "
                            "(float or integer), one row per item")
        if arr.ndim != 2 or arr.shape[0] != n_items or arr.shape[1] == 0:
            raise DataError(
                f"{path}: feature array has shape {tuple(arr.shape)}, expected "
                f"({n_items}, d) with d >= 1: one row per item (n_items = max itemID + 1 in "
                f"the .inter file)"
            )
        arr = np.asarray(arr, dtype=np.float32)
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            raise DataError(f"{path}: {int((~finite).sum())} row(s) contain NaN or inf (first: "
                            f"row {int(np.argmin(finite))}); features must be finite")
        out[name] = arr
    return out
