"""Command line: a working run through main.py, and user errors as one `error:` line with
exit status 2 and no traceback (unknown model, unknown flag/key, missing dataset, malformed
.inter, bad values)."""
import json
import os
import subprocess
import sys

import pytest

from mmrec_plugin.cli import main, parse_overrides
from mmrec_plugin.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_inter(root, name, rows, header="userID\titemID\tx_label"):
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w") as fh:
        fh.write(header + "\n" + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")


def good_rows(n_users=10, n_items=55):
    rows = []
    for u in range(n_users):
        for j in range(7):
            rows.append((u, (u * 7 + j) % n_items, 0 if j < 5 else j - 4))
    return rows


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inter(tmp_path / "data", "tiny", good_rows())
    return str(tmp_path / "data")


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *needles):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_model(capsys, data):
    code, _, err = run_main(capsys, "run", "-m", "LightGNC", "-d", "tiny", "--data-path", data)
    assert_user_error(code, err, "unknown model 'LightGNC'", "LightGCN", "BPR")


@pytest.mark.parametrize("flag, suggestion", [
    ("--epoch", "--epochs"),
    ("--learnig_rate", "--learning_rate"),
    ("--data-pth", "--data-path"),
    ("--reg-weigth", "--reg_weight"),
])
def test_unknown_flag_names_closest(capsys, data, flag, suggestion):
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data, flag, "3")
    assert_user_error(code, err, f"unknown option {flag}", f"did you mean {suggestion}?")


def test_missing_value_and_stray_argument(capsys, data):
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data, "--epochs")
    assert_user_error(code, err, "--epochs needs a value")
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data, "stray")
    assert_user_error(code, err, "unexpected argument 'stray'")
    code, _, err = run_main(capsys, "run", "-d", "tiny")
    assert_user_error(code, err, "-m/--model")


def test_missing_dataset_names_files_and_source(capsys, data):
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "baby", "--data-path", data)
    assert_user_error(code, err, "baby.inter", "image_feat.npy", "MMRec")


@pytest.mark.parametrize("header, rows, needle", [
    ("userID\tx_label", [(0, 0)], "itemID"),
    ("userID\titemID\tx_label", [(0, 1, 0), ("u1", 2, 1)], "line 3"),
    ("userID\titemID\tx_label", [(0, 1, 0), (1, 2, 7)], "x_label"),
    ("userID\titemID\tx_label", [(0, 1, 0), (1, 2, 1)], "test split is empty"),
])
def test_malformed_inter(capsys, tmp_path, monkeypatch, header, rows, needle):
    monkeypatch.chdir(tmp_path)
    write_inter(tmp_path / "data", "bad", rows, header=header)
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "bad", "--data-path", str(tmp_path / "data"))
    assert_user_error(code, err, "bad.inter", needle)


def test_bad_value_and_valid_metric(capsys, data):
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data,
                            "--valid_metric", "Recall@7")
    assert_user_error(code, err, "'valid_metric'", "K in")


def test_unknown_command_and_help(capsys):
    code, _, err = run_main(capsys, "rnu")
    assert_user_error(code, err, "unknown command 'rnu'", "did you mean 'run'?")
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "run" in out and "analyze" in out


def test_parse_overrides():
    known = {"epochs", "reg_weight", "learning_rate"}
    assert parse_overrides(["--epochs", "3", "--reg-weight=[1e-4, 1e-3]"], known) == {
        "epochs": 3, "reg_weight": [1e-4, 1e-3]}
    with pytest.raises(UserError, match="did you mean --learning_rate"):
        parse_overrides(["--learning-rat", "1"], known)


def test_main_py_end_to_end(tmp_path):
    """`python main.py` on tiny data: trains, prints the summary path, exit 0; a user error
    through the real entry point is one line and exit 2."""
    write_inter(tmp_path / "data", "tiny", good_rows())
    cmd = [sys.executable, os.path.join(REPO, "main.py"), "-m", "BPR", "-d", "tiny",
           "--data-path", str(tmp_path / "data"), "--results-dir", str(tmp_path / "res"),
           "--epochs", "2", "--reg_weight", "[0.0, 0.01]", "-q"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    path = ok.stdout.strip().splitlines()[-1]
    with open(path) as fh:
        summary = json.load(fh)
    assert summary["model"] == "BPR" and len(summary["combinations"]) == 2
    assert [c["params"]["reg_weight"] for c in summary["combinations"]] == [0.0, 0.01]

    bad = subprocess.run(cmd[:3] + ["NoSuchModel"] + cmd[4:], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown model 'NoSuchModel'")
    assert "Traceback" not in bad.stderr


def test_results_dir_that_cannot_be_created(capsys, data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data,
                            "--results-dir", str(blocker / "results"), "--epochs", "1")
    assert_user_error(code, err, "results_dir", str(blocker / "results"))


@pytest.fixture
def restore_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))  # restored by monkeypatch afterwards
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("argv, env, want", [
    (["--threads", "2"], None, 2),
    ([], None, 1),        # the default without OMP_NUM_THREADS
    ([], "3", 3),         # OMP_NUM_THREADS is the default when set
    (["--threads", "1"], "3", 1),
])
def test_threads_flag_sets_and_prints_torch_threads(capsys, data, monkeypatch, restore_threads,
                                                    argv, env, want):
    import torch

    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    seen = []
    real_fit = __import__("mmrec_plugin.host.trainer", fromlist=["Trainer"]).Trainer.fit

    def fit(self, *a, **k):  # the count while training
        seen.append(torch.get_num_threads())
        return real_fit(self, *a, **k)

    monkeypatch.setattr("mmrec_plugin.host.trainer.Trainer.fit", fit)
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data,
                            "--epochs", "1", *argv)
    assert code == 0, err
    assert seen == [want]
    assert f"threads: {want} torch thread(s) per training process" in err
    assert os.environ["OMP_NUM_THREADS"] == str(want)


def test_threads_must_be_positive(capsys, data, restore_threads):
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data,
                            "--threads", "0")
    assert_user_error(code, err, "--threads: expected a positive integer, got '0'")
    code, _, err = run_main(capsys, "run", "-m", "BPR", "-d", "tiny", "--data-path", data,
                            "--threads", "two")
    assert_user_error(code, err, "--threads")
