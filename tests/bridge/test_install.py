"""Installing BRMRS into an MMRec checkout: a fake MMRec tree built in tmp_path."""

import argparse
import os
from pathlib import Path

import pytest

from mmrec_plugin.bridge import cli, mmrec, stack
from mmrec_plugin.errors import UserError

MODEL_PY = "import torch\nfrom mmrec_plugin.method import graphs\nclass BRMRS:  # ours\n    pass\n"
MODEL_YAML = "embedding_size: 64\nhyper_parameters: []\n"

METRICS_OLD = """import numpy as np
def _map(pos_index, pos_len):
    # np.float in a comment does not count
    ranks = np.zeros_like(pos_index, dtype=np.float)
    x = np.float32(1.0)
    return ranks
"""
LIGHTGCN = """import scipy.sparse as sp
def build(A, d):
    A._update(d)
"""
CUDA_MODEL = "import torch\nx = torch.zeros(1).cuda()\n"
DATASET = "import pandas as pd\nimport lmdb\nfrom utils.data_utils import pad\n"
DATA_UTILS = "import torchvision.transforms as transforms\nimport numpy as np\n"
UTILS = "import numpy as np\ndef lap():\n    from torch_scatter import scatter_add\n"


def make_mmrec(root: Path, metrics: str = "import numpy as np\n") -> Path:
    """A minimal tree with the files MMRec checkouts have; returns the checkout root."""
    src = root / "src"
    files = {
        "main.py": "from utils.quick_start import quick_start\n",
        "utils/quick_start.py": "import os\n",
        "utils/metrics.py": metrics,
        "utils/dataset.py": DATASET,
        "utils/data_utils.py": DATA_UTILS,
        "utils/utils.py": UTILS,
        "common/abstract_recommender.py": "import torch\n",
        "common/trainer.py": "import torch\nimport matplotlib.pyplot as plt\n",
        "configs/overall.yaml": "epochs: 1000\n",
        "configs/model/LightGCN.yaml": "n_layers: [2]\n",
        "models/lightgcn.py": LIGHTGCN,
        "models/grcn.py": CUDA_MODEL,
    }
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return root


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A fake packaged src/ with our two files."""
    p = tmp_path / "pkg"
    (p / "models").mkdir(parents=True)
    (p / "configs" / "model").mkdir(parents=True)
    (p / "models" / "brmrs.py").write_text(MODEL_PY)
    (p / "configs" / "model" / "BRMRS.yaml").write_text(MODEL_YAML)
    return p


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_mmrec(tmp_path / "MMRec")


def test_install_copies_both_files_into_src(checkout, pkg):
    report = mmrec.install(checkout, package_src=pkg, check=False)
    src = checkout / "src"
    assert (src / "models" / "brmrs.py").read_text() == MODEL_PY
    assert (src / "configs" / "model" / "BRMRS.yaml").read_text() == MODEL_YAML
    assert [f.action for f in report.files] == ["installed", "installed"]
    assert report.src == src.resolve()
    # no temporary files left behind
    assert sorted(p.name for p in (src / "models").iterdir()) == ["brmrs.py", "grcn.py",
                                                                   "lightgcn.py"]
    # MMRec's own files untouched
    assert (src / "models" / "lightgcn.py").read_text() == LIGHTGCN


def test_install_accepts_src_folder_and_is_idempotent(checkout, pkg):
    mmrec.install(checkout / "src", package_src=pkg, check=False)
    again = mmrec.install(checkout / "src", package_src=pkg, check=False)
    assert [f.action for f in again.files] == ["up to date", "up to date"]


def test_install_refuses_a_different_file_and_writes_nothing(checkout, pkg):
    src = checkout / "src"
    (src / "configs" / "model" / "BRMRS.yaml").write_text("epochs: 3\n")
    with pytest.raises(UserError, match=r"BRMRS\.yaml.*--force"):
        mmrec.install(checkout, package_src=pkg, check=False)
    assert (src / "configs" / "model" / "BRMRS.yaml").read_text() == "epochs: 3\n"
    assert not (src / "models" / "brmrs.py").exists()  # all-or-nothing


def test_force_overwrites(checkout, pkg):
    src = checkout / "src"
    (src / "models" / "brmrs.py").write_text("old\n")
    report = mmrec.install(checkout, force=True, package_src=pkg, check=False)
    assert (src / "models" / "brmrs.py").read_text() == MODEL_PY
    assert [f.action for f in report.files] == ["overwritten", "installed"]


def test_uninstall_removes_only_ours(checkout, pkg):
    src = checkout / "src"
    mmrec.install(checkout, package_src=pkg, check=False)
    (src / "models" / "__pycache__").mkdir()
    (src / "models" / "__pycache__" / "brmrs.cpython-311.pyc").write_bytes(b"x")
    (src / "models" / "__pycache__" / "lightgcn.cpython-311.pyc").write_bytes(b"x")
    report = mmrec.uninstall(checkout, package_src=pkg)
    assert [f.action for f in report.files] == ["removed", "removed"]
    assert not (src / "models" / "brmrs.py").exists()
    assert not (src / "configs" / "model" / "BRMRS.yaml").exists()
    assert [p.name for p in (src / "models" / "__pycache__").iterdir()] == [
        "lightgcn.cpython-311.pyc"]
    assert (src / "models" / "lightgcn.py").exists()
    assert (src / "configs" / "model" / "LightGCN.yaml").exists()
    again = mmrec.uninstall(checkout, package_src=pkg)
    assert [f.action for f in again.files] == ["absent", "absent"]


def test_uninstall_keeps_a_different_file_unless_forced(checkout, pkg):
    src = checkout / "src"
    mmrec.install(checkout, package_src=pkg, check=False)
    (src / "models" / "brmrs.py").write_text("user edit\n")
    with pytest.raises(UserError, match=r"brmrs\.py.*--force"):
        mmrec.uninstall(checkout, package_src=pkg)
    assert (src / "models" / "brmrs.py").exists()
    assert (src / "configs" / "model" / "BRMRS.yaml").exists()
    mmrec.uninstall(checkout, force=True, package_src=pkg)
    assert not (src / "models" / "brmrs.py").exists()


def test_not_an_mmrec_path_names_the_missing_files(tmp_path, pkg):
    bad = tmp_path / "notmmrec"
    (bad / "src" / "models").mkdir(parents=True)
    (bad / "src" / "main.py").write_text("")
    with pytest.raises(UserError) as e:
        mmrec.install(bad, package_src=pkg)
    msg = str(e.value)
    for missing in ("utils/quick_start.py", "common/abstract_recommender.py",
                    "common/trainer.py", "configs/overall.yaml"):
        assert missing in msg
    assert "models/" not in msg.split("missing")[1].split("(")[0]
    with pytest.raises(UserError, match="no such folder"):
        mmrec.install(tmp_path / "nowhere", package_src=pkg)


def _levels(report, topic):
    return [s.level for s in report.stack if s.topic == topic]


def test_stack_flags_np_float_when_numpy_is_1_24_or_newer(tmp_path, monkeypatch):
    root = make_mmrec(tmp_path / "MMRec", metrics=METRICS_OLD)
    versions = {"numpy": "1.24.0", "scipy": "1.12.0", "torch": "2.14.1",
                "torchvision": "0.29.1"}
    monkeypatch.setattr(stack, "_installed_version", lambda dist: versions.get(dist))
    rep = mmrec.check_stack(root, module_available=lambda m: True, cuda_available=True)
    (np_issue,) = [s for s in rep.stack if s.topic == "numpy"]
    assert np_issue.level == "FAIL"
    # line 4 only: the comment on line 3 and np.float32 on line 5 are not hits
    assert "utils/metrics.py:4" in np_issue.message
    assert "metrics.py:3" not in np_issue.message and "metrics.py:5" not in np_issue.message
    assert 'numpy<1.24' in np_issue.fix
    assert rep.blockers == [np_issue]
    assert "FAIL" in rep.format() and 'pip install "numpy<1.24"' in rep.format()

    versions["numpy"] = "1.23.5"
    ok = mmrec.check_stack(root, module_available=lambda m: True, cuda_available=True)
    assert _levels(ok, "numpy") == ["ok"]
    assert ok.blockers == []


def test_stack_scipy_torchvision_cuda_and_missing_packages(tmp_path):
    root = make_mmrec(tmp_path / "MMRec")
    new = {"numpy": "2.4.0", "scipy": "1.13.0", "torch": "2.14.1", "torchvision": None}
    present = {"numpy", "torch", "matplotlib", "pandas"}  # lmdb, yaml... absent
    rep = mmrec.check_stack(root, versions=new, module_available=lambda m: m in present,
                            cuda_available=False)
    by = {s.topic: s for s in rep.stack}
    # metrics.py without np.float: no numpy line at all
    assert "numpy" not in by
    assert by["scipy"].level == "WARN" and "models/lightgcn.py:3" in by["scipy"].message
    assert by["scipy"].fix == 'pip install "scipy<1.13"'
    assert by["torchvision"].level == "FAIL"
    assert by["torchvision"].fix == 'pip install "torchvision==0.29.*"'
    assert by["cuda"].level == "WARN" and "models/grcn.py" in by["cuda"].message
    # lmdb (module level in dataset.py) is required; torch_scatter (inside a function) is not
    assert by["packages"].level == "FAIL"
    assert "lmdb" in by["packages"].message and "torch_scatter" not in by["packages"].message
    assert by["packages"].fix == "pip install lmdb"

    old = {"numpy": "1.23.5", "scipy": "1.12.0", "torch": "2.14.1", "torchvision": "0.29.1"}
    rep = mmrec.check_stack(root, versions=old, module_available=lambda m: True,
                            cuda_available=True)
    assert rep.blockers == []
    assert {s.topic: s.level for s in rep.stack} == {
        "scipy": "ok", "torchvision": "ok", "packages": "ok", "cuda": "ok"}


def test_stack_checks_brmrs_imports_once_installed(checkout, pkg):
    mmrec.install(checkout, package_src=pkg, check=False)
    rep = mmrec.check_stack(checkout, module_available=lambda m: m != "mmrec_plugin",
                            versions={"numpy": "1.23.5", "scipy": "1.12.0", "torch": "2.14.1",
                                      "torchvision": "0.29.1"}, cuda_available=False)
    (pk,) = [s for s in rep.stack if s.topic == "packages"]
    assert pk.level == "FAIL"
    assert "mmrec_plugin (imported by models/brmrs.py)" in pk.message
    assert "install this plugin" in pk.fix


def test_cli_install_and_uninstall(checkout, pkg, monkeypatch, capsys):
    monkeypatch.setattr(mmrec, "packaged_src", lambda: pkg)
    parser = argparse.ArgumentParser()
    cli.add_install_arguments(parser)
    args = parser.parse_args(["--mmrec", str(checkout), "--no-check"])
    assert cli.run_install(args) == 0
    out = capsys.readouterr().out
    assert "installed" in out and "brmrs.py" in out
    assert (checkout / "src" / "models" / "brmrs.py").is_file()

    parser = argparse.ArgumentParser()
    cli.add_uninstall_arguments(parser)
    assert cli.run_uninstall(parser.parse_args(["--mmrec", str(checkout / "src")])) == 0
    assert "removed" in capsys.readouterr().out
    assert not (checkout / "src" / "models" / "brmrs.py").exists()


def test_packaged_src_finds_the_repository_files():
    repo_src = Path(mmrec.__file__).resolve().parents[2] / "src"
    assert all((repo_src / r).is_file() for r in mmrec.MODEL_FILES)
    found = mmrec.packaged_src()
    for r in mmrec.MODEL_FILES:
        assert (found / r).read_bytes() == (repo_src / r).read_bytes()
