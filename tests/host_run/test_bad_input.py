"""Malformed input through the command line (`mmrec-plugin run`, i.e. `python main.py`): each
case is exit status 2 and exactly one `error:` line that names the file or key, no
traceback. Also: `data validate` on a binary file, and a user without training interactions
(a warning, not an error)."""
import os

import numpy as np
import pytest

from mmrec_plugin.cli import main

N_USERS, N_ITEMS = 10, 55


def good_rows():
    rows = []
    for u in range(N_USERS):
        for j in range(7):
            rows.append((u, (u * 7 + j) % N_ITEMS, 0 if j < 5 else j - 4))
    return rows


def write_dataset(folder, rows, features=True):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tiny.inter"), "w") as fh:
        fh.write("userID\titemID\tx_label\n" + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    if features:
        rng = np.random.default_rng(0)
        np.save(os.path.join(folder, "image_feat.npy"), rng.normal(size=(N_ITEMS, 6)).astype(np.float32))
        np.save(os.path.join(folder, "text_feat.npy"), rng.normal(size=(N_ITEMS, 4)).astype(np.float32))


# each case: (id, model, prepare(folder, tmp) -> extra argv, needles in the error line)
def _binary_inter(folder, tmp):
    with open(os.path.join(folder, "tiny.inter"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)) * 4)
    return []


def _inter_binary_after_header(folder, tmp):
    with open(os.path.join(folder, "tiny.inter"), "ab") as fh:
        fh.write(b"3\t\xff\xfe\t0\n")
    return []


def _features(name, arr):
    def prepare(folder, tmp):
        np.save(os.path.join(folder, name), arr)
        return []
    return prepare


def _config_file(payload):
    def prepare(folder, tmp):
        path = os.path.join(tmp, "extra.yaml")
        with open(path, "wb") as fh:
            fh.write(payload)
        return ["--config", path]
    return prepare


def _config_is_folder(folder, tmp):
    return ["--config", str(tmp)]


def _flags(*argv):
    return lambda folder, tmp: list(argv)


def _duplicate_pair(folder, tmp):
    rows = good_rows()
    rows.append((3, rows[21][1], 2))  # user 3's first train item again, in test
    write_dataset(folder, rows, features=False)
    return []


NANS = np.zeros((N_ITEMS, 6), np.float32)
NANS[7, 2] = np.nan

CASES = [
    ("binary inter", "BPR", _binary_inter, ["tiny.inter", "not a UTF-8 text file"]),
    ("binary line in inter", "BPR", _inter_binary_after_header, ["tiny.inter", "UTF-8"]),
    ("string features", "BRMRS", _features("image_feat.npy", np.array([["a"] * 6] * N_ITEMS)),
     ["image_feat.npy", "dtype <U1", "real numbers"]),
    ("complex features", "BRMRS", _features("text_feat.npy", np.ones((N_ITEMS, 4), np.complex64)),
     ["text_feat.npy", "complex64"]),
    ("no feature columns", "BRMRS", _features("text_feat.npy", np.zeros((N_ITEMS, 0), np.float32)),
     ["text_feat.npy", f"({N_ITEMS}, 0)", "d >= 1"]),
    ("nan features", "BRMRS", _features("image_feat.npy", NANS), ["image_feat.npy", "NaN", "row 7"]),
    ("nan learning rate", "BPR", _flags("--learning_rate", ".nan"), ["'learning_rate'", "NaN"]),
    ("inf learning rate", "BPR", _flags("--learning_rate", ".inf"), ["'learning_rate'", "finite"]),
    ("nan reg_weight", "BPR", _flags("--reg_weight", ".nan"), ["'reg_weight'", "NaN"]),
    ("nan in a grid", "BPR", _flags("--reg_weight", "[0.1, .nan]"), ["'reg_weight'", "NaN"]),
    ("nan BRMRS weight", "BRMRS", _flags("--syn_weight", ".nan"), ["'syn_weight'", "NaN"]),
    ("config of random bytes", "BPR", _config_file(b"\x80\xff\xfe" + os.urandom(64)),
     ["extra.yaml", "not a UTF-8 text file"]),
    ("config is a folder", "BPR", _config_is_folder, ["is a folder"]),
    ("config key typo", "BPR", _config_file(b"learning_rat: 0.5\n"),
     ["extra.yaml", "unknown config key 'learning_rat'", "did you mean 'learning_rate'"]),
    ("config nan", "BPR", _config_file(b"epochs: 1\nweight_decay: .nan\n"),
     ["'weight_decay'", "extra.yaml", "NaN"]),
    ("duplicate pair", "BPR", _duplicate_pair,
     ["tiny.inter", "1 (user, item) pair(s) occur more than once", "user 3"]),
]


@pytest.mark.parametrize("case, model, prepare, needles", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_one_error_line(tmp_path, monkeypatch, capsys, case, model, prepare, needles):
    monkeypatch.chdir(tmp_path)
    folder = str(tmp_path / "data" / "tiny")
    write_dataset(folder, good_rows())
    extra = prepare(folder, str(tmp_path))
    code = main(["run", "-m", model, "-d", "tiny", "--data-path", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "res"), "--epochs", "1", "-q"] + extra)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "res" / f"{model}-tiny.json")  # nothing trained


def test_data_validate_binary_inter(tmp_path, capsys):
    folder = str(tmp_path / "tiny")
    write_dataset(folder, good_rows())
    _binary_inter(folder, str(tmp_path))
    code = main(["data", "validate", folder])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    assert "ERROR:" in out and "tiny.inter" in out and "not a UTF-8 text file" in out


def test_data_validate_complex_and_empty_features(tmp_path, capsys):
    folder = str(tmp_path / "tiny")
    write_dataset(folder, good_rows())
    np.save(os.path.join(folder, "text_feat.npy"), np.ones((N_ITEMS, 4), np.complex64))
    np.save(os.path.join(folder, "image_feat.npy"), np.zeros((N_ITEMS, 0), np.float32))
    code = main(["data", "validate", folder])
    out = capsys.readouterr().out
    errors = [ln for ln in out.splitlines() if "ERROR:" in ln]
    assert code == 1 and len(errors) == 2, out
    assert any("text_feat.npy" in e and "complex64" in e for e in errors)
    assert any("image_feat.npy" in e and f"({N_ITEMS}, 0)" in e for e in errors)


def test_user_without_training_interactions_is_a_warning(tmp_path, monkeypatch, capsys):
    """User 10 has a valid and a test item but nothing in train: it trains, with a warning
    naming the count and the user."""
    monkeypatch.chdir(tmp_path)
    rows = good_rows() + [(10, 1, 1), (10, 2, 2)]
    write_dataset(str(tmp_path / "data" / "tiny"), rows, features=False)
    code = main(["run", "-m", "BPR", "-d", "tiny", "--data-path", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "res"), "--epochs", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "none in train" in ln]
    assert len(warnings) == 1 and "1 user(s)" in warnings[0] and "[10]" in warnings[0], err
