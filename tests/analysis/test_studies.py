"""Study presets: valid grids, default resolution, model-grid pinning, unknown names, runners."""
import itertools
import json
import os

import pytest

from mmrec_plugin.analysis import studies
from mmrec_plugin.analysis.studies import (
    STUDIES,
    pin_model_grid,
    run_gamma_sweep,
    run_study,
    study_config,
    study_variants,
)
from mmrec_plugin.errors import UserError

SPEC_KEYS = {"chns_weight", "syn_weight", "syn_margin", "syn_detach", "bpr_weight", "neg_strategy",
             "nce_weight", "nce_temperature", "orth_weight", "pool_size", "fusion", "reg_weight", "seed"}

MODEL_DEFAULTS = {
    "chns_weight": [1.0], "syn_weight": [0.5, 1.0], "syn_margin": [0.1], "reg_weight": [1e-4, 1e-3],
    "pool_size": [32], "bpr_weight": 0.0, "neg_strategy": "cross",
    "hyper_parameters": ["chns_weight", "syn_weight", "syn_margin", "reg_weight", "pool_size"],
}


def _grid_size(cfg):
    return len(list(itertools.product(*(cfg[k] for k in cfg.get("hyper_parameters", [])))))


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_preset_is_a_valid_grid(name):
    for variant, cfg in study_variants(name, defaults=MODEL_DEFAULTS).items():
        for key in cfg.get("hyper_parameters", []):
            assert isinstance(cfg[key], list) and cfg[key], (name, variant, key)
        for key, value in cfg.items():
            if key != "hyper_parameters":
                assert key in SPEC_KEYS, (name, key)
                assert studies.DEFAULT not in (value if isinstance(value, list) else [value])
        # every model-grid key is pinned to one value unless the study sweeps it
        for key in MODEL_DEFAULTS["hyper_parameters"]:
            if key not in cfg.get("hyper_parameters", []):
                value = cfg.get(key, MODEL_DEFAULTS[key])
                assert isinstance(value, list) and len(value) == 1, (name, key)


def test_preset_contents():
    fig1 = study_config("fig1", defaults=MODEL_DEFAULTS)
    assert fig1["chns_weight"] == [0.0] and fig1["syn_weight"] == [0.0] and fig1["bpr_weight"] == [1.0]
    assert set(fig1["hyper_parameters"]) == {"orth_weight", "nce_weight"}
    assert _grid_size(fig1) == len(fig1["orth_weight"]) * len(fig1["nce_weight"])
    t2 = study_variants("table2", defaults=MODEL_DEFAULTS)
    assert list(t2) == ["chns_syn", "no_syn", "no_chns", "fused_bpr"]
    got = {v: (c["chns_weight"], c["syn_weight"], c.get("bpr_weight", [MODEL_DEFAULTS["bpr_weight"]]))
           for v, c in t2.items()}
    assert got == {"chns_syn": ([1.0], [0.5], [0.0]), "no_syn": ([1.0], [0.0], [0.0]),
                   "no_chns": ([0.0], [0.5], [0.0]), "fused_bpr": ([0.0], [0.0], [1.0])}
    for c in t2.values():  # every ablation row has a ranking loss (BRMRS refuses none)
        assert max(c["chns_weight"][0], c["syn_weight"][0], c.get("bpr_weight", [0.0])[0]) > 0
        assert c["reg_weight"] == [1e-4]
    assert study_config("neg_strategies")["neg_strategy"] == ["cross", "same", "fused", "uniform"]
    sens = study_config("sensitivity")
    assert set(sens["hyper_parameters"]) == {"chns_weight", "syn_weight", "syn_margin"}
    syn = study_variants("synthetic", defaults=MODEL_DEFAULTS)
    assert set(syn) == {"brmrs", "fused_bpr"}
    assert syn["fused_bpr"]["chns_weight"] == [0.0] and syn["fused_bpr"]["bpr_weight"] == [1.0]
    assert syn["brmrs"]["syn_weight"] == [0.5] and syn["brmrs"]["reg_weight"] == [1e-4]


def test_pin_model_grid_keeps_study_keys_and_does_not_mutate():
    cfg = {"hyper_parameters": ["syn_weight"], "syn_weight": [0.0, 2.0]}
    pinned = pin_model_grid(cfg, MODEL_DEFAULTS)
    assert pinned["syn_weight"] == [0.0, 2.0] and pinned["reg_weight"] == [1e-4]
    assert "reg_weight" not in cfg


def test_unknown_study_lists_the_studies():
    with pytest.raises(UserError) as err:
        study_config("tabel2")
    msg = str(err.value)
    assert "table2" in msg and all(n in msg for n in STUDIES)
    with pytest.raises(UserError, match="variant"):
        study_config("synthetic", "nope")


def test_run_study_calls_runner_per_variant(tmp_path):
    calls = []
    paths = run_study("synthetic", results_dir=str(tmp_path), data_path="dd",
                      extra={"epochs": 2}, runner=lambda m, d, c: calls.append((m, d, c)))
    assert [c[1] for c in calls] == ["demo", "demo"]
    assert calls[1][2]["results_dir"] == os.path.join(str(tmp_path), "synthetic", "fused_bpr")
    assert calls[1][2]["epochs"] == 2 and calls[1][2]["data_path"] == "dd"
    assert paths["brmrs"] == os.path.join(str(tmp_path), "synthetic", "brmrs", "BRMRS-demo.json")


def test_run_gamma_sweep_with_stand_ins(tmp_path):
    generated = []

    def generate(data_dir, name, gamma_s, **kw):
        os.makedirs(os.path.join(data_dir, name))
        open(os.path.join(data_dir, name, f"{name}.inter"), "w").close()
        generated.append((name, gamma_s))

    def runner(model, dataset, cfg):
        ptr = {"synergy": {"recall": 0.1 if "bpr_weight" in cfg else 0.2, "hits": 1, "n_pairs": 5}}
        best = {"id": "x", "valid": {"recall@20": 0.3}, "test": {"recall@20": 0.25},
                "analysis": {"k": 20, "per_type_recall": ptr}}
        os.makedirs(cfg["results_dir"], exist_ok=True)
        with open(os.path.join(cfg["results_dir"], f"{model}-{dataset}.json"), "w") as fh:
            json.dump({"combinations": [best], "best": best}, fh)

    out = str(tmp_path / "sweep")
    summary = run_gamma_sweep([0.0, 2.0], out, runner=runner, generate=generate)
    assert generated == [("demo_gs0", 0.0), ("demo_gs2", 2.0)]
    assert [(r["gamma_s"], r["variant"]) for r in summary["rows"]] == [
        (0.0, "brmrs"), (0.0, "fused_bpr"), (2.0, "brmrs"), (2.0, "fused_bpr")]
    assert summary["rows"][1]["per_type_recall"]["synergy"]["recall"] == 0.1
    with open(os.path.join(out, "gamma_sweep.json")) as fh:
        assert json.load(fh) == summary
    run_gamma_sweep([0.0], out, runner=runner, generate=generate)  # resumes: data not regenerated
    assert len(generated) == 2


def test_presets_expand_in_the_host_config():
    """Integration with the host's Config/expand_grid."""
    import mmrec_plugin.host.config as config_mod
    from mmrec_plugin import registry

    registry.get_model("BRMRS")
    defaults = studies.model_defaults()
    for name in ("fig1", "table2", "neg_strategies"):
        for variant, cfg in study_variants(name).items():
            conf = config_mod.Config("BRMRS", "demo", config_dict=cfg)
            grid = config_mod.expand_grid(conf)
            size = _grid_size(study_config(name, variant, defaults=defaults))
            assert len(grid) == size * len(conf["seed"]), (name, variant)


def test_gamma_sweep_runs_start_from_the_demo_budget(tmp_path):
    """Generated sweep datasets (demo_gs*) are not named demo, so the sweep passes the demo
    yaml's budget itself; --set values override it."""
    import yaml

    from mmrec_plugin.host.config import CONFIG_DIR

    with open(os.path.join(CONFIG_DIR, "dataset", "demo.yaml")) as fh:
        demo = yaml.safe_load(fh)
    assert studies.demo_budget() == {k: demo[k] for k in ("epochs", "stopping_step", "train_batch_size")}
    seen = []

    def generate(data_dir, name, gamma_s, **kw):
        os.makedirs(os.path.join(data_dir, name))
        open(os.path.join(data_dir, name, f"{name}.inter"), "w").close()

    def runner(model, dataset, cfg):
        seen.append(dict(cfg))
        best = {"id": "x", "valid": {}, "test": {}, "analysis": {"k": 20, "per_type_recall": {}}}
        os.makedirs(cfg["results_dir"], exist_ok=True)
        with open(os.path.join(cfg["results_dir"], f"{model}-{dataset}.json"), "w") as fh:
            json.dump({"combinations": [best], "best": best}, fh)

    run_gamma_sweep([1.0], str(tmp_path / "a"), runner=runner, generate=generate)
    assert [(c["epochs"], c["stopping_step"], c["train_batch_size"]) for c in seen] == \
        [(demo["epochs"], demo["stopping_step"], demo["train_batch_size"])] * 2
    assert seen[1]["bpr_weight"] == [1.0]
    seen.clear()
    run_gamma_sweep([1.0], str(tmp_path / "b"), runner=runner, generate=generate,
                    extra={"epochs": 3})
    assert [c["epochs"] for c in seen] == [3, 3]
    assert seen[0]["stopping_step"] == demo["stopping_step"]
