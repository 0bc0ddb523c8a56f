"""Hostile input through the command line (`run`, `analyze`, `report`, `compare`, `bench`,
`study`): every case answers with exactly one `error:` line and exit status 2, no
traceback, within seconds (small inputs), and nothing is written outside --results-dir /
--data-path. The limits and readers they reach are in mmrec_plugin.limits,
mmrec_plugin.yamlio and mmrec_plugin.host.files."""
import json
import os
import signal

import numpy as np
import pytest

from mmrec_plugin import limits
from mmrec_plugin.cli import main

N_USERS, N_ITEMS = 10, 55


def _malformed_cases():
    """The malformed results files of tests/analysis/test_report.py (one table for both)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analysis", "test_report.py")
    spec = importlib.util.spec_from_file_location("_report_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MALFORMED


MALFORMED = _malformed_cases()


def _rows():
    return [(u, (u * 7 + j) % N_ITEMS, 0 if j < 5 else j - 4) for u in range(N_USERS) for j in range(7)]


def write_dataset(folder, extra=b"", features=True):
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(folder)
    with open(os.path.join(folder, f"{name}.inter"), "wb") as fh:
        fh.write(b"userID\titemID\tx_label\n")
        fh.write("".join("\t".join(map(str, r)) + "\n" for r in _rows()).encode() + extra)
    if features:
        rng = np.random.default_rng(0)
        np.save(os.path.join(folder, "image_feat.npy"), rng.normal(size=(N_ITEMS, 6)).astype(np.float32))
        np.save(os.path.join(folder, "text_feat.npy"), rng.normal(size=(N_ITEMS, 4)).astype(np.float32))


@pytest.fixture
def box(tmp_path, monkeypatch):
    """``tmp/box/{data,res}`` with the dataset ``tiny``; the working directory is ``tmp/box``;
    a 60 s alarm stops a case that would hang (an unwired fifo read, say)."""
    root = tmp_path / "box"
    write_dataset(str(root / "data" / "tiny"))
    monkeypatch.chdir(root)

    def _timeout(signum, frame):
        raise TimeoutError("the command did not answer within 60 s")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    yield root
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run_argv(model="BPR", dataset="tiny", *extra):
    return ["run", "-m", model, "-d", dataset, "--data-path", "data", "--results-dir", "res",
            "--epochs", "1", "-q", *extra]


def one_error(capsys, code, *needles):
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


# ------------------------------------------------------------- dataset files (wired already)
INTER = [
    ("NUL byte in an id", b"3\t1\x00\t0\n", ["tiny.inter, line 72", "NUL byte"]),
    ("Arabic-Indic digit", "3\t\u0663\t0\n".encode(), ["tiny.inter, line 72", "only ASCII digits"]),
    ("user id 99999999999", b"99999999999\t1\t0\n",
     ["line 72", "userID 99999999999 is far beyond", "data import --format inter"]),
    ("user id 50000000", b"50000000\t1\t0\n", ["line 72", "userID 50000000 is far beyond"]),
]


@pytest.mark.parametrize("case, extra, needles", INTER, ids=[c[0] for c in INTER])
def test_run_refuses_bad_ids(box, capsys, case, extra, needles):
    write_dataset(str(box / "data" / "tiny"), extra=extra)
    one_error(capsys, main(run_argv()), *needles)
    assert not (box / "res" / "BPR-tiny.json").exists()


def _zero_byte(path):
    open(path, "wb").close()


def _npz(path):
    with open(path, "wb") as fh:
        np.savez(fh, a=np.ones((N_ITEMS, 6)))


def _objects(path):
    np.save(path, np.array([[object()] * 6] * N_ITEMS, dtype=object), allow_pickle=True)


NPY = [("zero-byte .npy", _zero_byte, "the file is empty (0 bytes)"),
       (".npz saved as .npy", _npz, "a zip archive"),
       ("pickled object array", _objects, "holds Python objects")]


@pytest.mark.parametrize("case, make, needle", NPY, ids=[c[0] for c in NPY])
def test_run_refuses_bad_feature_files(box, capsys, case, make, needle):
    make(str(box / "data" / "tiny" / "image_feat.npy"))
    one_error(capsys, main(run_argv("BRMRS")), "image_feat.npy", needle)


@pytest.mark.parametrize("dataset", ["tiny", "demo"])
def test_run_data_path_of_the_wrong_kind(box, capsys, dataset):
    (box / "FILE").write_text("x")
    argv = run_argv("BPR", dataset)
    argv[argv.index("--data-path") + 1] = "FILE"
    one_error(capsys, main(argv), "FILE", "not a folder")
    assert not (box / "res" / f"BPR-{dataset}.json").exists()


# ----------------------------------------------------- results files (wired through load_results)
def _results(box, cid):
    c = {"id": cid, "params": {"seed": 999}, "valid": {"recall@20": 0.1}, "test": {"recall@20": 0.1},
         "model_path": str(box / "res" / "models" / "m.pt")}
    path = box / "res" / "BPR-tiny.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": "BPR", "dataset": "tiny", "combinations": [c], "best": c}))
    return str(path)


@pytest.mark.parametrize("cid", ["/../../name", "../x", "a/b", "x\x00y"])
def test_analyze_refuses_a_hostile_combination_id(box, capsys, cid):
    path = _results(box, cid)
    before = files_under(box.parent)
    one_error(capsys, main(["analyze", "--results", path]), "combinations[0].id")
    one_error(capsys, main(["analyze", "--results", path, "--combination", cid]), "id")
    assert files_under(box.parent) == before


@pytest.fixture
def trained(box):
    """A finished 1-epoch BRMRS run on ``tiny`` (its results file)."""
    assert main(run_argv("BRMRS")) == 0
    return str(box / "res" / "BRMRS-tiny.json")


def test_analyze_out_of_the_wrong_kind(box, capsys, trained):
    (box / "adir").mkdir()
    capsys.readouterr()
    one_error(capsys, main(["analyze", "--results", trained, "--out", "adir"]), "adir", "is a folder")
    (box / "FILE").write_text("x")
    one_error(capsys, main(["analyze", "--results", trained, "--out", "FILE/x.json"]), "is a file")
    assert os.listdir(box / "adir") == []


def test_report_out_of_the_wrong_kind(box, capsys):
    path = _results(box, "0123456789ab")
    (box / "FILE").write_text("x")
    one_error(capsys, main(["report", path, "--out", "FILE"]), "--out FILE", "not a folder")


CORRUPT = [b"{\n \"combinations\": [", b"[]", b"\xff\xfe", b'{"combinations": [{"valid": "high"}]}']


@pytest.mark.parametrize("payload", CORRUPT)
def test_report_on_a_corrupt_results_file(box, capsys, payload):
    path = box / "res" / "BPR-tiny.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    one_error(capsys, main(["report", str(path)]), str(path))


@pytest.mark.parametrize("case, payload, needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_analyze_on_a_malformed_results_file(box, capsys, case, payload, needle):
    path = box / "res" / "BPR-tiny.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    one_error(capsys, main(["analyze", "--results", str(path)]), str(path), needle)
    assert files_under(box / "res") == ["BPR-tiny.json"]


# ------------------------------------------------------------ run, analyze, compare, study
def _compare_report_only(box, capsys, payload, *needles):
    path = box / "res" / "base" / "seed999" / "BRMRS-tiny.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    one_error(capsys, main(["compare", "-d", "tiny", "--data-path", "data", "--results-dir", "res",
                            "--variant", "base", "--seeds", "999", "--report-only"]),
              "seed999/BRMRS-tiny.json", *needles)


def test_compare_report_only_on_a_truncated_results_file(box, capsys):
    _compare_report_only(box, capsys, b"{\n \"combinations\": [")


@pytest.mark.parametrize("case, payload, needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_compare_report_only_on_a_malformed_results_file(box, capsys, case, payload, needle):
    _compare_report_only(box, capsys, payload, needle)


@pytest.mark.parametrize("name", ["x/../../escape", "sub/evil", "..", "a\x00b", "\u0663"])
def test_run_dataset_name_is_a_plain_name(box, capsys, name):
    write_dataset(str(box.parent / "escape"))  # what x/../../escape would reach from data/
    write_dataset(str(box / "data" / "sub" / "evil"))
    before = files_under(box.parent)
    one_error(capsys, main(run_argv("BPR", name)), "dataset", "ASCII letters, digits")
    assert files_under(box.parent) == before  # no summary, store or graph cache anywhere


def test_run_model_name_is_a_plain_name(box, capsys):
    one_error(capsys, main(run_argv("../BPR")), "model")
    assert not (box / "res").exists()


def test_run_config_fifo(box, capsys):
    os.mkfifo(box / "c.yaml")
    one_error(capsys, main(run_argv("BPR", "tiny", "--config", "c.yaml")), "c.yaml",
              "not a regular file")


def test_run_config_nested_aliases(box, capsys):
    # 9^6 = 531441 values from a few hundred bytes: over MAX_YAML_NODES, cheap if unwired
    lines = ["a0: &a0 [" + ",".join(["1"] * 9) + "]"]
    lines += [f"a{j}: &a{j} [" + ",".join([f"*a{j - 1}"] * 9) + "]" for j in range(1, 6)]
    (box / "c.yaml").write_text("\n".join(lines) + "\n")
    line = one_error(capsys, main(run_argv("BPR", "tiny", "--config", "c.yaml")), "c.yaml",
                     f"more than {limits.MAX_YAML_NODES} yaml values")
    assert len(line) < 500


def test_run_config_too_large(box, capsys):
    (box / "c.yaml").write_bytes(b"epochs: 1\n" + b"#" * limits.MAX_CONFIG_BYTES)
    one_error(capsys, main(run_argv("BPR", "tiny", "--config", "c.yaml")), "c.yaml",
              f"at most {limits.MAX_CONFIG_BYTES}")


def test_run_grid_beyond_the_limit(box, capsys):
    seeds = "[" + ",".join(str(s) for s in range(1000)) + "]"
    sizes = "[" + ",".join(str(s) for s in range(1, 1001)) + "]"
    one_error(capsys, main(run_argv("BPR", "tiny", "--seed", seeds, "--embedding_size", sizes)),
              "1000000 combinations", str(limits.MAX_COMBINATIONS), "--max-combinations")
    assert not (box / "res").exists() or files_under(box / "res") == []


def test_run_embedding_size_beyond_memory(box, capsys, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)
    one_error(capsys, main(run_argv("BPR", "tiny", "--embedding_size", "10000000")),
              "embedding_size", "of memory")


def test_run_full_disk_while_saving_the_model(box, capsys, monkeypatch):
    import torch

    def full_disk(obj, f, *a, **k):  # what torch raises when the disk fills during a save
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    one_error(capsys, main(run_argv("BPR")), "model")
    leftovers = [f for f in files_under(box / "res") if f.endswith(".pt") or ".tmp" in f]
    assert leftovers == []


@pytest.mark.parametrize("threads", ["0", "-3"])
def test_bench_threads_are_checked_like_run(box, capsys, threads):
    one_error(capsys, main(["bench", "-d", "nosuch", "--data-path", "data", "--threads", threads]),
              "--threads")


def test_study_set_refuses_an_unknown_key(box, capsys):
    one_error(capsys, main(["study", "fig1", "--set", "foo=1", "--print-config"]), "foo")
