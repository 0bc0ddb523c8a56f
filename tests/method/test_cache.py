"""Graph cache: same inputs hit, any changed input misses, a corrupt entry is rebuilt."""
import lmdb
import numpy as np
import scipy.sparse as sp

from mmrec_plugin.method.cache import cache_dir, cached_knn_graph
from mmrec_plugin.method.graphs import knn_homogeneous
from mmrec_plugin.store import Store


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    rows = sp.csr_matrix((rng.random((12, 8)) < 0.4).astype(np.float32))
    feats = [rng.normal(size=(12, 4)).astype(np.float32), rng.normal(size=(12, 3)).astype(np.float32)]
    return rows, feats


def test_cache_dir_layout(tmp_path):
    assert cache_dir(str(tmp_path), "baby") == str(tmp_path / "baby" / ".cache")


def test_hit_and_misses(tmp_path):
    path = str(tmp_path / "c")
    rows, feats = _inputs()
    args = ([0.9, 0.1], 0.2, 3)
    g1, hit1 = cached_knn_graph(path, "item", rows, feats, *args)
    g2, hit2 = cached_knn_graph(path, "item", rows, feats, *args, block_size=5)
    assert not hit1 and hit2
    assert (g1 != g2).nnz == 0
    ref = knn_homogeneous(rows, feats, *args)
    assert abs(g1 - ref).max() == 0

    feats2 = [feats[0].copy(), feats[1]]
    feats2[0][3, 1] += 1e-3
    rows2 = rows.copy().tolil()
    rows2[0, 0] = 1 - rows2[0, 0]
    rows2 = rows2.tocsr()
    for changed in [
        (rows, feats2, [0.9, 0.1], 0.2, 3),
        (rows2, feats, [0.9, 0.1], 0.2, 3),
        (rows, feats, [0.8, 0.2], 0.2, 3),
        (rows, feats, [0.9, 0.1], 0.3, 3),
        (rows, feats, [0.9, 0.1], 0.2, 4),
    ]:
        g, hit = cached_knn_graph(path, "item", *changed)
        assert not hit
        assert abs(g - knn_homogeneous(*changed)).max() == 0
    _, hit = cached_knn_graph(path, "user", rows, feats, *args)  # another kind
    assert not hit
    _, hit = cached_knn_graph(path, "item", rows, feats, *args)
    assert hit


def _only_key(path):
    with Store(path) as s:
        keys = list(s.keys("graph/"))
    assert len(keys) == 1
    return keys[0]


def test_corrupt_entry_is_rebuilt(tmp_path):
    path = str(tmp_path / "c")
    rows, feats = _inputs(1)
    args = (rows, feats, [0.5, 0.5], 0.4, 2)
    g0, _ = cached_knn_graph(path, "item", *args)
    key = _only_key(path)

    # 1. bytes flipped behind the store's back: checksum fails
    env = lmdb.open(path, subdir=True)
    with env.begin(write=True) as txn:
        raw = bytearray(txn.get(key.encode()))
        raw[-5] ^= 0xFF
        txn.put(key.encode(), bytes(raw))
    env.close()
    g, hit = cached_knn_graph(path, "item", *args)
    assert not hit and abs(g - g0).max() == 0
    _, hit = cached_knn_graph(path, "item", *args)
    assert hit  # the rebuilt entry was stored

    # 2. a well-formed entry with the wrong arrays (e.g. a partial/foreign write)
    with Store(path) as s:
        s.put_arrays(key, {"indptr": np.array([0, 5]), "indices": np.array([1]), "data": np.array([1.0]),
                           "shape": np.array([12, 12])})
    g, hit = cached_knn_graph(path, "item", *args)
    assert not hit and abs(g - g0).max() == 0

    # 3. garbage payload with a valid checksum
    with Store(path) as s:
        s.put_bytes(key, b"not an npz")
    g, hit = cached_knn_graph(path, "item", *args)
    assert not hit and abs(g - g0).max() == 0


def test_no_cache_path_builds(tmp_path):
    rows, feats = _inputs(2)
    g, hit = cached_knn_graph(None, "item", rows, feats, [1.0, 0.0], 0.0, 2)
    assert not hit and g.shape == (12, 12)


def test_corrupt_cache_file_is_a_warning_and_a_build(tmp_path, caplog):
    """A cache whose data.mdb LMDB cannot read (overwritten) costs the build, with a
    warning naming the folder; the graph equals a fresh build."""
    path = str(tmp_path / "c")
    rows, feats = _inputs()
    args = ([0.9, 0.1], 0.2, 3)
    cached_knn_graph(path, "item", rows, feats, *args)
    data = tmp_path / "c" / "data.mdb"
    data.write_bytes(np.random.default_rng(0).bytes(data.stat().st_size))
    caplog.set_level("WARNING")
    g, hit = cached_knn_graph(path, "item", rows, feats, *args)
    assert not hit and abs(g - knn_homogeneous(rows, feats, *args)).max() == 0
    assert f"graph cache {path} unavailable" in caplog.text and "corrupt" in caplog.text
