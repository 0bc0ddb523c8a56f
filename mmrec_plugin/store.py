"""The LMDB store: grid-search results and cached graph artifacts.

One LMDB environment per folder. Every value is written in a single transaction with a
sha256 checksum of its payload, so a reader either sees a whole entry or none; an entry
whose checksum does not match (a corrupt or partial write) reads as missing and is deleted.

Values are JSON documents (:meth:`Store.put_json`) or named numpy arrays
(:meth:`Store.put_arrays`, stored as an uncompressed ``.npz`` payload; no pickle).

Example::

    store = Store("results/store")
    store.put_json("run/abc", {"valid": 0.1})
    store.get_json("run/abc")  # {'valid': 0.1}
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from typing import Dict, Iterator, Optional

import numpy as np

from mmrec_plugin.errors import UserError

_HEADER = 32  # sha256 digest length


class StoreError(UserError):
    """The store folder cannot be opened, read or written (permissions, an immutable or
    read-only folder, a full disk) or is not a valid LMDB store (corrupt). The message names
    the folder and what to do; nothing in it is changed."""


# LMDB errors that mean the files are damaged (not that the folder is unwritable)
_CORRUPT = ("InvalidError", "CorruptedError", "PageNotFoundError", "VersionMismatchError",
            "BadChecksumError", "PanicError", "IncompatibleError", "BadRslotError")


def digest(*parts) -> str:
    """A stable hex key for ``parts``: bytes, str, numbers, numpy arrays, scipy sparse
    matrices, or (nested) lists/tuples/dicts of those. Used for cache keys that must
    change whenever any input changes.

    Typed: every value is fed with a tag of its kind, so ``1``, ``1.0``, ``True``, ``"1"`` and
    ``b"1"`` all differ. A numpy scalar counts as the Python value it holds
    (``np.int64(1)`` as ``1``, ``np.float32(0.5)`` as ``0.5``, ``np.bool_(True)`` as ``True``).
    (Release 0.1 fed numbers and str as their text; its keys differ from these, so results
    and graph caches of 0.1 are recomputed once.)"""
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()


def _feed(h, obj) -> None:
    import scipy.sparse as sp

    if isinstance(obj, np.generic) and not isinstance(obj, (np.void, np.str_, np.bytes_)):
        obj = obj.item()  # numpy scalar -> the Python bool / int / float it holds
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        h.update(b"B%d:" % len(data))
        h.update(data)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        h.update(b"U%d:" % len(data))
        h.update(data)
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, int):
        h.update(b"I%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"R" + repr(obj).encode() + b";")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        _feed(h, f"A{a.dtype.str}{a.shape}")
        h.update(a.tobytes())
    elif sp.issparse(obj):
        m = sp.csr_matrix(obj)
        m.sum_duplicates()
        m.sort_indices()
        _feed(h, ("S", m.shape, m.indptr, m.indices, m.data))
    elif hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        _feed(h, obj.detach().cpu().numpy())
    elif isinstance(obj, dict):
        _feed(h, ("D", sorted(((str(k), v) for k, v in obj.items()), key=lambda kv: kv[0])))
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d:" % len(obj))
        for x in obj:
            _feed(h, x)
    else:
        raise TypeError(f"digest: cannot hash a {type(obj).__name__}")


class Store:
    """A small LMDB-backed key-value store with checksummed entries.

    A folder that cannot be opened or written, or a damaged LMDB file, raises
    :class:`StoreError` (a :class:`~mmrec_plugin.errors.UserError`: one ``error:`` line).

    Args:
        path: folder of the LMDB environment (created if absent).
        map_size: maximum size of the database in bytes (default 64 GiB; LMDB only
            reserves address space, the file grows as needed).
    """

    def __init__(self, path: str, map_size: int = 1 << 36):
        import lmdb

        self.path = path
        with self._errors("open"):
            os.makedirs(path, exist_ok=True)
            # mode: data.mdb and lock.mdb as files created by open() (LMDB's default, 0644,
            # ignores a group-writable umask)
            self._env = lmdb.open(path, map_size=map_size, subdir=True, lock=True, mode=0o666)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """LMDB and OS errors as a :class:`StoreError` naming the folder and the remedy."""
        import lmdb

        try:
            yield
        except (OSError, lmdb.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            if type(exc).__name__ in _CORRUPT:
                raise StoreError(
                    f"store {self.path} is corrupt or not an LMDB store ({reason}); its entries "
                    f"cannot be read. Move it aside (mv {self.path} {self.path}.corrupt) and rerun: "
                    f"the work it recorded is done again, nothing else is touched"
                ) from None
            raise StoreError(
                f"cannot {action} the store {self.path} ({reason}); the folder must be writable "
                f"(check its permissions, a read-only or immutable folder, free disk space)"
            ) from None

    # -- raw entries ---------------------------------------------------------------
    def put_bytes(self, key: str, payload: bytes) -> None:
        value = hashlib.sha256(payload).digest() + payload
        with self._errors("write to"):
            with self._env.begin(write=True) as txn:
                txn.put(key.encode(), value)
            self._env.sync(True)

    def get_bytes(self, key: str) -> Optional[bytes]:
        with self._errors("read"), self._env.begin() as txn:
            value = txn.get(key.encode())
        if value is None:
            return None
        value = bytes(value)
        payload = value[_HEADER:]
        if len(value) < _HEADER or hashlib.sha256(payload).digest() != value[:_HEADER]:
            self.delete(key)  # corrupt or partial: treat as missing
            return None
        return payload

    def delete(self, key: str) -> None:
        with self._errors("write to"), self._env.begin(write=True) as txn:
            txn.delete(key.encode())

    def keys(self, prefix: str = "") -> Iterator[str]:
        p = prefix.encode()
        with self._env.begin() as txn:
            cur = txn.cursor()
            if not cur.set_range(p):
                return
            for k in cur.iternext(keys=True, values=False):
                if not bytes(k).startswith(p):
                    break
                yield bytes(k).decode()

    def __contains__(self, key: str) -> bool:
        return self.get_bytes(key) is not None

    # -- JSON ------------------------------------------------------------------------
    def put_json(self, key: str, obj) -> None:
        self.put_bytes(key, json.dumps(obj, sort_keys=True).encode())

    def get_json(self, key: str):
        payload = self.get_bytes(key)
        return None if payload is None else json.loads(payload.decode())

    # -- arrays ----------------------------------------------------------------------
    def put_arrays(self, key: str, arrays: Dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        self.put_bytes(key, buf.getvalue())

    def get_arrays(self, key: str) -> Optional[Dict[str, np.ndarray]]:
        payload = self.get_bytes(key)
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # unreadable despite checksum: rebuild
            self.delete(key)
            return None

    # -- several entries at once -----------------------------------------------------
    @contextlib.contextmanager
    def transact(self) -> Iterator["Transaction"]:
        """One write transaction: every read inside it sees the store as it is, and every
        write inside it lands together or not at all (on an exception nothing is written).

        LMDB lets one writer at a time into a store (across processes), so this is also a
        lock: a read-check-write inside it cannot interleave with another process's
        (used for the grid's claims). Keep it short. LMDB and OS errors of the store
        (beginning, each entry, the commit) raise :class:`StoreError`, as elsewhere.
        """
        with self._errors("write to"):
            txn = self._env.begin(write=True)
        try:
            yield Transaction(txn, self._errors)
        except BaseException:
            txn.abort()
            raise
        with self._errors("write to"):
            txn.commit()
            self._env.sync(True)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _checked(value) -> Optional[bytes]:
    """The payload of a stored ``value`` (checksum + payload), or None when it is missing
    or does not match its checksum."""
    if value is None:
        return None
    value = bytes(value)
    payload = value[_HEADER:]
    if len(value) < _HEADER or hashlib.sha256(payload).digest() != value[:_HEADER]:
        return None
    return payload


class Transaction:
    """JSON entries inside :meth:`Store.transact` (same format as :meth:`Store.put_json`;
    a corrupt entry reads as None)."""

    def __init__(self, txn, errors):
        self._txn = txn
        self._errors = errors  # Store._errors: LMDB errors as StoreError

    def get_json(self, key: str):
        with self._errors("read"):
            value = self._txn.get(key.encode())
        payload = _checked(value)
        return None if payload is None else json.loads(payload.decode())

    def put_json(self, key: str, obj) -> None:
        payload = json.dumps(obj, sort_keys=True).encode()
        with self._errors("write to"):
            self._txn.put(key.encode(), hashlib.sha256(payload).digest() + payload)

    def delete(self, key: str) -> None:
        with self._errors("write to"):
            self._txn.delete(key.encode())
