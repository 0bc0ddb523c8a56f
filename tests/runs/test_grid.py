"""Grid search: resume after an interruption (Ctrl-C; kill -9 is in test_claims.py), a
complete JSON summary, selection by validation (never test), NaN combinations, saved models."""
import json
import os

import numpy as np
import pytest
import torch

from mmrec_plugin import registry
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.runs import quick_start
from mmrec_plugin.store import Store

N_USERS, N_ITEMS = 12, 60


def write_tiny(root, name="tiny"):
    """Per user: 6 train items, 1 valid item, 1 test item (distinct). Returns (valid, test)."""
    rng = np.random.default_rng(3)
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    valid, test = {}, {}
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, 8, replace=False)
        for j, i in enumerate(items):
            label = 0 if j < 6 else (1 if j == 6 else 2)
            lines.append(f"{u}\t{i}\t5\t0\t{label}")
        valid[u], test[u] = int(items[6]), int(items[7])
    with open(os.path.join(folder, f"{name}.inter"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return valid, test


class ScoreToy(GeneralRecommender):
    """Scores from a fixed table chosen by config['mode']; one dummy trainable weight.

    Records every construction in CALLS; raises KeyboardInterrupt when config['mode'] is in
    INTERRUPT; its loss is NaN when mode == 'nan'.
    """

    TABLES = {}
    CALLS = []
    INTERRUPT = set()

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self.mode = config["mode"]
        ScoreToy.CALLS.append((config["seed"], self.mode))
        if self.mode in ScoreToy.INTERRUPT:
            raise KeyboardInterrupt
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("table", torch.as_tensor(ScoreToy.TABLES.get(self.mode,
                             np.zeros((self.n_users, self.n_items))), dtype=torch.float32))

    def calculate_loss(self, interaction):
        loss = (self.w - 1.0) ** 2
        return loss.sum() * (float("nan") if self.mode == "nan" else 1.0)

    def full_sort_predict(self, interaction):
        users = interaction[0]
        return self.table[users].clone() + 0.0 * self.w


@pytest.fixture
def setup(tmp_path, monkeypatch):
    import mmrec_plugin.host  # noqa: F401  (registers BPR/LightGCN)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yaml_path = tmp_path / "ScoreToy.yaml"
    yaml_path.write_text("mode: [good_valid, good_test]\nis_multimodal_model: False\n"
                         "hyper_parameters: [mode]\n")
    registry.register_model("ScoreToy", ScoreToy, config_path=str(yaml_path))
    valid, test = write_tiny(tmp_path / "data")
    rng = np.random.default_rng(0)
    good_valid = rng.random((N_USERS, N_ITEMS))
    good_test = good_valid.copy()
    for u in range(N_USERS):
        good_valid[u, valid[u]], good_valid[u, test[u]] = 10.0, -5.0
        good_test[u, valid[u]], good_test[u, test[u]] = -5.0, 10.0
    ScoreToy.TABLES = {"good_valid": good_valid, "good_test": good_test}
    ScoreToy.CALLS = []
    ScoreToy.INTERRUPT = set()
    monkeypatch.chdir(tmp_path)
    return {"data": str(tmp_path / "data"), "results": str(tmp_path / "res")}


def _run(setup, **extra):
    cfg = {"data_path": setup["data"], "epochs": 2, "seed": [1, 2]}
    cfg.update(extra)
    return quick_start("scoretoy", "tiny", config_dict=cfg, results_dir=setup["results"], workers=1)


def test_winner_by_valid_not_test(setup):
    summary = _run(setup, seed=[1])
    by_mode = {c["params"]["mode"]: c for c in summary["combinations"]}
    assert by_mode["good_valid"]["valid"]["recall@20"] == 1.0
    assert by_mode["good_valid"]["test"]["recall@20"] == 0.0
    assert by_mode["good_test"]["valid"]["recall@20"] == 0.0
    assert by_mode["good_test"]["test"]["recall@20"] == 1.0
    assert summary["best"]["params"] == {"seed": 1, "mode": "good_valid"}
    assert summary["selected_by"] == "valid recall@20"


def test_interrupt_then_resume_runs_only_missing(setup, caplog):
    # grid: seed [1, 2] x mode [good_valid, good_test]; interrupt the second combination
    ScoreToy.INTERRUPT = {"good_test"}
    with pytest.raises(KeyboardInterrupt):
        _run(setup)
    assert ScoreToy.CALLS == [(1, "good_valid"), (1, "good_test")]
    with Store(os.path.join(setup["results"], "store")) as store:
        assert len(list(store.keys("run/"))) == 1  # the first combination was committed

    ScoreToy.INTERRUPT = set()
    ScoreToy.CALLS = []
    caplog.set_level("INFO")
    summary = _run(setup)
    assert ScoreToy.CALLS == [(1, "good_test"), (2, "good_valid"), (2, "good_test")]
    assert "skipping, already done" in caplog.text

    with open(summary["path"]) as fh:
        on_disk = json.load(fh)
    assert on_disk["complete"] is True and on_disk["n_combinations"] == 4
    combos = on_disk["combinations"]
    assert [c["params"] for c in combos] == [
        {"seed": 1, "mode": "good_valid"}, {"seed": 1, "mode": "good_test"},
        {"seed": 2, "mode": "good_valid"}, {"seed": 2, "mode": "good_test"},
    ]
    assert len({c["id"] for c in combos}) == 4
    for c in combos:
        assert c["status"] == "ok" and c["best_epoch"] is not None
        assert set(c["valid"]) >= {"recall@20", "ndcg@20"} and "recall@20" in c["test"]
        assert c["seconds"] >= 0 and c["config"]["mode"] == c["params"]["mode"]
        saved = torch.load(c["model_path"], weights_only=True)
        assert set(saved["state_dict"]) == {"w", "table"}
        assert saved["config"]["seed"] == c["params"]["seed"]
    assert on_disk["best"]["params"] == {"seed": 1, "mode": "good_valid"}

    # a third run trains nothing
    ScoreToy.CALLS = []
    _run(setup)
    assert ScoreToy.CALLS == []


def test_changed_setting_is_not_skipped(setup):
    _run(setup, seed=[1], mode=["good_valid"])
    ScoreToy.CALLS = []
    _run(setup, seed=[1], mode=["good_valid"], learning_rate=0.01)
    assert ScoreToy.CALLS == [(1, "good_valid")]


def test_nan_combination_recorded_grid_goes_on(setup, caplog):
    caplog.set_level("INFO")
    summary = _run(setup, seed=[1], mode=["nan", "good_test"])
    status = {c["params"]["mode"]: c["status"] for c in summary["combinations"]}
    assert status == {"nan": "nan", "good_test": "ok"}
    assert summary["best"]["params"]["mode"] == "good_test"
    assert "loss is nan" in caplog.text.lower()

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    with open(summary["path"]) as fh:
        on_disk = json.loads(fh.read(), parse_constant=no_constants)
    assert [c["status"] for c in on_disk["combinations"]] == ["nan", "ok"]
    assert on_disk["combinations"][0]["valid"] is None and "error" in on_disk["combinations"][0]


# kill -9 and resume: tests/runs/test_claims.py::test_claim_of_a_killed_run_is_taken_over


def _comparable(obj):
    """A summary without what legitimately differs between two runs: timings, paths, provenance."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items()
                if k not in ("seconds", "eval_seconds", "path", "model_path", "results_dir", "provenance")}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def test_process_pool_gives_the_sequential_json_and_weights(tmp_path):
    """The default executor on several cores (two worker processes here) trains each
    combination to exactly the record and weights of a sequential run."""
    from mmrec_plugin.analysis.rerun import record_analysis
    from mmrec_plugin.data.synthetic import ensure_demo

    ensure_demo(str(tmp_path / "data" / "demo"))
    cfg = {"data_path": str(tmp_path / "data"), "epochs": 2}
    seq = quick_start("BRMRS", "demo", config_dict=cfg, results_dir=str(tmp_path / "seq"), workers=1,
                      analyze=record_analysis)
    par = quick_start("BRMRS", "demo", config_dict=cfg, results_dir=str(tmp_path / "par"), workers=2,
                      analyze=record_analysis)
    assert seq["complete"] and len(seq["combinations"]) == 4
    assert _comparable(par) == _comparable(seq)
    for a, b in zip(seq["combinations"], par["combinations"]):
        wa = torch.load(a["model_path"], weights_only=True)["state_dict"]
        wb = torch.load(b["model_path"], weights_only=True)["state_dict"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert os.listdir(tmp_path / "par" / "checkpoints") == []


def test_worker_processes_train_a_model_from_the_working_directorys_src_models(tmp_path, monkeypatch,
                                                                               toy_grid):
    """A model dropped into ./src/models/ (MMRec's layout) is loaded from its file, which a
    spawned worker cannot import by name: the worker loads the same file, and two workers give
    the sequential run's results."""
    from mmrec_plugin import registry
    from mmrec_plugin.runs.executors import ProcessPool, _picklable_by_reference, importable_elsewhere

    (tmp_path / "src" / "models").mkdir(parents=True)
    (tmp_path / "src" / "models" / "cwdtoy.py").write_text(toy_grid.TOY_SOURCE.format(name="CwdToy"))
    monkeypatch.chdir(tmp_path)
    toy_grid.write_tiny(tmp_path / "data")
    cls = registry.get_model("CwdToy")
    assert not importable_elsewhere(cls.__module__) and _picklable_by_reference(cls)
    assert importable_elsewhere("mmrec_plugin.runs.executors")
    cfg = {"data_path": str(tmp_path / "data"), "epochs": 2, "is_multimodal_model": False,
           "reg_weight": [0.0, 0.01], "hyper_parameters": ["reg_weight"]}
    seq = quick_start("CwdToy", "tiny", config_dict=cfg, results_dir=str(tmp_path / "seq"), workers=1)
    par = quick_start("CwdToy", "tiny", config_dict=cfg, results_dir=str(tmp_path / "par"),
                      executor=ProcessPool(2, 1))
    assert seq["complete"] and par["complete"] and len(par["combinations"]) == 2
    assert _comparable(par) == _comparable(seq)
