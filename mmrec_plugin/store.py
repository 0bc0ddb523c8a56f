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

import hashlib
import io
import json
import os
from typing import Dict, Iterator, Optional

import numpy as np

_HEADER = 32  # sha256 digest length


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

    Args:
        path: folder of the LMDB environment (created if absent).
        map_size: maximum size of the database in bytes (default 64 GiB; LMDB only
            reserves address space, the file grows as needed).
    """

    def __init__(self, path: str, map_size: int = 1 << 36):
        import lmdb

        os.makedirs(path, exist_ok=True)
        self.path = path
        self._env = lmdb.open(path, map_size=map_size, subdir=True, lock=True)

    # -- raw entries ---------------------------------------------------------------
    def put_bytes(self, key: str, payload: bytes) -> None:
        value = hashlib.sha256(payload).digest() + payload
        with self._env.begin(write=True) as txn:
            txn.put(key.encode(), value)
        self._env.sync(True)

    def get_bytes(self, key: str) -> Optional[bytes]:
        with self._env.begin() as txn:
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
        with self._env.begin(write=True) as txn:
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

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
