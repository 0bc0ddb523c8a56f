"""Model registry: in-code registrations, entry points, MMRec-style source folders,
case-insensitive lookup, model yaml discovery and the unknown-name error."""
import os
import sys
import textwrap

import pytest

from mmrec_plugin import registry
from mmrec_plugin.errors import UserError


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    import mmrec_plugin.host  # noqa: F401  (registers BPR/LightGCN)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")
                 or m.startswith("_mmrec_plugin_cwd_models_") or m.startswith("fake_ep_pkg")]:
        del sys.modules[name]


def _write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text))
    return str(path)


class MyFancyModel:
    pass


def test_register_and_case_insensitive_lookup(tmp_path):
    cfg = _write(tmp_path / "x.yaml", "a: 1\n")
    registry.register_model("MyFancyModel", MyFancyModel, config_path=cfg)
    assert registry.get_model("myfancymodel") is MyFancyModel
    assert registry.get_model("MYFANCYMODEL") is MyFancyModel
    assert registry.model_config_path("MyFancyModel") == cfg
    assert registry.canonical_name("myfancymodel") == "MyFancyModel"
    assert "MyFancyModel" in registry.available_models()


def test_register_rejects_bad_input(tmp_path):
    with pytest.raises(UserError, match="must be a class"):
        registry.register_model("X", 3)
    with pytest.raises(UserError, match="does not exist"):
        registry.register_model("X", MyFancyModel, config_path=str(tmp_path / "none.yaml"))


def test_host_reference_models_registered_with_yaml():
    from mmrec_plugin.host.models import BPR, LightGCN

    assert registry.get_model("lightgcn") is LightGCN
    assert registry.get_model("bpr") is BPR
    assert os.path.basename(registry.model_config_path("LightGCN")) == "LightGCN.yaml"


def test_unknown_name_lists_models_and_closest():
    with pytest.raises(UserError) as info:
        registry.get_model("LightGNC")
    msg = str(info.value)
    assert "unknown model 'LightGNC'" in msg
    assert "BPR" in msg and "LightGCN" in msg
    assert "Closest match: LightGCN" in msg


def test_entry_point_from_installed_distribution(tmp_path, monkeypatch):
    """A fake distribution on sys.path declares the model in group mmrec_plugin.models."""
    root = tmp_path / "site"
    _write(root / "fake_ep_pkg" / "__init__.py", "")
    _write(root / "fake_ep_pkg" / "models" / "__init__.py", "")
    _write(root / "fake_ep_pkg" / "models" / "epnet.py", "class EpNet:\n    pass\n")
    yaml_path = _write(root / "fake_ep_pkg" / "configs" / "model" / "EpNet.yaml", "k: 1\n")
    dist = root / "fake_ep_pkg-0.1.dist-info"
    _write(dist / "METADATA", "Metadata-Version: 2.1\nName: fake-ep-pkg\nVersion: 0.1\n")
    _write(dist / "entry_points.txt",
           "[mmrec_plugin.models]\nEpNet = fake_ep_pkg.models.epnet:EpNet\n")
    monkeypatch.syspath_prepend(str(root))
    cls = registry.get_model("epnet")
    assert cls.__name__ == "EpNet" and cls.__module__ == "fake_ep_pkg.models.epnet"
    assert registry.model_config_path("EPNET") == yaml_path
    assert "EpNet" in registry.available_models()


def test_cwd_src_models_mmrec_layout(tmp_path, monkeypatch):
    _write(tmp_path / "src" / "models" / "cwdnet.py", "class CwdNet:\n    pass\n")
    yaml_path = _write(tmp_path / "src" / "configs" / "model" / "CwdNet.yaml", "k: 2\n")
    monkeypatch.chdir(tmp_path)
    cls = registry.get_model("CWDNET")
    assert cls.__name__ == "CwdNet"
    assert os.path.samefile(registry.model_config_path("cwdnet"), yaml_path)
    assert "CwdNet" in registry.available_models()


def test_models_package_on_sys_path(tmp_path, monkeypatch):
    """MMRec's own convention: `models.<name>` importable (run from MMRec's src/)."""
    _write(tmp_path / "mm" / "models" / "__init__.py", "")
    _write(tmp_path / "mm" / "models" / "pathnet.py", "class PathNet:\n    pass\n")
    yaml_path = _write(tmp_path / "mm" / "configs" / "model" / "PathNet.yaml", "k: 3\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mm"))
    monkeypatch.chdir(tmp_path)
    assert registry.get_model("pathnet").__name__ == "PathNet"
    assert registry.model_config_path("PathNet") == yaml_path


def test_in_code_registration_wins_over_files(tmp_path, monkeypatch):
    _write(tmp_path / "src" / "models" / "dupnet.py", "class DupNet:\n    pass\n")
    monkeypatch.chdir(tmp_path)

    class DupNet:
        pass

    registry.register_model("DupNet", DupNet)
    assert registry.get_model("dupnet") is DupNet
    assert registry.model_config_path("dupnet") is None


def test_path_like_names_are_not_imported(tmp_path, monkeypatch):
    _write(tmp_path / "evil.py", "raise SystemExit('imported')\n")
    (tmp_path / "src" / "models").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for name in ("../../evil", "a.b", ""):
        with pytest.raises(UserError):
            registry.get_model(name)
