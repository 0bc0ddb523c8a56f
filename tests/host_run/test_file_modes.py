"""Files and folders the tools create honour the user's umask: the JSON
summary, saved models, the LMDB store, reports, generated datasets and anything written
through utils.atomic_path (figures included), whose temporary file mkstemp makes 0600."""
import os
import stat

import pytest

from mmrec_plugin.cli import main
from mmrec_plugin.utils import atomic_path, atomic_write_text, umask


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=lambda m: f"umask{m:03o}")
def mask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(folder):
    """{relative path: permission bits} of everything under ``folder``."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, folder)] = stat.S_IMODE(os.stat(p).st_mode)
    return out


def expected(folder, mask):
    return {rel: (0o777 if os.path.isdir(os.path.join(folder, rel)) else 0o666) & ~mask
            for rel in modes(folder)}


def test_umask_read_without_changing_it(mask):
    assert umask() == mask
    assert umask() == mask


def test_atomic_path_file_gets_umask_mode(tmp_path, mask):
    path = tmp_path / "fig.png"
    with atomic_path(str(path)) as tmp:
        with open(tmp, "wb") as fh:  # as matplotlib's savefig or torch.save would write it
            fh.write(b"\x89PNG")
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600  # mkstemp's mode until the end
    atomic_write_text(str(tmp_path / "a.json"), "{}")
    assert modes(tmp_path) == {"fig.png": 0o666 & ~mask, "a.json": 0o666 & ~mask}


def test_run_report_and_dataset_files_follow_umask(tmp_path, monkeypatch, capsys, mask):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    assert main(["data", "generate", "--name", "syn", "--out", str(data), "--users", "40",
                 "--items", "60", "--interactions", "500", "--k", "4", "--image-dim", "8",
                 "--text-dim", "6"]) == 0
    res = tmp_path / "res"
    code = main(["run", "-m", "BPR", "-d", "syn", "--data-path", str(data), "--results-dir",
                 str(res), "--epochs", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert main(["report", str(res / "BPR-syn.json"), "--out", str(tmp_path / "rep")]) == 0
    got = modes(tmp_path)
    assert got == expected(str(tmp_path), mask)
    for name in ("res/BPR-syn.json", "res/store/data.mdb", "res/store/lock.mdb",
                 "rep/report.md", "data/syn/syn.inter", "data/syn/image_feat.npy"):
        assert got[name] == 0o666 & ~mask, name
    assert [n for n in got if n.startswith("res/models/") and n.endswith(".pt")]
