"""Dataset files in MMRec's layout: ``.inter`` reading and writing, dataset yaml, atomic folders.

A dataset folder ``<data_path>/<name>/`` holds

- ``<name>.inter``: tab-separated with a header; the columns are read by name:
  ``userID``, ``itemID``, ``x_label`` (0 train, 1 valid, 2 test). Other columns
  (``rating``, ``timestamp``) may be present and are ignored here.
- ``image_feat.npy``, ``text_feat.npy``: float ``[n_items, d]``, row ``i`` = item id ``i``.
- ``<name>.yaml`` (optional): the dataset keys MMRec reads (``USER_ID_FIELD``,
  ``ITEM_ID_FIELD``, ``inter_file_name``, ``vision_feature_file``, ``text_feature_file``,
  ``field_separator``).

This reader is deliberately small and independent of the host's dataset module: numpy only,
no pandas. Every writer here publishes a whole folder at once (:func:`atomic_dir`): the
folder is filled under a temporary name next to the target and renamed into place, so an
interrupted run leaves no half-written dataset behind (at most a hidden ``.<name>.tmp-*``
folder, which nothing reads).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

import numpy as np

from mmrec_plugin.errors import ConfigError, DataError
from mmrec_plugin.utils import umask

log = logging.getLogger(__name__)


def check_name(name: str) -> None:
    """A dataset name must be a plain folder name (no '/', not hidden): else ConfigError."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"dataset name {name!r}: need a plain folder name (no '/', not hidden)")

PathLike = Union[str, "os.PathLike[str]"]

USER_FIELD = "userID"
ITEM_FIELD = "itemID"
LABEL_FIELD = "x_label"
SPLIT_NAMES = ("train", "valid", "test")

#: MMRec's dataset keys with the values its Amazon datasets use.
DEFAULT_KEYS: Dict[str, object] = {
    "USER_ID_FIELD": USER_FIELD,
    "ITEM_ID_FIELD": ITEM_FIELD,
    "vision_feature_file": "image_feat.npy",
    "text_feature_file": "text_feat.npy",
    "field_separator": "\t",
}


@dataclass
class Interactions:
    """The interactions of one ``.inter`` file.

    Attributes:
        users, items: ``int64 [n]`` ids.
        labels: ``int8 [n]`` split labels (0 train, 1 valid, 2 test), or None when the file
            has no ``x_label`` column.
        path: the file read (None for in-memory data).
    """

    users: np.ndarray
    items: np.ndarray
    labels: Optional[np.ndarray]
    path: Optional[Path] = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        """max user id + 1 (MMRec's count), 0 when empty."""
        return int(self.users.max()) + 1 if len(self) else 0

    @property
    def n_items(self) -> int:
        """max item id + 1 (MMRec's count), 0 when empty."""
        return int(self.items.max()) + 1 if len(self) else 0


def read_inter(path: PathLike, user_field: str = USER_FIELD, item_field: str = ITEM_FIELD,
               label_field: str = LABEL_FIELD, sep: str = "\t",
               require_label: bool = True) -> Interactions:
    """Read an ``.inter`` file (header + ``sep``-separated integer columns, read by name).

    Args:
        path: the file.
        user_field, item_field, label_field: column names (MMRec's defaults).
        sep: field separator (MMRec's ``field_separator``, a tab).
        require_label: raise when the ``x_label`` column is absent (else ``labels`` is None).

    Raises:
        DataError: missing file or column, a non-integer id (naming the line), an unknown label,
            a file that is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: interaction file not found")
    try:
        return _read_inter(path, user_field, item_field, label_field, sep, require_label)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 text file (undecodable byte {exc.object[exc.start:exc.start + 1]!r}); "
            f"expected {sep!r}-separated text with a header line"
        ) from None


def _read_inter(path: Path, user_field: str, item_field: str, label_field: str, sep: str,
                require_label: bool) -> Interactions:
    with open(path, "r", encoding="utf-8") as f:
        header_line = f.readline()
    header = [h.strip() for h in header_line.rstrip("\r\n").split(sep)]
    wanted = [user_field, item_field] + ([label_field] if (require_label or label_field in header)
                                         else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {missing}; the header has {header} "
                        f"(expected {sep!r}-separated columns including {wanted})")
    cols = tuple(header.index(c) for c in wanted)
    try:
        data = np.loadtxt(path, delimiter=sep, skiprows=1, usecols=cols, dtype=np.int64,
                          ndmin=2, comments=None)
    except ValueError as exc:
        raise DataError(_locate_bad_line(path, sep, cols, wanted, len(header))) from exc
    users = np.ascontiguousarray(data[:, 0])
    items = np.ascontiguousarray(data[:, 1])
    labels = None
    if len(wanted) == 3:
        lab = data[:, 2]
        bad = np.flatnonzero((lab < 0) | (lab > 2))
        if bad.size:
            raise DataError(f"{path}, line {int(bad[0]) + 2}: {label_field} = {int(lab[bad[0]])}; "
                            "accepted: 0 (train), 1 (valid), 2 (test)")
        labels = lab.astype(np.int8)
    neg = np.flatnonzero((users < 0) | (items < 0))
    if neg.size:
        raise DataError(f"{path}, line {int(neg[0]) + 2}: negative id; ids must be integers >= 0")
    return Interactions(users, items, labels, path)


def _locate_bad_line(path: Path, sep: str, cols, names, n_header: int) -> str:
    """The message for the first malformed line (error path only, so a plain loop is fine)."""
    with open(path, "r", encoding="utf-8") as f:
        f.readline()
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(sep)
            if len(fields) < n_header:
                return (f"{path}, line {lineno}: {len(fields)} field(s), the header has "
                        f"{n_header} (separator {sep!r})")
            for c, name in zip(cols, names):
                try:
                    int(fields[c])
                except ValueError:
                    return f"{path}, line {lineno}: {name} = {fields[c]!r} is not an integer"
    return f"{path}: could not be parsed as {sep!r}-separated integer columns {names}"


def write_inter(path: PathLike, users: np.ndarray, items: np.ndarray,
                labels: np.ndarray) -> None:
    """Write ``userID itemID x_label`` (tab-separated, header), rows sorted by (user, item)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.lexsort((items, users))
    table = np.stack([users[order], items[order], labels[order]], axis=1)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{USER_FIELD}\t{ITEM_FIELD}\t{LABEL_FIELD}\n")
        np.savetxt(f, table, fmt="%d", delimiter="\t")


def write_dataset_yaml(path: PathLike, name: str, extra: Optional[dict] = None) -> None:
    """Write the dataset yaml with MMRec's keys (``inter_file_name`` = ``<name>.inter``)."""
    import yaml

    keys = {"USER_ID_FIELD": USER_FIELD, "ITEM_ID_FIELD": ITEM_FIELD,
            "inter_file_name": f"{name}.inter",
            "vision_feature_file": DEFAULT_KEYS["vision_feature_file"],
            "text_feature_file": DEFAULT_KEYS["text_feature_file"],
            "field_separator": "\t"}
    keys.update(extra or {})
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# dataset keys for '{name}' (MMRec layout), written by mmrec-plugin data\n")
        yaml.safe_dump(keys, f, sort_keys=False, default_flow_style=False)


def dataset_keys(folder: PathLike, name: Optional[str] = None) -> Dict[str, object]:
    """The dataset keys of ``folder``: MMRec's defaults overlaid with ``<name>.yaml`` if present.

    ``name`` defaults to the folder's base name; ``inter_file_name`` defaults to
    ``<name>.inter``, else the only ``*.inter`` file in the folder.
    """
    import yaml

    folder = Path(folder)
    name = name or folder.name
    keys: Dict[str, object] = dict(DEFAULT_KEYS)
    yml = folder / f"{name}.yaml"
    if yml.is_file():
        try:
            loaded = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{yml}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise DataError(f"{yml}: expected a mapping of dataset keys, got {type(loaded).__name__}")
        keys.update(loaded)
    if "inter_file_name" not in keys:
        keys["inter_file_name"] = find_inter(folder, name).name
    return keys


def find_inter(folder: PathLike, name: Optional[str] = None) -> Path:
    """``<folder>/<name>.inter`` if present, else the folder's only ``*.inter`` file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    name = name or folder.name
    cand = folder / f"{name}.inter"
    if cand.is_file():
        return cand
    inters = sorted(folder.glob("*.inter"))
    if len(inters) == 1:
        return inters[0]
    if not inters:
        raise DataError(f"{folder}: no interaction file (expected {cand.name}, MMRec's layout: "
                        "<name>.inter, image_feat.npy, text_feat.npy)")
    raise DataError(f"{folder}: several .inter files {[p.name for p in inters]} and no "
                    f"{cand.name}; set inter_file_name in {name}.yaml")


def read_dataset(folder: PathLike, name: Optional[str] = None) -> Interactions:
    """Read the interactions of a dataset folder (keys from its yaml, else MMRec's defaults)."""
    folder = Path(folder)
    keys = dataset_keys(folder, name)
    return read_inter(folder / str(keys["inter_file_name"]),
                      user_field=str(keys["USER_ID_FIELD"]), item_field=str(keys["ITEM_ID_FIELD"]),
                      sep=str(keys.get("field_separator", "\t")))


def feature_paths(folder: PathLike, name: Optional[str] = None) -> Dict[str, Path]:
    """``{'visual': Path, 'text': Path}`` named by the dataset keys (files may not exist)."""
    folder = Path(folder)
    keys = dataset_keys(folder, name)
    return {"visual": folder / str(keys["vision_feature_file"]),
            "text": folder / str(keys["text_feature_file"])}


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """``np.save`` without pickles (module-level so tests can simulate a failing write)."""
    np.save(path, array, allow_pickle=False)


@contextlib.contextmanager
def atomic_dir(target: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Fill a temporary folder next to ``target``; on success rename it to ``target``.

    On any exception (or KeyboardInterrupt) the temporary folder is removed and ``target``
    is untouched. With ``overwrite`` an existing ``target`` is replaced (renamed aside, the
    new folder renamed in, the old one removed).

    Raises:
        DataError: ``target`` exists and ``overwrite`` is False.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; choose another --name/--out or pass --force "
                        "to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        if target.exists():
            if not overwrite:
                raise DataError(f"{target} appeared while it was being written; nothing replaced")
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / "x")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, target)
            except OSError as exc:
                raise DataError(f"{target}: could not be created ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
