"""Graph cache in the LMDB :class:`~mmrec_plugin.store.Store` (docs/METHOD.md "Graphs", DESIGN "Store").

A graph is stored under ``graph/<kind>/<digest>`` where the digest covers everything the
graph depends on: the binarised training matrix, every feature array, the modality weights,
the co-interaction weight, ``k``, the graph kind and :data:`CODE_VERSION` (bumped whenever
the construction changes). A changed input therefore yields a different key and never a
stale graph; a grid search over loss weights reuses the same key and builds each graph once.

Entries are checksummed by the store; an entry that fails its checksum, or whose arrays do
not form a valid CSR matrix of the expected shape, reads as missing and is rebuilt and
overwritten. An unwritable cache folder only costs the rebuild (a warning is logged).

The folder is ``<data_path>/<dataset>/.cache/`` (:func:`cache_dir`), which also works in an
MMRec checkout's data layout.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from mmrec_plugin.store import Store, digest

from mmrec_plugin.sparse import binarize

from .graphs import knn_homogeneous

__all__ = ["CODE_VERSION", "cache_dir", "graph_key", "cached_csr", "cached_knn_graph"]

logger = logging.getLogger(__name__)

CODE_VERSION = "brmrs-graphs-1"


def cache_dir(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>/.cache``."""
    return os.path.join(str(data_path), str(dataset), ".cache")


def graph_key(kind: str, *parts) -> str:
    """The store key of a graph of ``kind`` built from ``parts``."""
    return f"graph/{kind}/{digest(CODE_VERSION, kind, parts)}"


def _decode(arrays: Optional[dict], n: int) -> Optional[sp.csr_matrix]:
    if arrays is None:
        return None
    try:
        indptr, indices, data, shape = (arrays[k] for k in ("indptr", "indices", "data", "shape"))
        if tuple(int(s) for s in shape) != (n, n) or indptr.shape != (n + 1,):
            return None
        if indptr[0] != 0 or indptr[-1] != len(indices) or len(indices) != len(data):
            return None
        if np.any(np.diff(indptr) < 0) or (len(indices) and (indices.min() < 0 or indices.max() >= n)):
            return None
        if not np.all(np.isfinite(data)):
            return None
        return sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=(n, n))
    except Exception:  # missing key, wrong dtype: treat as missing
        return None


def cached_csr(
    path: Optional[str], key: str, n: int, build: Callable[[], sp.csr_matrix]
) -> Tuple[sp.csr_matrix, bool]:
    """The ``n x n`` graph at ``key`` in the store at ``path``, or ``build()`` (then stored).

    Returns:
        ``(graph, hit)``; ``path=None`` disables the cache (always builds, ``hit=False``).
    """
    if path is None:
        return build(), False
    try:
        store = Store(path)
    except Exception as exc:  # read-only or unusable folder: build without caching
        logger.warning("graph cache %s unavailable (%s); building without cache", path, exc)
        return build(), False
    try:
        graph = _decode(store.get_arrays(key), n)
        if graph is not None:
            logger.info("graph cache hit: %s", key)
            return graph, True
        logger.info("graph cache miss: %s; building", key)
        graph = sp.csr_matrix(build(), dtype=np.float32)
        try:
            store.put_arrays(
                key,
                {
                    "indptr": graph.indptr.astype(np.int64),
                    "indices": graph.indices.astype(np.int64),
                    "data": graph.data.astype(np.float32),
                    "shape": np.asarray(graph.shape, dtype=np.int64),
                },
            )
        except Exception as exc:
            logger.warning("graph cache %s: could not store %s (%s)", path, key, exc)
        return graph, False
    finally:
        store.close()


def cached_knn_graph(
    path: Optional[str],
    kind: str,
    inter_rows,
    feats: Sequence[np.ndarray],
    modality_weights: Sequence[float],
    co_weight: float,
    k: int,
    block_size: int = 2048,
) -> Tuple[sp.csr_matrix, bool]:
    """:func:`~mmrec_plugin.method.graphs.knn_homogeneous`, through the cache at ``path``.

    ``kind`` names the graph (e.g. ``'item'``, ``'user'``); ``block_size`` does not change
    the result and is not part of the key.
    """
    rows = binarize(inter_rows)
    feats = [np.ascontiguousarray(np.asarray(f, dtype=np.float32)) for f in feats]
    weights = [float(w) for w in modality_weights]
    key = graph_key(kind, rows, feats, weights, float(co_weight), int(k))
    return cached_csr(
        path,
        key,
        rows.shape[0],
        lambda: knn_homogeneous(rows, feats, weights, co_weight, k, block_size),
    )
