"""Grid search on Ray workers (``--ray-address``, the Ray executor): the same JSON as the
sequential run, a dead worker retried (bounded), ASHA pruning, Ctrl-C and kill -9 of the
driver; and without the flags no Ray import at all. Ray tests are skipped when the ``distributed`` extra is absent;
they start at most 2 local workers and shut Ray down."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from mmrec_plugin import registry
from mmrec_plugin.cli import main
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.config import Config
from mmrec_plugin.runs import grid, quick_start
from mmrec_plugin.store import Store

try:
    import ray
except ImportError:  # the distributed extra is not installed
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray (the distributed extra) is not installed")


def ray_grid(model, dataset, config_dict, results_dir, analyze=None, **ray_options):
    """The grid of ``model`` on ``dataset`` through the Ray executor (Ray Tune with a scheduler)."""
    from mmrec_plugin.runs.ray import Ray
    from mmrec_plugin.runs.tune import RayTune

    config = Config(model, dataset, config_dict=dict(config_dict, results_dir=results_dir))
    cls = RayTune if "scheduler" in ray_options else Ray
    return grid(config, executor=cls(config, threads=1, **ray_options), analyze=analyze)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _keep_logging():
    """main() points the root logger at the (captured) stderr of its test; restore it."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ----------------------------------------------------------------- without Ray
def test_default_path_does_not_import_ray(tmp_path, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    code = textwrap.dedent(f"""
        import sys
        import mmrec_plugin.cli
        assert "ray" not in sys.modules
        rc = mmrec_plugin.cli.main(["run", "-m", "BPR", "-d", "tiny", "--data-path",
                                    {str(tmp_path / "data")!r}, "--results-dir",
                                    {str(tmp_path / "res")!r}, "--epochs", "1", "-q"])
        assert rc == 0, rc
        print("ray imported:", "ray" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ray imported: False"


def test_workers_without_ray_name_the_extra(tmp_path, monkeypatch, capsys, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["run", "-m", "BPR", "-d", "tiny", "--data-path", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "res"), "--epochs", "1", "--ray-address", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")][-1]
    assert "[distributed]" in line and "--ray-address" in line
    assert not os.path.exists(tmp_path / "res")  # nothing started


@pytest.mark.parametrize("argv, needle", [
    (["--cpus-per-trial", "2"], "--cpus-per-trial sets Ray resources"),
    (["--workers", "0"], "--workers: expected a positive integer"),
    (["--scheduler", "hyperband"], "invalid choice: 'hyperband'"),
])
def test_bad_distributed_flags(tmp_path, capsys, argv, needle, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    code = main(["run", "-m", "BPR", "-d", "tiny", "--data-path", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "res"), "--epochs", "1"] + argv)
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


# ------------------------------------------------------------------ one Ray instance
@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    if ray is None:
        pytest.skip("Ray (the distributed extra) is not installed")
    marks = tmp_path_factory.mktemp("marks")
    # Ray's workers inherit this environment: the toy's files go to `marks`; the SlowToy
    # combination with reg_weight 0.2 kills its worker once, the one with 0.3 every time
    # (Ray's daemons copy the environment at ray.init: this process keeps its own)
    env = {"TOY_DIR": str(marks), "KILL_ONCE_AT": "0.2", "KILL_AT": "0.3"}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield str(marks)
    finally:
        ray.shutdown()


def _comparable(obj):
    """A summary without what legitimately differs between two runs: timings and paths."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items()
                if k not in ("seconds", "eval_seconds", "path", "model_path", "results_dir",
                             "provenance")}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


@needs_ray
def test_two_workers_give_the_sequential_json(ray_local, tmp_path):
    """Also: the analysis hook (what the command line passes) runs in the workers."""
    from mmrec_plugin.analysis.rerun import record_analysis
    from mmrec_plugin.data.synthetic import ensure_demo

    ensure_demo(str(tmp_path / "data" / "demo"))
    cfg = {"data_path": str(tmp_path / "data"), "epochs": 2}
    seq = quick_start("BRMRS", "demo", config_dict=cfg, results_dir=str(tmp_path / "seq"),
                      workers=1, analyze=record_analysis)
    par = ray_grid("BRMRS", "demo", cfg, str(tmp_path / "par"), workers=2, analyze=record_analysis)
    assert seq["complete"] and len(seq["combinations"]) == 4
    assert all(c["status"] == "ok" and "analysis" in c for c in seq["combinations"])
    assert _comparable(par) == _comparable(seq)
    for a, b in zip(seq["combinations"], par["combinations"]):  # model files: same weights
        wa = torch.load(a["model_path"], weights_only=True)["state_dict"]
        wb = torch.load(b["model_path"], weights_only=True)["state_dict"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@needs_ray
def test_dead_worker_is_retried_a_bounded_number_of_times(ray_local, tmp_path, monkeypatch,
                                                          caplog, toy_grid):
    """SlowToy is loaded from a file path (module toy_grid, not importable by the workers):
    it travels to them by value."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model("SlowToy", toy_grid.SlowToy)
    toy_grid.write_tiny(tmp_path / "data")
    caplog.set_level("INFO")
    summary = ray_grid(
        "SlowToy", "tiny", {"data_path": str(tmp_path / "data"), "epochs": 1,
                            "is_multimodal_model": False, "reg_weight": [0.1, 0.2, 0.3]},
        str(tmp_path / "res"), workers=2, max_retries=1)
    calls = sorted(reg for _, reg in toy_grid.calls(ray_local))
    assert calls == [0.1, 0.2, 0.2, 0.3, 0.3]  # 0.2: died once, retried; 0.3: 1 + 1 retry
    status = {c["params"]["reg_weight"]: c["status"] for c in summary["combinations"]}
    assert status == {0.1: "ok", 0.2: "ok"}  # 0.3 is left unfinished, not recorded
    assert summary["complete"] is False
    assert "its worker died 2 time(s)" in caplog.text
    with Store(str(tmp_path / "res" / "store")) as store:
        assert list(store.keys("claim/")) == []  # released


class Steady(GeneralRecommender):
    """Fixed scores: the table in $TOY_DIR/table.npy ranks every user's valid item first; with
    reg_weight 1.0 the scores are negated (valid item last). One dummy weight; the
    validation score is the same every epoch."""

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        table = np.load(os.path.join(os.environ["TOY_DIR"], "table.npy"))
        sign = -1.0 if config["reg_weight"] == 1.0 else 1.0
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("table", torch.as_tensor(sign * table, dtype=torch.float32))

    def calculate_loss(self, interaction):
        return ((self.w - 1.0) ** 2).sum()

    def full_sort_predict(self, interaction):
        return self.table[interaction[0]].clone() + 0.0 * self.w


@needs_ray
def test_asha_prunes_weak_combinations_and_never_selects_them(ray_local, tmp_path, monkeypatch,
                                                            toy_grid):
    """ASHA with a rung at epoch 1 (grace 1, factor 2) and one worker, so the combinations
    reach the rung in grid order: the second, worse than the median of those already
    there, is stopped."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model("Steady", Steady)
    valid = toy_grid.write_tiny(tmp_path / "data")
    table = np.random.default_rng(0).random((12, 60))
    table[np.arange(12), valid] = 10.0
    np.save(os.path.join(ray_local, "table.npy"), table)
    cfg = {"data_path": str(tmp_path / "data"), "epochs": 4, "stopping_step": 10,
           "is_multimodal_model": False, "reg_weight": [0.0, 1.0]}

    def run(**dist):
        return ray_grid("Steady", "tiny", cfg, str(tmp_path / "res"), workers=1, **dist)

    summary = run(scheduler="asha", grace_period=1, reduction_factor=2)
    by_reg = {c["params"]["reg_weight"]: c for c in summary["combinations"]}
    good, bad = by_reg[0.0], by_reg[1.0]
    assert good["valid"]["recall@20"] == 1.0 and bad["valid"]["recall@20"] == 0.0
    assert good["status"] == "ok" and len(good["history"]) == 4
    assert bad["status"] == "pruned" and len(bad["history"]) == 1 and bad["model_path"] is None
    assert summary["best"]["params"]["reg_weight"] == 0.0 and summary["complete"]
    # a run without a scheduler trains the pruned combination in full and reuses the other
    again = run()
    by_reg = {c["params"]["reg_weight"]: c for c in again["combinations"]}
    assert by_reg[1.0]["status"] == "ok" and len(by_reg[1.0]["history"]) == 4
    assert by_reg[0.0]["seconds"] == good["seconds"]  # not retrained


# ----------------------------------------------------- the driver: Ctrl-C and kill -9
def _ray_pids():
    """Processes of Ray (its workers and daemons) on this machine."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (cmd.startswith(b"ray::") or b"site-packages/ray/" in cmd):
            pids.add(int(entry))
    return pids


def _wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _stored(tmp_path, prefix):
    path = tmp_path / "res" / "store"
    if not path.exists():
        return {}
    with Store(str(path)) as store:
        return {k: store.get_json(k) for k in store.keys(prefix)}


@needs_ray
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_driver_ctrl_c_is_clean_and_kill_9_resumes(tmp_path, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    before = _ray_pids()

    def start(**env):
        return subprocess.Popen(
            [sys.executable, toy_grid.PATH, str(tmp_path / "data"), "0.1, 0.2, 0.3, 0.4",
             "--ray-address", "local", "--workers", "2"], cwd=tmp_path, env=dict(os.environ, TOY_DIR=str(tmp_path), **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def n_calls():
        return len(toy_grid.calls(tmp_path))

    leftovers = set()
    try:
        # Ctrl-C while workers train: exit 130, no claim left, Ray shut down
        first = start(SLEEP="30")
        assert _wait_for(lambda: n_calls() >= 1 or first.poll() is not None)
        assert first.poll() is None, first.communicate()[1]
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert _stored(tmp_path, "claim/") == {} and _stored(tmp_path, "run/") == {}
        assert _wait_for(lambda: not (_ray_pids() - before), timeout=60), _ray_pids() - before

        # kill -9 of the driver after its first commit
        second = start(SLEEP="1")
        assert _wait_for(lambda: len(_stored(tmp_path, "run/")) >= 1 or second.poll() is not None)
        assert second.poll() is None, second.communicate()[1]
        second.kill()
        second.communicate(timeout=60)
        time.sleep(3)  # a task Ray had already handed to a worker may still start (and log) now
        committed = sorted(r["params"]["reg_weight"] for r in _stored(tmp_path, "run/").values())
        mark = n_calls()

        # the rerun trains exactly what was not committed
        third = start()
        out, err = third.communicate(timeout=300)
        assert third.returncode == 0, err
        retrained = sorted(reg for _, reg in toy_grid.calls(tmp_path)[mark:])
        assert sorted(committed + retrained) == [0.1, 0.2, 0.3, 0.4], (committed, retrained, toy_grid.calls(tmp_path))
        with open(tmp_path / out.strip().splitlines()[-1]) as fh:
            summary = json.load(fh)
        assert summary["complete"] and len(summary["combinations"]) == 4
        assert _stored(tmp_path, "claim/") == {}
    finally:
        # Ray's agent processes outlive a driver killed with -9 (Ray's behaviour): end
        # the ones this test started, by pid
        time.sleep(1)
        leftovers = _ray_pids() - before
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@needs_ray
def test_joins_an_existing_cluster(tmp_path, toy_grid):
    """--ray-address: a cluster started by `ray start --head` (ended by its pid)."""
    import socket

    toy_grid.write_tiny(tmp_path / "data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--block"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = dict(os.environ, TOY_DIR=str(tmp_path), RAY_AUTH_MODE="token")
        out = subprocess.run(
            [sys.executable, toy_grid.PATH, str(tmp_path / "data"), "0.1, 0.2",
             "--ray-address", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "Ray joined" in out.stderr and "2 worker(s)" in out.stderr  # the cluster's CPUs
        with open(tmp_path / out.stdout.strip().splitlines()[-1]) as fh:
            summary = json.load(fh)
        assert summary["complete"] and [c["status"] for c in summary["combinations"]] == ["ok"] * 2
    finally:
        head.terminate()
        head.wait(timeout=60)
