"""BRMRS inside a real MMRec checkout, through MMRec's own main.py.

Runs only when ``MMREC_SRC`` points at an MMRec ``src`` folder (a clone of
github.com/enoche/MMRec; never part of this repository). ``MMREC_PYTHON`` picks the
interpreter that runs MMRec (default: this one); it must have MMRec's dependencies and this
plugin installed. The checkout is copied to a temporary folder, BRMRS is installed into the
copy, a tiny multimodal dataset is written to the copy's data folder, and two epochs run.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmrec_plugin.bridge import mmrec
from mmrec_plugin.errors import UserError

MMREC_SRC = os.environ.get("MMREC_SRC")

pytestmark = pytest.mark.skipif(
    not MMREC_SRC, reason="MMREC_SRC is not set (point it at an MMRec checkout's src folder)")


def write_tiny(folder: Path, n_users: int = 60, n_items: int = 60, per_user: int = 8,
               seed: int = 0) -> None:
    """Clustered interactions (x_label: last two per user valid/test) + 16-d text, 24-d image.

    n_items >= 50: MMRec ranks the top max(topk) = 50 items and fails with fewer.
    """
    rng = np.random.default_rng(seed)
    k = 4
    uc, ic = rng.integers(0, k, n_users), rng.integers(0, k, n_items)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"]
    for u in range(n_users):
        p = np.where(ic == uc[u], 4.0, 1.0)
        items = rng.choice(n_items, size=per_user, replace=False, p=p / p.sum())
        labels = [0] * (per_user - 2) + [1, 2]
        lines += [f"{u}\t{i}\t{lab}" for i, lab in zip(items, labels)]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    t = rng.normal(size=(k, 16))[ic] + 0.5 * rng.normal(size=(n_items, 16))
    v = rng.normal(size=(k, 24))[ic] + 0.8 * rng.normal(size=(n_items, 24))
    np.save(folder / "text_feat.npy", t.astype(np.float32))
    np.save(folder / "image_feat.npy", v.astype(np.float32))


def one_combination(model_yaml: Path, epochs: int) -> None:
    """In the temporary copy only: keep the first value of each grid list, set epochs."""
    cfg = yaml.safe_load(model_yaml.read_text()) or {}
    for key in cfg.get("hyper_parameters") or []:
        if isinstance(cfg.get(key), list) and cfg[key]:
            cfg[key] = [cfg[key][0]]
    cfg["epochs"] = epochs
    model_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))


def metric_lines(log: str, header: str):
    """The dict2str lines MMRec logs after ``header`` ('valid result:' / 'test result:')."""
    return re.findall(header + r"\s*\n?\s*(recall@.*)", log)


def run_tiny(work: Path, model: str, epochs: int = 2):
    """In the MMRec copy ``work``: write the tiny dataset and its yaml, pin ``model``'s grid
    to one combination of ``epochs``, run MMRec's main.py with this repository on the path;
    returns (stdout + stderr, the finished process)."""
    write_tiny(work / "data" / "tiny")
    (work / "src" / "configs" / "dataset" / "tiny.yaml").write_text(
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\ninter_file_name: 'tiny.inter'\n"
        "vision_feature_file: 'image_feat.npy'\ntext_feature_file: 'text_feat.npy'\n"
        f'field_separator: "\\t"\nepochs: {epochs}\n')
    one_combination(work / "src" / "configs" / "model" / f"{model}.yaml", epochs=epochs)
    python = os.environ.get("MMREC_PYTHON", sys.executable)
    env = dict(os.environ)
    repo_root = str(Path(mmrec.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), repo_root) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([python, "main.py", "-m", model, "-d", "tiny"], cwd=work / "src",
                          env=env, capture_output=True, text=True, timeout=600)
    return proc.stdout + proc.stderr, proc


def test_brmrs_trains_two_epochs_inside_mmrec(tmp_path):
    src = Path(MMREC_SRC)
    mmrec.find_mmrec_src(src)  # a clear error when MMREC_SRC is not an MMRec src folder
    try:
        mmrec.packaged_src()
    except UserError as e:
        pytest.skip(f"the packaged BRMRS files are missing: {e}")
    work = tmp_path / "MMRec"
    shutil.copytree(src, work / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "log", "saved", "*.pyc"))
    for r in mmrec.MODEL_FILES:  # a BRMRS installed earlier in the source checkout
        (work / "src" / r).unlink(missing_ok=True)
    report = mmrec.install(work)
    assert [f.action for f in report.files] == ["installed", "installed"]
    if "MMREC_PYTHON" not in os.environ:  # the checklist describes this interpreter
        assert not report.blockers, report.format()
    log, proc = run_tiny(work, "BRMRS")
    assert proc.returncode == 0, log[-4000:]
    assert "Loss is nan" not in log
    assert re.search(r"epoch 1 training \[time", log), log[-4000:]
    valid, test = metric_lines(log, "valid result:"), metric_lines(log, "test result:")
    assert len(valid) >= 2 and len(test) >= 2, log[-4000:]
    for line in valid + test:
        r20 = float(re.search(r"recall@20: ([0-9.]+)", line).group(1))
        assert 0.0 <= r20 <= 1.0
    # MMRec's own log file under src/log/ carries the same result
    logs = list((work / "src" / "log").glob("BRMRS-tiny-*.log"))
    assert len(logs) == 1 and "test result" in logs[0].read_text()


def test_freedom_br_example_trains_two_epochs_inside_mmrec(tmp_path):
    """examples/mmrec: MMRec's own FREEDOM, subclassed to train with BRObjective."""
    src = Path(MMREC_SRC)
    mmrec.find_mmrec_src(src)
    if not (src / "models" / "freedom.py").is_file():
        pytest.skip("this MMRec checkout has no FREEDOM")
    repo_root = Path(mmrec.__file__).resolve().parents[2]
    example = repo_root / "examples" / "mmrec"
    if not example.is_dir():
        pytest.skip("examples/mmrec is not part of this installation")
    work = tmp_path / "MMRec"
    shutil.copytree(src, work / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "log", "saved", "*.pyc"))
    shutil.copy(example / "models" / "freedom_br.py", work / "src" / "models" / "freedom_br.py")
    shutil.copy(example / "configs" / "model" / "FREEDOM_BR.yaml",
                work / "src" / "configs" / "model" / "FREEDOM_BR.yaml")
    log, proc = run_tiny(work, "FREEDOM_BR")
    assert proc.returncode == 0, log[-4000:]
    assert "Loss is nan" not in log
    # a scalar loss: MMRec logs its "epoch N training" line with one train loss each epoch
    # (a tuple would be logged term by term, without that line)
    assert re.search(r"epoch 1 training \[time", log), log[-4000:]
    assert "train_loss1" not in log, log[-4000:]
    test = metric_lines(log, "test result:")
    assert len(test) >= 2, log[-4000:]
