"""Atomic dataset folders: a failure mid-write leaves no target and no temporary folder."""
import numpy as np
import pytest

from mmrec_plugin.data import files
from mmrec_plugin.data import importers as IM
from mmrec_plugin.data import synthetic as S
from mmrec_plugin.data.split import resplit_dataset

TINY = dict(n_users=20, n_items=30, n_interactions=150, k=2)


def _fail_on_second_save(monkeypatch, exc):
    real = files.save_npy
    calls = []

    def save(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise exc
        real(path, array)

    monkeypatch.setattr(files, "save_npy", save)
    return calls


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_generate_interrupted_leaves_nothing(tmp_path, monkeypatch, exc):
    calls = _fail_on_second_save(monkeypatch, exc)
    with pytest.raises(type(exc)):
        S.generate(tmp_path, "toy", **TINY)
    assert len(calls) == 2  # it did fail mid-write, after the .inter and one feature file
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    old = S.generate(tmp_path, "toy", seed=1, **TINY)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    _fail_on_second_save(monkeypatch, OSError("disk full"))
    with pytest.raises(OSError):
        S.generate(tmp_path, "toy", seed=2, overwrite=True, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    monkeypatch.undo()
    S.generate(tmp_path, "toy", seed=2, overwrite=True, **TINY)  # a successful replace
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]
    assert (old / "toy.inter").read_bytes() != before["toy.inter"]


def test_import_and_resplit_interrupted_leave_nothing(tmp_path, monkeypatch):
    src = S.generate(tmp_path / "in", "toy", **TINY)
    # a LATTICE copy of it, to import
    lat = tmp_path / "lat"
    lat.mkdir()
    inter = files.read_dataset(src)
    import json
    for j, name in enumerate(("train.json", "val.json", "test.json")):
        m = inter.labels == j
        d = {}
        for u, i in zip(inter.users[m].tolist(), inter.items[m].tolist()):
            d.setdefault(str(u), []).append(i)
        (lat / name).write_text(json.dumps(d))
    for f in ("image_feat.npy", "text_feat.npy"):
        np.save(lat / f, np.load(src / f))
    out = tmp_path / "out"
    _fail_on_second_save(monkeypatch, OSError("disk full"))
    with pytest.raises(OSError):
        IM.import_dataset(lat, out, "imp")
    assert list(out.iterdir()) == []

    def broken_copy(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("shutil.copyfile", broken_copy)
    with pytest.raises(OSError):
        resplit_dataset(src, out, "re", loo=True)
    assert list(out.iterdir()) == []
