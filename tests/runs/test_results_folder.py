"""A results folder that cannot be written (read-only, immutable, with or without finished
results inside) or whose store is corrupt: one `error:` line naming the folder and what to
do, exit status 2, before any training, and nothing in the folder changed. As root, permission bits do not stop a write, so the folder is made immutable
(chattr +i, EPERM); otherwise it is made read-only (chmod a-w, EACCES)."""
import contextlib
import hashlib
import json
import os
import subprocess

import pytest

from mmrec_plugin.cli import main
from mmrec_plugin.store import Store, StoreError


def write_tiny(root):
    folder = os.path.join(str(root), "tiny")
    os.makedirs(folder, exist_ok=True)
    rows = [(u, (u * 7 + j) % 55, 0 if j < 5 else j - 4) for u in range(10) for j in range(7)]
    with open(os.path.join(folder, "tiny.inter"), "w") as fh:
        fh.write("userID\titemID\tx_label\n" + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")


@contextlib.contextmanager
def unwritable(*paths):
    """Make ``paths`` refuse writes for the duration (root: immutable; else: read-only)."""
    paths = [str(p) for p in paths]
    if os.geteuid() == 0:
        res = subprocess.run(["chattr", "+i", *paths], capture_output=True, text=True)
        if res.returncode != 0:
            subprocess.run(["chattr", "-i", *paths], capture_output=True)
            pytest.skip(f"running as root and chattr +i is not available here ({res.stderr.strip()})")
        try:
            yield "Operation not permitted"
        finally:
            subprocess.run(["chattr", "-i", *paths], check=True)
    else:
        modes = {p: os.stat(p).st_mode for p in paths}
        for p in paths:
            os.chmod(p, modes[p] & ~0o222)
        try:
            yield "Permission denied"
        finally:
            for p in paths:
                os.chmod(p, modes[p])


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny(tmp_path / "data")
    res = tmp_path / "res"

    def run(capsys, *extra):
        code = main(["run", "-m", "BPR", "-d", "tiny", "--data-path", str(tmp_path / "data"),
                     "--results-dir", str(res), "--epochs", "1", "--reg_weight", "[0.0, 0.01]"]
                    + list(extra))
        out, err = capsys.readouterr()
        return code, out, err

    return res, run


def snapshot(folder):
    """{relative path: sha256} of every file under ``folder`` (LMDB's lock.mdb, which
    any opening rewrites, aside)."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            if n == "lock.mdb":
                continue
            p = os.path.join(root, n)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def one_error(code, err, *needles):
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "combination 1/2" not in err  # refused before training
    return lines[0]


def test_unwritable_empty_results_folder(tiny, capsys):
    res, run = tiny
    res.mkdir()
    with unwritable(res) as reason:
        code, _, err = run(capsys)
        one_error(code, err, f"results folder {res} is not writable", reason, "--results-dir")
    assert os.listdir(res) == []


def test_unwritable_folder_with_finished_results(tiny, capsys):
    res, run = tiny
    code, _, err = run(capsys)
    assert code == 0, err
    before = snapshot(res)
    store = res / "store"
    paths = [res, res / "models", store] + [store / n for n in os.listdir(store)]
    with unwritable(*paths) as reason:
        code, _, err = run(capsys)
        one_error(code, err, str(res), "not writable", reason)
    assert snapshot(res) == before
    # the store alone unwritable (the results folder is fine): the store is named
    with unwritable(*paths[2:]):
        code, _, err = run(capsys)
        one_error(code, err, f"store {store}", "writable")
    assert snapshot(res) == before
    code, _, err = run(capsys)  # writable again: everything is still there
    assert code == 0 and err.count("skipping, already done") == 2, err


def test_corrupt_results_store(tiny, capsys):
    res, run = tiny
    code, out, err = run(capsys)
    assert code == 0, err
    data = res / "store" / "data.mdb"
    size = data.stat().st_size
    data.write_bytes(os.urandom(size))
    before = snapshot(res)
    code, _, err = run(capsys)
    line = one_error(code, err, f"store {res / 'store'} is corrupt", "mv ")
    assert snapshot(res) == before  # nothing changed, the old summary included
    # the advice works: move it aside and rerun; both combinations train again
    os.rename(res / "store", res / "store.corrupt")
    assert "store.corrupt" in line
    code, out, err = run(capsys)
    assert code == 0 and "skipping" not in err, err
    with open(out.strip().splitlines()[-1]) as fh:
        assert json.load(fh)["complete"] is True


def test_store_errors_are_user_errors(tmp_path):
    folder = tmp_path / "s"
    with Store(str(folder)) as store:
        store.put_json("a", {"x": 1})
    (folder / "data.mdb").write_bytes(b"\0" * 8192)
    with pytest.raises(StoreError, match="is corrupt or not an LMDB store"):
        Store(str(folder))
