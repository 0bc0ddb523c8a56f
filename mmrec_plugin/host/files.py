"""The one reader of dataset files: ``.inter`` interaction tables and ``.npy`` feature arrays.

Every command that reads a dataset goes through here (``run`` via
:class:`~mmrec_plugin.host.dataset.RecDataset`, ``data validate``, ``stats``, ``resplit``),
so they accept and refuse the same files, with the same messages.

``.inter`` (:func:`read_interactions`): UTF-8 text, a header line, ``sep``-separated
columns found by name. An id or label is ASCII digits (an optional ``+``, surrounding
spaces allowed); a NUL byte anywhere, a non-ASCII digit (Arabic-Indic, full-width, ...), a
negative id, a label other than 0/1/2, a short line, and an id far beyond the number of
distinct ids (``max id >= MAX_ID_FACTOR * distinct + ID_SLACK``, see
:mod:`mmrec_plugin.limits`) are DataErrors naming the file and line. The id rule is
checked before anything is sized by the largest id: MMRec counts ``max id + 1`` users and
items, so one stray id of 10^10 would otherwise ask for tables of 10^10 rows. A
well-formed ASCII file is parsed in one vectorised ``np.loadtxt`` call; anything else goes
through a per-line parser that names the first bad line (the error path).

``.npy`` (:func:`open_features`, :func:`check_features`, :func:`load_features`): a plain
``numpy.save`` file of real numbers, ``[n_items, d]`` with ``d >= 1``, all finite. A
zero-byte file, an ``.npz`` archive or any other non-``.npy`` file, an array of Python
objects (which would need unpickling), a truncated file, a wrong shape or dtype and NaN/inf
are DataErrors naming the file. The header is read first and the data memory-mapped, so a
check reads the file in row blocks without loading it.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from mmrec_plugin import limits
from mmrec_plugin.yamlio import stat_regular
from mmrec_plugin.errors import DataError

__all__ = ["Interactions", "separator", "read_interactions", "duplicate_pairs", "id_gaps", "open_features",
           "check_features", "load_features", "LABEL_FIELD"]

logger = logging.getLogger(__name__)

LABEL_FIELD = "x_label"
_ROWS = 4096  # feature rows per block when scanning for NaN/inf
_INT = re.compile(r"[+-]?[0-9]+")


@dataclass
class Interactions:
    """The interactions of one ``.inter`` file.

    Attributes:
        users, items: ``int64 [n]`` ids.
        labels: ``int8 [n]`` split labels (0 train, 1 valid, 2 test), or None when the file
            has no label column and none was required.
        path: the file read.
    """

    users: np.ndarray
    items: np.ndarray
    labels: Optional[np.ndarray]
    path: str = ""

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


def _read_regular(path: str, what: str) -> bytes:
    """The bytes of a regular file; a missing file, a folder or a fifo is a DataError (the
    kind is checked before opening and on the descriptor, opened non-blocking)."""
    stat_regular(path, what, DataError)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DataError(f"{what} {path} is not a regular file")
            with os.fdopen(os.dup(fd), "rb") as fh:
                return fh.read()
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def separator(sep) -> str:
    """MMRec's ``field_separator``: one character; the two characters ``\\t`` (a tab written
    in a command line or a quoted yaml string) read as a tab. Else a DataError."""
    if sep == "\\t":
        sep = "\t"
    if not isinstance(sep, str) or len(sep) != 1 or sep in "\r\n\x00":
        raise DataError(f"config key 'field_separator' must be a single character (not a "
                        f"newline or NUL), got {sep!r}")
    return sep


def read_text(path, sep: str = "\t") -> str:
    """The text of an interaction file: a regular file (not a folder or fifo), UTF-8 (a
    leading byte-order mark dropped), without NUL bytes; else a DataError naming the file
    and the line."""
    path = os.fspath(path)
    data = _read_regular(path, "interaction file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not a UTF-8 text file (undecodable byte "
            f"{data[exc.start:exc.start + 1]!r}); expected {sep!r}-separated text with a header line"
        ) from None
    del data
    if text.startswith("\ufeff"):
        text = text[1:]
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"{path}, line {_line_of(text, nul)}: contains a NUL byte; expected "
                        f"{sep!r}-separated text")
    return text


def header_fields(text: str, path: str, sep: str) -> List[str]:
    """The column names of the first line (csv rules), stripped; an empty first line is a
    DataError."""
    first_nl = text.find("\n")
    line = (text if first_nl < 0 else text[:first_nl]).rstrip("\r")
    header = [h.strip() for h in next(csv.reader([line], delimiter=sep), [])]
    if not any(header):
        raise DataError(f"{path} is empty: expected a header line naming the columns")
    return header


def column_indexes(header: List[str], path: str, sep: str, wanted: List[str]) -> List[int]:
    """The index of each ``wanted`` column in ``header``; a missing one is a DataError."""
    missing = [c for c in wanted if c not in header]
    if missing:
        which = ("column " if len(missing) == 1 else "columns ") + ", ".join(f"'{m}'" for m in missing)
        raise DataError(f"{path}, line 1: {which} not found in the header {header} "
                        f"(separator {sep!r}; columns needed: {', '.join(wanted)})")
    return [header.index(c) for c in wanted]


def iter_rows(text: str, path: str, sep: str, need: int, n_header: int):
    """``(line number, fields)`` of each non-blank data line (csv rules: quoted fields); a
    line with fewer than ``need`` fields, or one csv cannot split, is a DataError."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    next(reader, None)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num}: cannot be split into fields "
                            f"({exc})") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < need:
            raise DataError(f"{path}, line {reader.line_num}: {len(row)} field(s), expected "
                            f"{n_header} separated by {sep!r} (as in the header)")
        yield reader.line_num, row


def read_interactions(path, user_field: str = "userID", item_field: str = "itemID",
                      label_field: str = LABEL_FIELD, sep: str = "\t",
                      require_label: bool = True) -> Interactions:
    """Read an ``.inter`` file (see the module docstring for what is accepted).

    Args:
        path: the file.
        user_field, item_field, label_field: column names (MMRec's defaults).
        sep: the field separator, one character (MMRec's ``field_separator``, a tab).
        require_label: a missing label column is an error (else ``labels`` is None).

    Raises:
        DataError: naming the file and, for a bad line, the line number and the column.
    """
    path = os.fspath(path)
    sep = separator(sep)
    text = read_text(path, sep)
    header = header_fields(text, path, sep)
    wanted = [user_field, item_field]
    if require_label or label_field in header:
        wanted.append(label_field)
    cols = column_indexes(header, path, sep, wanted)
    fast = _parse_fast(path, sep, cols) if text.isascii() else None
    lines = None
    if fast is None:
        fast, lines = _parse_rows(text, path, sep, cols, wanted, len(header))
    if fast.shape[0] == 0:
        raise DataError(f"{path} has a header but no interactions")
    users = np.ascontiguousarray(fast[:, 0])
    items = np.ascontiguousarray(fast[:, 1])
    for column, arr in ((user_field, users), (item_field, items)):
        _check_id_range(arr, column, path, text, sep, cols, wanted, len(header), lines)
    labels = fast[:, 2].astype(np.int8) if len(wanted) == 3 else None
    return Interactions(users, items, labels, path)


def _parse_fast(path: str, sep: str, cols: List[int]) -> Optional[np.ndarray]:
    """``int64 [n, len(cols)]`` of a well-formed file in one ``np.loadtxt`` call, or None
    when anything is unusual (a negative id, an unknown label, anything not an integer):
    the per-line parser then names the line. Called only for a regular file whose text
    was checked to be ASCII without NUL bytes (numpy's parser would also accept non-ASCII
    spaces); it reads the file by name, which is faster than from a string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. numpy 1.23's float-string-to-int deprecation
            out = np.loadtxt(path, delimiter=sep, skiprows=1, usecols=cols, dtype=np.int64,
                             ndmin=2, comments=None, encoding="utf-8")
    except (ValueError, TypeError, OverflowError, IndexError, OSError, Warning):
        return None
    if out.shape[0] and (out[:, :2].min() < 0
                         or (len(cols) == 3 and ((out[:, 2] < 0) | (out[:, 2] > 2)).any())):
        return None
    return out


def _parse_rows(text: str, path: str, sep: str, cols: List[int], names: List[str],
                n_header: int) -> Tuple[np.ndarray, np.ndarray]:
    """The per-line parser: ``(int64 [n, len(cols)], line numbers [n])``; the first bad line
    is a DataError (this is the error path, and the path of unusual files: quoted fields,
    non-ASCII text in other columns)."""
    rows: List[List[int]] = []
    line_nos: List[int] = []
    for line_no, row in iter_rows(text, path, sep, max(cols) + 1, n_header):
        values = []
        for j, (c, name) in enumerate(zip(cols, names)):
            raw = row[c]
            field = raw.strip()
            if not raw.isascii() or not _INT.fullmatch(field):
                why = " (only ASCII digits 0-9)" if not raw.isascii() else ""
                raise DataError(f"{path}, line {line_no}: column '{name}' must hold integer ids"
                                f"{why}, got {raw!r}")
            value = int(field)
            if abs(value) >= 2 ** 63:
                raise DataError(f"{path}, line {line_no}: column '{name}': {field[:30]}... is "
                                "beyond 64-bit integers")
            if j == 2:
                if not 0 <= value <= 2:
                    raise DataError(f"{path}, line {line_no}: unknown {name} {value} "
                                    "(accepted: 0 train, 1 valid, 2 test)")
            elif value < 0:
                raise DataError(f"{path}, line {line_no}: column '{name}' must be a "
                                f"non-negative id, got {value}")
            values.append(value)
        rows.append(values)
        line_nos.append(line_no)
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, len(cols))
    return arr, np.asarray(line_nos, dtype=np.int64)


def _check_id_range(ids: np.ndarray, column: str, path: str, text: str, sep: str,
                    cols: List[int], names: List[str], n_header: int,
                    lines: Optional[np.ndarray]) -> None:
    """The id rule of :mod:`mmrec_plugin.limits` (checked before anything is sized by it)."""
    top = int(ids.max())
    if top <= limits.max_id_allowed(0):
        return
    if top <= limits.max_id_allowed(ids.shape[0]):  # a flag per id: at most ~10 x the rows
        present = np.zeros(top + 1, dtype=bool)
        present[ids] = True
        n_distinct = int(np.count_nonzero(present))
    else:  # refused whatever the distinct count (at most the rows); counted for the message
        n_distinct = int(np.unique(ids).size)
    allowed = limits.max_id_allowed(n_distinct)
    if top <= allowed:
        return
    k = int(np.argmax(ids > allowed))
    if lines is None:  # the fast path kept no line numbers: the per-line parser has them
        lines = _parse_rows(text, path, sep, cols, names, n_header)[1]
    raise DataError(
        f"{path}, line {int(lines[k])}: {column} {int(ids[k])} is far beyond the {n_distinct} "
        f"distinct {column} value(s) of the file (accepted: ids up to {allowed} = "
        f"{limits.MAX_ID_FACTOR} x distinct + {limits.ID_SLACK - 1}; MMRec counts max id + 1 and "
        "sizes its tables by it); ids must be 0..n-1: `mmrec-plugin data import --format inter "
        "FOLDER --name NAME` remaps them")


def duplicate_pairs(users: np.ndarray, items: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """``(number of pairs occurring more than once, first row, its repeat's row)`` (rows
    0-based), or None when every (user, item) pair occurs once."""
    if len(users) < 2:
        return None
    codes = users * np.int64(int(items.max()) + 1) + items
    order = np.argsort(codes, kind="stable")
    same = codes[order[1:]] == codes[order[:-1]]
    if not same.any():
        return None
    k = int(np.argmax(same))
    n_dup = int(np.unique(codes[order[1:]][same]).size)
    return n_dup, int(order[k]), int(order[k + 1])


def id_gaps(ids: np.ndarray, what: str) -> Optional[str]:
    """A warning when ids ``0..max`` include ids without interactions (MMRec counts
    ``max id + 1``, so these are users/items without data, usually a sign of raw ids)."""
    if ids.size == 0:
        return None
    present = np.zeros(int(ids.max()) + 1, dtype=bool)
    present[ids] = True
    missing = np.flatnonzero(~present)
    if missing.size == 0:
        return None
    return (f"{what} ids are not contiguous from 0: {missing.size} of 0..{present.size - 1} have "
            f"no interaction (first: {missing[:5].tolist()}); MMRec counts max id + 1, so they "
            f"are {what}s without data (re-index with `mmrec-plugin data import --format inter`)")


# ----------------------------------------------------------------------------- features
def open_features(path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only (or in memory when it has no
    elements), after checking that it is one: see the module docstring.

    Raises:
        DataError: naming the file: not found, not a regular file, empty, not a ``.npy``
            file (an ``.npz`` archive, text, ...), Python objects, truncated.
    """
    path = os.fspath(path)
    st = stat_regular(path, "feature file", DataError)
    if st.st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); expected a .npy array [n_items, d] "
                        "written by numpy.save")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            if magic != b"\x93NUMPY":
                kind = ("a zip archive (an .npz saved under a .npy name?)" if magic[:2] == b"PK"
                        else "not a .npy file (it lacks numpy's header)")
                raise DataError(f"{path}: {kind}; expected one array [n_items, d] written by "
                                "numpy.save")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise DataError(f"{path}: .npy format version {version} holds a structured "
                                "array; expected a plain array of numbers")
            offset = fh.tell()
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (a pickled object array), which are "
                        "not loaded; expected an array of numbers")
    count = 1
    for s in shape:
        count *= int(s)
    if offset + count * dtype.itemsize > st.st_size:
        raise DataError(f"{path}: truncated: the header announces shape {tuple(shape)} of "
                        f"{dtype} ({offset + count * dtype.itemsize} bytes), the file has "
                        f"{st.st_size} bytes")
    if count == 0:
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                     order="F" if fortran else "C")


def check_features(arr: np.ndarray, path, n_items: Optional[int]) -> None:
    """DataError naming ``path`` when ``arr`` is not a real ``[n_items, d]`` array with
    ``d >= 1`` and finite values (read in row blocks; ``n_items`` None: any row count)."""
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{path}: feature array has dtype {arr.dtype}; expected real numbers "
                        "(float or integer), one row per item")
    if arr.ndim != 2 or arr.shape[1] == 0 or (n_items is not None and arr.shape[0] != n_items):
        expect = f"({n_items}, d)" if n_items is not None else "(n_items, d)"
        rows = (f"; {arr.shape[0]} rows, but the dataset has {n_items} items"
                if arr.ndim == 2 and n_items is not None and arr.shape[0] != n_items else "")
        raise DataError(f"{path}: feature array has shape {tuple(arr.shape)}, expected {expect} "
                        f"with d >= 1{rows}: one row per item (n_items = max itemID + 1 in the "
                        ".inter file)")
    if not np.issubdtype(arr.dtype, np.inexact):
        return
    bad, first = 0, None
    for s in range(0, arr.shape[0], _ROWS):
        rows = np.flatnonzero(~np.isfinite(np.asarray(arr[s:s + _ROWS])).all(axis=1))
        if rows.size:
            bad += int(rows.size)
            first = s + int(rows[0]) if first is None else first
    if bad:
        raise DataError(f"{path}: {bad} row(s) contain NaN or inf (first: row {first}); "
                        "features must be finite")


def load_features(path, n_items: Optional[int]) -> np.ndarray:
    """The checked feature array of ``path`` as float32 in memory (:func:`open_features`,
    :func:`check_features`; the copy's size is checked against the available memory)."""
    arr = open_features(path)
    check_features(arr, path, n_items)
    limits.check_allocation(arr.size * 4, f"the features of {path} ({arr.shape[0]} x "
                            f"{arr.shape[1]} float32)", "use smaller feature files")
    return np.array(arr, dtype=np.float32)
