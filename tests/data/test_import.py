"""Import round trips (DiffMM pickles, LATTICE JSON) and the restricted unpickler."""
import builtins
import json
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_plugin.data import importers as IM
from mmrec_plugin.data import synthetic as S
from mmrec_plugin.cli import main as _main


def main(argv):
    """``mmrec-plugin data ARGV``."""
    return _main(["data"] + list(argv))
from mmrec_plugin.data.files import read_inter
from mmrec_plugin.errors import DataError

DIFFMM = ("trnMat.pkl", "valMat.pkl", "tstMat.pkl")
LATTICE = ("train.json", "val.json", "test.json")


@pytest.fixture(scope="module")
def sim():
    return S.simulate(S.SynthConfig(n_users=30, n_items=40, n_interactions=300, k=4,
                                    image_dim=16, text_dim=12, seed=11))


def _split_pairs(users, items, labels):
    return [sorted(zip(users[labels == j].tolist(), items[labels == j].tolist()))
            for j in range(3)]


def _export_diffmm(sim, folder, protocol, visual_name="image_feat.npy"):
    folder.mkdir(parents=True)
    shape = (sim.config.n_users, sim.config.n_items)
    for j, fname in enumerate(DIFFMM):
        m = sim.labels == j
        mat = sp.coo_matrix((np.ones(m.sum(), np.float32), (sim.users[m], sim.items[m])), shape=shape)
        if j == 1:
            mat = mat.tocsr()  # the loader accepts coo and csr
        with open(folder / fname, "wb") as f:
            pickle.dump(mat, f, protocol=protocol)
    np.save(folder / visual_name, sim.image_feat)
    np.save(folder / "text_feat.npy", sim.text_feat)


def _export_lattice(sim, folder):
    folder.mkdir(parents=True)
    (folder / "5-core").mkdir()
    for j, fname in enumerate(LATTICE):
        m = sim.labels == j
        d = {}
        for u, i in zip(sim.users[m].tolist(), sim.items[m].tolist()):
            d.setdefault(str(u), []).append(i)
        (folder / "5-core" / fname).write_text(json.dumps(d))
    np.save(folder / "image_feat.npy", sim.image_feat.astype(np.float64))
    np.save(folder / "text_feat.npy", sim.text_feat)


def _check_round_trip(sim, folder):
    inter = read_inter(folder / f"{folder.name}.inter")
    assert _split_pairs(inter.users, inter.items, inter.labels) == \
        _split_pairs(sim.users, sim.items, sim.labels)
    img = np.load(folder / "image_feat.npy")
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, sim.image_feat)
    np.testing.assert_array_equal(np.load(folder / "text_feat.npy"), sim.text_feat)
    assert (folder / f"{folder.name}.yaml").is_file()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_diffmm_round_trip(tmp_path, sim, protocol):
    _export_diffmm(sim, tmp_path / "src", protocol)
    assert IM.detect_format(tmp_path / "src") == "diffmm"
    assert main(["import", str(tmp_path / "src"), "--name", "imp", "--out", str(tmp_path)]) == 0
    _check_round_trip(sim, tmp_path / "imp")


def test_lattice_round_trip_with_string_keys_under_5core(tmp_path, sim):
    _export_lattice(sim, tmp_path / "src")
    assert IM.detect_format(tmp_path / "src") == "lattice"
    out = IM.import_dataset(tmp_path / "src", tmp_path, "imp")
    _check_round_trip(sim, out)


def test_any_modality_file_maps_to_a_slot(tmp_path, sim):
    _export_diffmm(sim, tmp_path / "src", 4, visual_name="audio_feat.npy")
    with pytest.raises(DataError, match="audio_feat.npy"):  # names what is there
        IM.import_dataset(tmp_path / "src", tmp_path, "imp")
    assert not (tmp_path / "imp").exists()
    out = IM.import_dataset(tmp_path / "src", tmp_path, "imp", visual="audio_feat.npy",
                            fmt="diffmm")
    np.testing.assert_array_equal(np.load(out / "image_feat.npy"), sim.image_feat)


def test_feature_rows_must_match_items(tmp_path, sim):
    _export_diffmm(sim, tmp_path / "src", 4)
    np.save(tmp_path / "src" / "text_feat.npy", sim.text_feat[:-3])
    with pytest.raises(DataError, match="text_feat.npy.*rows"):
        IM.import_dataset(tmp_path / "src", tmp_path, "imp")
    assert not (tmp_path / "imp").exists()


def test_format_detection_errors(tmp_path, sim):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="trnMat.pkl"):
        IM.detect_format(tmp_path / "empty")
    _export_diffmm(sim, tmp_path / "both", 4)
    (tmp_path / "both" / "train.json").write_text("{}")
    with pytest.raises(DataError, match="--format"):
        IM.detect_format(tmp_path / "both")


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("make", [
    lambda m: _System(m),
    lambda m: _Exec(m),
    # hidden next to a real matrix, inside a container
    lambda m: {"mat": sp.coo_matrix(np.eye(3)), "x": [_Exec(m)]},
])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, sim, make):
    marker = tmp_path / "marker"
    _export_diffmm(sim, tmp_path / "src", 4)
    with open(tmp_path / "src" / "valMat.pkl", "wb") as f:
        pickle.dump(make(marker), f)
    with pytest.raises(DataError, match="refused"):
        IM.import_dataset(tmp_path / "src", tmp_path, "imp")
    assert not marker.exists()
    assert not (tmp_path / "imp").exists()
    # through the command line: exit status 2, still nothing ran
    assert main(["import", str(tmp_path / "src"), "--name", "imp", "--out", str(tmp_path)]) == 2
    assert not marker.exists()


def test_restricted_unpickler_admits_plain_arrays_and_refuses_other_globals(tmp_path):
    p = tmp_path / "m.pkl"
    with open(p, "wb") as f:
        pickle.dump(np.arange(6, dtype=np.float64).reshape(2, 3), f, protocol=2)
    assert IM.load_pickled_matrix(p).shape == (2, 3)
    with open(p, "wb") as f:
        pickle.dump(np.array([1, 2]), f)  # 1-d: not a matrix
    with pytest.raises(DataError, match="2-d"):
        IM.load_pickled_matrix(p)
    with open(p, "wb") as f:
        pickle.dump(__import__("collections").OrderedDict(a=1), f)
    with pytest.raises(DataError, match="collections.OrderedDict"):
        IM.load_pickled_matrix(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        IM.load_pickled_matrix(p)


def test_pickles_from_either_numpy_generation_load(tmp_path):
    mat = sp.coo_matrix((np.array([1.0, 2.0]), (np.array([0, 2]), np.array([1, 0]))), shape=(3, 2))
    raw = pickle.dumps(mat, protocol=0)
    p = tmp_path / "m.pkl"
    for old, new in ((b"numpy._core", b"numpy.core"), (b"numpy.core", b"numpy._core")):
        p.write_bytes(raw.replace(old, new))
        got = IM.load_pickled_matrix(p)
        assert got.shape == (3, 2) and got.nnz == 2 and got[2, 0] == 2.0
