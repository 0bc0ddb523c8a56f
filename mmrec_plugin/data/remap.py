"""Import an interaction table with raw ids: remap them to ``0..n-1`` (``data import --format inter``).

MMRec counts ``max id + 1`` users and items, so its ``.inter`` files hold ids already mapped
to ``0..n-1``. A table with raw ids (strings such as Amazon's ``A1B2C3``, or integers with
gaps, e.g. ``99999999999``) is refused by ``run`` and ``data validate`` when its ids are far
beyond the number of distinct ids (docs/limits.md). This importer reads such a table and
writes a dataset in MMRec's layout:

- the source is a folder with one ``.inter`` file (``<folder name>.inter``, else the only
  ``*.inter``), columns read by name (``userID``, ``itemID`` and, if present, ``x_label``;
  the folder's dataset yaml may rename them or set ``field_separator``);
- ids are remapped in sorted order: numerically when every id of the column is an ASCII
  integer (ids already ``0..n-1`` stay as they are), else as text; empty ids are refused
  with the line number; ``user_ids.tsv`` / ``item_ids.tsv`` (``newID rawID``) record the map;
- duplicate (user, item) pairs are dropped (the first kept, with a warning); without an
  ``x_label`` column the splits are drawn by MMRec's per-user rule (``seed``);
- feature files (``--text`` / ``--visual``, default ``text_feat.npy`` / ``image_feat.npy``
  in the source folder, each optional here) are indexed by the raw integer item id (row
  ``r`` = item ``r``); their rows are reordered to the new ids. Raw text ids cannot index a
  feature file: features are then refused.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmrec_plugin.data import files
from mmrec_plugin.data.split import mmrec_split
from mmrec_plugin.errors import DataError
from mmrec_plugin.host import files as hfiles

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]{1,18}")


def _read_raw(path: Path, keys: Dict[str, object]) -> Tuple[List[str], List[str], Optional[np.ndarray], List[int]]:
    """Raw user and item id texts, labels (int8, or None without the column), line numbers."""
    sep = hfiles.separator(keys.get("field_separator", "\t"))
    text = hfiles.read_text(str(path), sep)
    header = hfiles.header_fields(text, str(path), sep)
    ufield, ifield = str(keys["USER_ID_FIELD"]), str(keys["ITEM_ID_FIELD"])
    wanted = [ufield, ifield] + ([hfiles.LABEL_FIELD] if hfiles.LABEL_FIELD in header else [])
    cols = hfiles.column_indexes(header, str(path), sep, wanted)
    users: List[str] = []
    items: List[str] = []
    labels: List[int] = []
    lines: List[int] = []
    for line_no, row in hfiles.iter_rows(text, str(path), sep, max(cols) + 1, len(header)):
        u, i = row[cols[0]].strip(), row[cols[1]].strip()
        for value, name in ((u, ufield), (i, ifield)):
            if not value:
                raise DataError(f"{path}, line {line_no}: column '{name}' is empty")
        if len(cols) == 3:
            lab = row[cols[2]].strip()
            if lab not in ("0", "1", "2"):
                raise DataError(f"{path}, line {line_no}: unknown {hfiles.LABEL_FIELD} {lab!r} "
                                "(accepted: 0 train, 1 valid, 2 test)")
            labels.append(int(lab))
        users.append(u)
        items.append(i)
        lines.append(line_no)
    if not users:
        raise DataError(f"{path} has a header but no interactions")
    return users, items, (np.asarray(labels, np.int8) if len(cols) == 3 else None), lines


def _remap(raw: List[str]) -> Tuple[np.ndarray, np.ndarray, bool]:
    """``(new ids int64 [n], raw id of each new id [n_distinct], numeric)``: sorted order,
    numerically when every raw id is an ASCII integer (up to 18 digits)."""
    numeric = all(_DIGITS.fullmatch(v) for v in raw)
    values = np.asarray([int(v) for v in raw], dtype=np.int64) if numeric else np.asarray(raw)
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1), uniq, numeric


def _write_map(path: Path, uniq: np.ndarray, what: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"new{what}\traw{what}\n")
        for j, raw in enumerate(uniq.tolist()):
            fh.write(f"{j}\t{raw}\n")


def _features(src: Path, given: Optional[str], default: str, slot: str,
              raw_items: np.ndarray, numeric: bool) -> Optional[np.ndarray]:
    """The feature rows of the new item ids, or None when no file is given or found."""
    if given:
        p = Path(given)
        if not p.is_absolute() and not p.exists():
            p = src / given
    else:
        p = src / default
        if not os.path.lexists(p):
            log.warning("%s: no %s for the %s slot; the dataset has no %s features (models "
                        "that need them will refuse it; map a file with --%s)", src, default,
                        slot, slot, slot)
            return None
    if not numeric:
        raise DataError(f"{p}: the item ids are text, so the rows of a feature file cannot be "
                        "matched to them; import without features (move the file away) or "
                        "give integer item ids (row r = item r)")
    arr = hfiles.open_features(p)
    hfiles.check_features(arr, p, None)
    top = int(raw_items.max())
    if top >= arr.shape[0]:
        raise DataError(f"{p}: {arr.shape[0]} rows, but item {top} occurs in the interactions; "
                        "row r of a feature file must be item r (raw id)")
    return np.asarray(arr[raw_items], dtype=np.float32)


def import_inter(src: os.PathLike, target: Path, name: str, text: Optional[str] = None,
                 visual: Optional[str] = None, overwrite: bool = False, seed: int = 0) -> Path:
    """Import the raw ``.inter`` table of folder ``src`` as ``target`` (see the module
    docstring); ``target`` comes from :func:`mmrec_plugin.data.files.target_folder`."""
    src = files.check_folder(src)
    keys = files.dataset_keys(src)
    path = src / str(keys["inter_file_name"])
    raw_u, raw_i, labels, lines = _read_raw(path, keys)
    users, uniq_u, _ = _remap(raw_u)
    items, uniq_i, numeric_i = _remap(raw_i)
    dup = hfiles.duplicate_pairs(users, items)
    if dup is not None:
        _, first = np.unique(users * np.int64(uniq_i.size) + items, return_index=True)
        keep = np.sort(first)
        log.warning("%s: dropped %d repeated (user, item) pair(s) (first repeat on line %d)",
                    path, users.size - keep.size, lines[dup[2]])
        users, items = users[keep], items[keep]
        labels = labels[keep] if labels is not None else None
    if labels is None:
        labels = mmrec_split(users, seed)
    feats = {slot: _features(src, given, default, slot, uniq_i, numeric_i)
             for slot, given, default in (("visual", visual, "image_feat.npy"),
                                          ("text", text, "text_feat.npy"))}
    with files.atomic_dir(target, overwrite=overwrite) as tmp:
        files.write_inter(tmp / f"{name}.inter", users, items, labels)
        _write_map(tmp / "user_ids.tsv", uniq_u, "userID")
        _write_map(tmp / "item_ids.tsv", uniq_i, "itemID")
        for slot, fname in (("visual", "image_feat.npy"), ("text", "text_feat.npy")):
            if feats[slot] is not None:
                files.save_npy(tmp / fname, feats[slot])
        files.write_dataset_yaml(tmp / f"{name}.yaml", name)
    log.info("imported %s with remapped ids as %s: %d users, %d items, %d interactions", path,
             target, uniq_u.size, uniq_i.size, users.size)
    return target
