"""Traceable results: every record and model file says which code, library versions, device
and command made it; the store key includes the code digest, so a rerun after a code change
trains again and says why (a change of comments or docstrings does not count), unless
--reuse-results; --print-config prints the resolved config; every run leaves a log."""
import importlib.util
import os
import sys

import pytest
import torch

from mmrec_plugin import registry
from mmrec_plugin.cli import main
from mmrec_plugin.runs import quick_start
from mmrec_plugin.runs.records import code_digest


@pytest.fixture
def toy(tmp_path, monkeypatch, toy_grid):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    path = tmp_path / "codetoy_mod.py"
    path.write_text(toy_grid.TOY_SOURCE.format(name="CodeToy"))
    spec = importlib.util.spec_from_file_location("codetoy_mod", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "codetoy_mod", module)
    spec.loader.exec_module(module)
    registry.register_model("CodeToy", module.CodeToy)
    toy_grid.write_tiny(tmp_path / "data")
    return path


def _run(tmp_path, **kw):
    return quick_start("CodeToy", "tiny", config_dict={"data_path": str(tmp_path / "data"), "epochs": 1,
                                                       "is_multimodal_model": False},
                       results_dir=str(tmp_path / "res"), workers=1, **kw)


def test_records_and_model_files_carry_provenance(tmp_path, toy):
    summary = _run(tmp_path)
    rec = summary.best
    prov = rec["provenance"]
    assert prov["code"] == code_digest(registry.get_model("CodeToy"))
    assert prov["torch"] == torch.__version__ and prov["package"] == summary["package"]
    for key in ("python", "numpy", "scipy", "torch_geometric", "device", "threads", "command",
                "host", "started", "finished"):
        assert prov[key] not in (None, ""), key
    assert prov["device"] == "cpu" and prov["threads"] == torch.get_num_threads()
    saved = torch.load(rec["model_path"], weights_only=True)
    assert saved["provenance"] == prov and saved["format"] == "mmrec_plugin.model/2"
    logs = os.listdir(tmp_path / "res" / "logs")
    assert len(logs) == 1 and "combination 1/1 done" in (tmp_path / "res" / "logs" / logs[0]).read_text()


def test_a_code_change_trains_again_and_says_why(tmp_path, toy, caplog):
    caplog.set_level("INFO")
    TOY = toy.read_text()
    first = _run(tmp_path).best
    # comments and docstrings are not code: the result stands
    toy.write_text(TOY.replace('"""A toy BPR model."""', '"""A toy BPR model, documented."""\n# note'))
    caplog.clear()
    assert _run(tmp_path).best["seconds"] == first["seconds"]
    assert "skipping, already done" in caplog.text
    # a change of the code: trained again, with the reason
    toy.write_text(TOY.replace("self.emb(x[0]) @", "1.0 * self.emb(x[0]) @"))
    caplog.clear()
    again = _run(tmp_path).best
    assert "code changed since its result of" in caplog.text and "training again" in caplog.text
    assert again["provenance"]["code"] != first["provenance"]["code"]
    assert again["provenance"]["started"] >= first["provenance"]["finished"]
    # --reuse-results keeps an earlier result of the same settings on purpose
    toy.write_text(TOY.replace("self.emb(x[0]) @", "2.0 * self.emb(x[0]) @"))
    caplog.clear()
    reused = _run(tmp_path, reuse_results=True).best
    assert "reusing its result" in caplog.text
    assert reused["seconds"] == again["seconds"] and reused["reused_from_code"] == again["provenance"]["code"]


def test_print_config_prints_the_resolved_config_and_trains_nothing(tmp_path, capsys, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    code = main(["run", "-m", "LightGCN", "-d", "tiny", "--data-path", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "res"), "--epochs", "7", "--print-config"])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "res").exists()
    lines = {ln.split(":", 1)[0].strip(): ln for ln in out.splitlines()}
    assert "7" in lines["epochs"] and "the command line" in lines["epochs"]
    assert "n_layers" in lines and "LightGCN's defaults" in lines["n_layers"]
    assert "reg_weight" in lines and "LightGCN.yaml" in lines["reg_weight"]
    assert "(int >= 1) maximum epochs" in lines["epochs"]


def test_a_module_deleted_under_a_running_process_changes_the_digest_without_failing(tmp_path, toy):
    before = code_digest(registry.get_model("CodeToy"))
    os.remove(toy)  # the model's module file, already imported
    after = code_digest(registry.get_model("CodeToy"))
    assert after != before
