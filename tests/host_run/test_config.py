"""Layered config: order, missing keys, hyper_parameters concatenation, grid expansion,
validation of host keys, and the command-line conveniences."""
import os

import pytest
import torch

from mmrec_plugin import registry
from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.config import Config, ConfigKeyError, expand_grid, parse_value
from mmrec_plugin.host.schema import HOST_KEYS


class _Toy:
    pass


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A model 'LayerToy' with its own yaml, and a data folder with a dataset yaml."""
    import mmrec_plugin.host  # noqa: F401  (registers BPR/LightGCN)  # register BPR/LightGCN before the registry is copied
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    model_yaml = _write(tmp_path / "LayerToy.yaml",
                        "stopping_step: 4\nepochs: 8\nreg_weight: [0.1, 0.2]\n"
                        "hyper_parameters: [reg_weight]\n")
    registry.register_model("LayerToy", _Toy, config_path=model_yaml)
    data = tmp_path / "data"
    _write(data / "dsx" / "dsx.yaml",
           "embedding_size: 32\nstopping_step: 3\nepochs: 7\neval_step: 2\n"
           "USER_ID_FIELD: uid\nhyper_parameters: [embedding_size]\nembedding_size: [32, 16]\n")
    cfg_file = _write(tmp_path / "extra.yaml", "epochs: 9\neval_step: 4\nlearning_rate: 1e-2\n")
    return {"data": str(data), "file": cfg_file, "tmp": tmp_path}


def test_layer_order_overall_dataset_model_file_dict(toy):
    c = Config("layertoy", "dsx", config_dict={"data_path": toy["data"], "eval_step": 5},
               config_file=toy["file"])
    assert c["model"] == "LayerToy"  # the registered spelling
    assert c["dataset"] == "dsx"
    assert c["train_batch_size"] == HOST_KEYS["train_batch_size"].default == 2048  # host default only
    assert c["embedding_size"] == [32, 16]   # dataset over overall
    assert c["USER_ID_FIELD"] == "uid"       # dataset yaml over MMRec's default keys
    assert c["ITEM_ID_FIELD"] == "itemID"    # MMRec default dataset key kept
    assert c["inter_file_name"] == "dsx.inter"
    assert c["stopping_step"] == 4           # model over dataset
    assert c["epochs"] == 9                  # file over model
    assert c["learning_rate"] == 0.01        # '1e-2' read as a float
    assert c["eval_step"] == 5               # dict over file
    assert c["data_path"] == toy["data"] + "/"
    assert c["results_dir"] == "results/"
    assert isinstance(c["device"], torch.device)
    assert c.sources["epochs"] == toy["file"]


def test_hyper_parameters_concatenated_seed_first(toy):
    c = Config("LayerToy", "dsx", config_dict={"data_path": toy["data"]})
    # overall [seed] + dataset [embedding_size] + model [reg_weight]
    assert c["hyper_parameters"] == ["seed", "embedding_size", "reg_weight"]
    grid = expand_grid(c)
    assert grid == [
        {"seed": 999, "embedding_size": 32, "reg_weight": 0.1},
        {"seed": 999, "embedding_size": 32, "reg_weight": 0.2},
        {"seed": 999, "embedding_size": 16, "reg_weight": 0.1},
        {"seed": 999, "embedding_size": 16, "reg_weight": 0.2},
    ]
    assert [list(g) for g in grid] == [["seed", "embedding_size", "reg_weight"]] * 4


def test_expand_grid_seed_outermost_and_dedup():
    cfg = {"hyper_parameters": ["a", "seed", "a"], "a": [1, 2], "seed": [7, 8]}
    assert expand_grid(cfg) == [
        {"seed": 7, "a": 1}, {"seed": 7, "a": 2}, {"seed": 8, "a": 1}, {"seed": 8, "a": 2},
    ]


def test_expand_grid_rejects_scalar_and_empty(toy):
    bad_file = _write(toy["tmp"] / "bad.yaml", "reg_weight: 0.5\n")
    c = Config("LayerToy", "dsx", config_dict={"data_path": toy["data"]}, config_file=bad_file)
    with pytest.raises(ConfigError, match="'reg_weight'.*bad.yaml.*must be a list"):
        expand_grid(c)
    with pytest.raises(ConfigError, match="'b' is an empty list"):
        expand_grid({"hyper_parameters": ["seed", "b"], "seed": [1], "b": []})
    with pytest.raises(ConfigError, match="no such key"):
        expand_grid({"hyper_parameters": ["seed", "zz"], "seed": [1]})


def test_missing_key_names_closest(toy):
    c = Config("LayerToy", "dsx", config_dict={"data_path": toy["data"]})
    with pytest.raises(KeyError) as info:
        c["learing_rate"]
    assert isinstance(info.value, ConfigError)
    assert "'learing_rate'" in str(info.value) and "learning_rate" in str(info.value).split("mean")[1]
    assert c.get("learing_rate", 3) == 3
    assert "learning_rate" in c and "learing_rate" not in c
    c["new_key"] = 5
    assert c["new_key"] == 5 and "new_key" in c


def test_command_line_conveniences(toy):
    c = Config("LayerToy", "dsx", config_dict={
        "data_path": toy["data"], "seed": 5, "reg_weight": 0.3,
        "learning_rate": [0.1, 0.01], "topk": [10, 20],
    })
    assert c["seed"] == [5] and c["reg_weight"] == [0.3]   # scalar for a grid key: wrapped
    assert c["hyper_parameters"] == ["seed", "embedding_size", "reg_weight", "learning_rate"]
    assert c["topk"] == [10, 20]   # a list default stays a plain value
    assert "topk" not in c["hyper_parameters"]
    assert len(expand_grid(c)) == 1 * 2 * 1 * 2


def test_a_list_for_a_mapping_key_is_a_plain_value(toy):
    """A key whose default is a mapping: a list on the command line is a value (the model
    converts or rejects it), not a grid."""
    yml = _write(toy["tmp"] / "MapToy.yaml", "weights: {a: 0.5, b: 0.5}\nreg_weight: [0.1]\n"
                                              "hyper_parameters: [reg_weight]\n")
    registry.register_model("MapToy", _Toy, config_path=yml)
    c = Config("MapToy", "dsx", config_dict={"data_path": toy["data"], "weights": [0.2, 0.8]})
    assert c["weights"] == [0.2, 0.8] and "weights" not in c["hyper_parameters"]


def test_brmrs_old_list_form_on_the_command_line_is_one_clear_error(tmp_path):
    """BRMRS's modality_weights default is the string auto, so the 0.1 list form [beta_v,
    beta_t] on the command line becomes a grid of single numbers; the Config rejects each
    with the mapping to write instead (not silently read as some other weights), before
    anything trains."""
    with pytest.raises(ConfigError, match=r"'modality_weights'.*single number 0\.2.*"
                                          r"\{text: 0\.8, visual: 0\.2\}.*the command line"):
        Config("BRMRS", "demo", config_dict={"data_path": str(tmp_path), "modality_weights": [0.2, 0.8]})


def test_dataset_without_yaml_gets_mmrec_default_keys(tmp_path, toy):
    c = Config("LayerToy", "plain", config_dict={"data_path": str(tmp_path)})
    assert c["USER_ID_FIELD"] == "userID" and c["ITEM_ID_FIELD"] == "itemID"
    assert c["inter_file_name"] == "plain.inter"
    assert c["vision_feature_file"] == "image_feat.npy"
    assert c["text_feature_file"] == "text_feat.npy"
    assert c["field_separator"] == "\t"
    assert c.dataset_yaml is None


def test_packaged_dataset_yamls():
    for name in ("baby", "sports", "clothing", "demo"):
        c = Config("BPR", name)
        assert c["inter_file_name"] == f"{name}.inter"
        assert c["USER_ID_FIELD"] == "userID" and c["field_separator"] == "\t"
        assert c.dataset_yaml.endswith(os.path.join("dataset", f"{name}.yaml"))
    assert Config("BPR", "demo")["epochs"] < Config("BPR", "baby")["epochs"]


@pytest.mark.parametrize("key, value, expect", [
    ("valid_metric", "Recall@15", "K in"),
    ("valid_metric", "Recal@20", "did you mean 'Recall'"),
    ("valid_metric", "recall20", "<Metric>@<K>"),
    ("metrics", ["Recall", "HR"], "unknown metric 'HR'.*accepted: Recall, NDCG, Precision, MAP"),
    ("learner", "adamm", "did you mean 'adam'"),
    ("epochs", 0, "an integer >= 1, got 0"),
    ("train_batch_size", 1.5, "an integer >= 1, got 1.5"),
    ("use_gpu", "yes", "True or False"),
    ("learning_rate", -1.0, "a finite number > 0.0"),
    ("learning_rate", float("nan"), "NaN is not a setting"),
    ("learning_rate_scheduler", [1.0], r"\[a, b\]"),
    ("topk", [0, 5], "positive integer or a non-empty list"),
    ("field_separator", "ab", "single character"),
    ("clip_grad_norm", "x", "null, a positive number"),
])
def test_bad_values_name_key_and_allowed(toy, key, value, expect):
    with pytest.raises(ConfigError, match=expect) as info:
        Config("LayerToy", "dsx", config_dict={"data_path": toy["data"], key: value})
    assert f"'{key}'" in str(info.value)


def test_grid_values_validated_each(toy):
    with pytest.raises(ConfigError, match="learning_rate"):
        Config("LayerToy", "dsx", config_dict={"data_path": toy["data"],
                                               "learning_rate": [0.1, -0.1]})


def test_invalid_yaml_names_file_and_line(toy):
    bad = _write(toy["tmp"] / "broken.yaml", "epochs: 3\nfoo: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml, line \d+"):
        Config("LayerToy", "dsx", config_file=bad)


def test_parse_value():
    assert parse_value("1e-4") == 1e-4
    assert parse_value("[1e-4, 1e-3]") == [1e-4, 1e-3]
    assert parse_value("true") is True and parse_value("12") == 12
    assert parse_value("adam") == "adam"
    assert parse_value("{a") == "{a"


def test_config_file_keys_must_be_known_when_the_model_has_a_yaml(toy):
    """A --config file may set the keys of the lower layers (here the model yaml's
    reg_weight and the dataset yaml's USER_ID_FIELD), not new ones; a model without a
    yaml has nothing to check against, so there the file may add its keys."""
    ok = _write(toy["tmp"] / "ok.yaml", "reg_weight: [0.3]\nUSER_ID_FIELD: u\nhyper_parameters: [reg_weight]\n")
    c = Config("LayerToy", "dsx", config_dict={"data_path": toy["data"]}, config_file=ok)
    assert c["reg_weight"] == [0.3] and c["USER_ID_FIELD"] == "u"
    typo = _write(toy["tmp"] / "typo.yaml", "reg_wieght: [0.3]\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown config key 'reg_wieght' \(did you mean 'reg_weight'"):
        Config("LayerToy", "dsx", config_dict={"data_path": toy["data"]}, config_file=typo)
    registry.register_model("NoYamlToy", _Toy)
    c = Config("NoYamlToy", "dsx", config_dict={"data_path": toy["data"]}, config_file=typo)
    assert c["reg_wieght"] == [0.3]
