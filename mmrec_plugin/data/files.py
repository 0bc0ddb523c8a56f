"""Dataset files in MMRec's layout: ``.inter`` reading and writing, dataset yaml, atomic folders.

A dataset folder ``<data_path>/<name>/`` holds

- ``<name>.inter``: tab-separated with a header; the columns are read by name:
  ``userID``, ``itemID``, ``x_label`` (0 train, 1 valid, 2 test). Other columns
  (``rating``, ``timestamp``) may be present and are ignored here.
- ``image_feat.npy``, ``text_feat.npy``: float ``[n_items, d]``, row ``i`` = item id ``i``.
- ``<name>.yaml`` (optional): the dataset keys MMRec reads (``USER_ID_FIELD``,
  ``ITEM_ID_FIELD``, ``inter_file_name``, ``vision_feature_file``, ``text_feature_file``,
  ``field_separator``).

``.inter`` files are read by the host's reader (:mod:`mmrec_plugin.host.files`), the one
``run`` uses, so a file is accepted or refused alike by both. Every writer here publishes a whole folder at once (:func:`atomic_dir`): the
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
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

import numpy as np

from mmrec_plugin import limits, yamlio
from mmrec_plugin.errors import DataError
from mmrec_plugin.host.dataset import feature_files
from mmrec_plugin.host.files import Interactions, read_interactions, separator
from mmrec_plugin.utils import umask

log = logging.getLogger(__name__)


def check_name(name: str, what: str = "dataset name (--name)") -> str:
    """A dataset name must be a plain name (:func:`mmrec_plugin.limits.check_name`)."""
    return limits.check_name(name, what)


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


def read_inter(path: PathLike, user_field: str = USER_FIELD, item_field: str = ITEM_FIELD,
               label_field: str = LABEL_FIELD, sep: str = "\t",
               require_label: bool = True) -> Interactions:
    """Read an ``.inter`` file with the host's reader
    (:func:`mmrec_plugin.host.files.read_interactions`, the one ``run`` uses), so ``data``
    commands and ``run`` accept and refuse the same files.

    Args:
        path: the file.
        user_field, item_field, label_field: column names (MMRec's defaults).
        sep: field separator (MMRec's ``field_separator``, a tab).
        require_label: raise when the ``x_label`` column is absent (else ``labels`` is None).

    Raises:
        DataError: missing file or column, a malformed line, a non-ASCII or NUL character,
            an id far beyond the number of distinct ids, an unknown label, a file that is
            not UTF-8 text (each naming the file and line).
    """
    inter = read_interactions(os.fspath(path), user_field, item_field, label_field, sep,
                              require_label)
    inter.path = Path(path)
    return inter


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
    folder = check_folder(folder)
    name = name or folder.name
    keys: Dict[str, object] = dict(DEFAULT_KEYS)
    yml = folder / f"{name}.yaml"
    if os.path.lexists(yml):
        keys.update(yamlio.load_yaml(str(yml), "dataset yaml", error=DataError))
    if "inter_file_name" not in keys:
        keys["inter_file_name"] = find_inter(folder, name).name
    return keys


def check_folder(folder: PathLike) -> Path:
    """``folder`` as a Path if it is a folder, else a DataError (missing, or a file)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a dataset folder" if folder.exists() else "dataset folder not found"
        raise DataError(f"{folder}: {what}")
    return folder


def find_inter(folder: PathLike, name: Optional[str] = None) -> Path:
    """``<folder>/<name>.inter`` if present, else the folder's only ``*.inter`` file."""
    folder = check_folder(folder)
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
                      sep=separator(keys.get("field_separator", "\t")))


def feature_paths(folder: PathLike, name: Optional[str] = None) -> Dict[str, Path]:
    """Modality -> feature file named by the dataset keys (files may not exist): the
    modalities of ``feature_files`` when the dataset yaml declares it, else
    ``{'visual': <vision_feature_file>, 'text': <text_feature_file>}`` (the host's rule,
    :func:`mmrec_plugin.host.dataset.feature_files`)."""
    folder = Path(folder)
    keys = dataset_keys(folder, name)
    return {m: folder / f for m, f in feature_files(keys).items()}


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """``np.save`` without pickles (module-level so tests can simulate a failing write)."""
    np.save(path, array, allow_pickle=False)


def target_folder(out_dir: PathLike, name: str, what: str = "--out") -> Path:
    """``<out_dir>/<name>``, the folder a data command writes: ``name`` must be a plain name
    (:func:`check_name`), ``out_dir`` a folder or creatable as one, and the target (links
    resolved) inside ``out_dir``; else a UserError naming the option."""
    check_name(name)
    limits.check_output_dir(out_dir, what)
    target = Path(out_dir) / name
    limits.inside(target, out_dir, f"{what}/{name}")
    return target


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise DataError(f"{target.parent}: cannot create the dataset folder there "
                        f"({exc.strerror or exc})") from None
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
