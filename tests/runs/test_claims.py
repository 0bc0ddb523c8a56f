"""Shared results folders: claims with leases (a live owner's claim is respected, an expired
or dead owner's claim is taken over), concurrent runs of one grid training each combination
once, the summary written from the store, two grids keeping separate summaries."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from mmrec_plugin.runs import claims as claims_mod
from mmrec_plugin.runs.claims import BUSY, CLAIMED, DONE, Claims, owner_identity
from mmrec_plugin.store import Store


# ------------------------------------------------------------------------- claims
@pytest.fixture
def store(tmp_path):
    with Store(str(tmp_path / "store")) as s:
        yield s


def test_claim_is_exclusive_and_commit_drops_it(store):
    a, b = Claims(store), Claims(store)
    try:
        assert a.take("k1") == CLAIMED
        assert b.take("k1") == BUSY  # a lives (this very process) and holds it
        assert b.holder("k1")["token"] == a.token
        assert a.take("k1") == CLAIMED  # its own claim
        assert b.commit("k1", {"status": "b's"}) is False  # not b's claim: nothing changes
        assert store.get_json("run/k1") is None and store.get_json("claim/k1")["token"] == a.token
        assert a.commit("k1", {"status": "ok"}) is True
        assert store.get_json("claim/k1") is None
        assert store.get_json("run/k1") == {"status": "ok"}
        assert b.take("k1") == DONE
        # a second commit of the same key keeps the first record
        assert b.commit("k1", {"status": "other"}) is False
        assert store.get_json("run/k1") == {"status": "ok"}
    finally:
        a.close()
        b.close()


def _foreign(expires, **over):
    claim = {"host": "another-machine", "boot": "x", "pid": 1, "pid_start": "1",
             "token": "t-foreign", "expires": expires}
    claim.update(over)
    return claim


def test_lease_of_another_machine_holds_until_it_expires(store, caplog):
    store.put_json("claim/live", _foreign(time.time() + 600))
    store.put_json("claim/expired", _foreign(time.time() - 1))
    c = Claims(store)
    try:
        assert c.take("live") == BUSY
        caplog.set_level("WARNING")
        assert c.take("expired") == CLAIMED
        assert "taking over" in caplog.text
        assert store.get_json("claim/expired")["token"] == c.token
    finally:
        c.close()
    assert store.get_json("claim/expired") is None  # released on close
    assert store.get_json("claim/live")["token"] == "t-foreign"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_dead_or_reused_pid_on_this_machine_is_stale(store):
    me = owner_identity()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.put_json("claim/dead", dict(me, pid=dead.pid, token="t1", expires=time.time() + 600))
    # a live pid whose start time differs: the pid was reused by another process
    store.put_json("claim/reused", dict(me, pid=os.getpid(), pid_start="0", token="t2",
                                        expires=time.time() + 600))
    # this process, but a token of no live Claims object (left by an earlier grid)
    store.put_json("claim/orphan", dict(me, token="t3", expires=time.time() + 600))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        start = claims_mod._proc_start(live.pid)
        store.put_json("claim/alive", dict(me, pid=live.pid, pid_start=start, token="t4",
                                           expires=time.time() + 600))
        c = Claims(store)
        try:
            assert c.take("dead") == CLAIMED
            assert c.take("reused") == CLAIMED
            assert c.take("orphan") == CLAIMED
            assert c.take("alive") == BUSY
        finally:
            c.close()
    finally:
        live.kill()
        live.wait()


def test_lease_is_renewed_while_held(store):
    c = Claims(store, lease=0.4)
    try:
        assert c.take("k") == CLAIMED
        first = store.get_json("claim/k")["expires"]
        time.sleep(0.5)  # longer than the lease: only renewal keeps it
        again = store.get_json("claim/k")["expires"]
        assert again > first and again > time.time()
    finally:
        c.close()


# ------------------------------------------------------------------ whole grids
#: a guard against a hung child, not a speed assertion: a child takes a few CPU seconds
#: (tens of seconds of wall time at load 13 on 2 cores), so only a hang comes near it
HANG_GUARD_S = 1800


@pytest.fixture
def toy(tmp_path, toy_grid):
    """Start ``toy_grid.py`` (sequential runs of the SlowToy grid) in ``tmp_path``; the
    children run single-threaded (on a busy machine torch's default of one thread per core
    makes every step wait for descheduled threads)."""
    toy_grid.write_tiny(tmp_path / "data")

    def start(grid, **env):
        return subprocess.Popen(
            [sys.executable, toy_grid.PATH, str(tmp_path / "data"), grid], cwd=tmp_path,
            env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return start


def test_two_concurrent_runs_of_one_grid_train_each_combination_once(tmp_path, toy, toy_grid):
    runs = [toy("0.1, 0.2, 0.3, 0.4", N_RUNS="2", SLEEP="0.5") for _ in range(2)]
    outs = [r.communicate(timeout=HANG_GUARD_S) for r in runs]
    for r, (out, err) in zip(runs, outs):
        assert r.returncode == 0, err
    calls = toy_grid.calls(tmp_path)
    assert sorted(reg for _, reg in calls) == [0.1, 0.2, 0.3, 0.4]  # each exactly once
    assert {pid for pid, _ in calls} == {r.pid for r in runs}  # both runs trained some
    path = os.path.join("res", "SlowToy-tiny.json")
    assert [out.strip().splitlines()[-1] for out, _ in outs] == [path, path]
    with open(tmp_path / path) as fh:
        summary = json.load(fh)
    # written from the store: every combination, including those the other run trained
    assert summary["complete"] is True
    assert [c["params"]["reg_weight"] for c in summary["combinations"]] == [0.1, 0.2, 0.3, 0.4]
    assert all(c["status"] == "ok" for c in summary["combinations"])
    with Store(str(tmp_path / "res" / "store")) as s:
        assert len(list(s.keys("run/"))) == 4 and list(s.keys("claim/")) == []


def test_claim_of_a_killed_run_is_taken_over(tmp_path, toy, toy_grid):
    """A grid killed with SIGKILL in its second combination (at a fixed point: building its
    model, after the first was committed) resumes there: the first result and the partial
    summary survive, the rerun takes over the dead run's claim and skips the first."""
    first = toy("0.1, 0.2, 0.3", KILL_AT="0.2")
    _, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == -9, err
    assert [reg for _, reg in toy_grid.calls(tmp_path)] == [0.1, 0.2], err
    with Store(str(tmp_path / "res" / "store")) as s:
        assert len(list(s.keys("claim/"))) == 1  # the killed run's claim is left behind
        assert len(list(s.keys("run/"))) == 1
    with open(tmp_path / "res" / "SlowToy-tiny.json") as fh:
        partial = json.load(fh)
    assert [c["params"]["reg_weight"] for c in partial["combinations"]] == [0.1]
    assert not partial["complete"]
    second = toy("0.1, 0.2, 0.3")
    _, err = second.communicate(timeout=HANG_GUARD_S)
    assert second.returncode == 0, err
    assert "taking over a combination claimed by pid %d" % first.pid in err
    assert "skipping, already done" in err
    # progress: one line per finished combination with its metrics and the grid's ETA
    done = re.findall(r"combination (\d)/3 done in [\d.]+s: best epoch \d+, valid recall@20 "
                      r"[\d.]+, test recall@20 [\d.]+; (\d)/3 finished, ETA \d+:\d\d:\d\d", err)
    assert done == [("2", "2"), ("3", "3")]
    assert [reg for _, reg in toy_grid.calls(tmp_path)] == [0.1, 0.2, 0.2, 0.3]
    with open(tmp_path / "res" / "SlowToy-tiny.json") as fh:
        summary = json.load(fh)
    assert summary["complete"] is True and summary["best"] is not None
    assert [c["params"]["reg_weight"] for c in summary["combinations"]] == [0.1, 0.2, 0.3]
    assert summary["combinations"][0]["id"] == partial["combinations"][0]["id"]


def test_two_grids_in_one_folder_keep_separate_summaries(tmp_path, toy, toy_grid):
    def run(grid):
        proc = toy(grid)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        assert proc.returncode == 0, err
        path = out.strip().splitlines()[-1]
        with open(tmp_path / path) as fh:
            return path, json.load(fh)

    path_a, a = run("0.1, 0.2")
    path_b, b = run("0.3")
    assert os.path.basename(path_a) == "SlowToy-tiny.json"
    assert os.path.basename(path_b) == f"SlowToy-tiny-{b['grid_id'][:8]}.json"
    assert a["grid_id"] != b["grid_id"]
    assert [c["params"]["reg_weight"] for c in b["combinations"]] == [0.3]
    # the first grid again: its own name, untouched by the second, nothing retrained
    path_a2, a2 = run("0.1, 0.2")
    assert path_a2 == path_a and a2["grid_id"] == a["grid_id"]
    assert [c["params"]["reg_weight"] for c in a2["combinations"]] == [0.1, 0.2]
    with open(tmp_path / path_b) as fh:
        assert [c["params"]["reg_weight"] for c in json.load(fh)["combinations"]] == [0.3]
    assert [reg for _, reg in toy_grid.calls(tmp_path)] == [0.1, 0.2, 0.3]
