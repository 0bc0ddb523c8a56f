"""`data validate` catches each listed error (non-zero exit); `data stats` numbers."""
import json

import numpy as np
import pytest

from mmrec_plugin.data import checks
from mmrec_plugin.cli import main as _main


def main(argv):
    """``mmrec-plugin data ARGV``."""
    return _main(["data"] + list(argv))
from mmrec_plugin.data.files import write_inter

# 4 users, 5 items; every split non-empty; user 3 / item 4 only in test (cold)
ROWS = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (1, 1, 0), (1, 3, 0), (1, 0, 2),
        (2, 2, 0), (2, 3, 0), (2, 0, 1), (3, 4, 2)]


def _make(folder, rows=ROWS, n_feat=5, text=None):
    folder.mkdir(parents=True, exist_ok=True)
    u, i, x = (np.array(c) for c in zip(*rows))
    write_inter(folder / f"{folder.name}.inter", u, i, x)
    np.save(folder / "image_feat.npy", np.ones((n_feat, 4), np.float32))
    np.save(folder / "text_feat.npy", np.ones((n_feat, 3), np.float32) if text is None else text)
    return folder


def _errors(folder):
    rep = checks.validate(folder)
    assert main(["validate", str(folder)]) == (0 if rep.ok else 1)
    return " | ".join(rep.errors)


def test_a_good_dataset_passes_and_counts_cold_users_and_items(tmp_path, capsys):
    folder = _make(tmp_path / "good")
    rep = checks.validate(folder)
    assert rep.ok, rep.errors
    assert rep.info["cold users (valid/test only)"] == 1
    assert rep.info["cold items (valid/test only)"] == 1
    assert len(rep.warnings) == 2
    assert main(["validate", str(folder)]) == 0
    assert "result: OK" in capsys.readouterr().out


def _warnings(folder):
    rep = checks.validate(folder)
    assert rep.ok, rep.errors
    return " | ".join(rep.warnings)


def test_non_contiguous_user_ids_are_a_warning(tmp_path):
    # run accepts them (MMRec counts max id + 1), so validate warns instead of refusing
    rows = [(u if u < 3 else 5, i, x) for u, i, x in ROWS]
    assert "user ids are not contiguous from 0: 2 of 0..5 have no interaction (first: [3, 4])" \
        in _warnings(_make(tmp_path / "d", rows))


def test_non_contiguous_item_ids_are_a_warning(tmp_path):
    rows = [(u, i if i != 3 else 5, x) for u, i, x in ROWS]
    assert "item ids are not contiguous from 0: 1 of 0..5" in \
        _warnings(_make(tmp_path / "d", rows, n_feat=6))


@pytest.mark.parametrize("split,label", [("train", 0), ("valid", 1), ("test", 2)])
def test_empty_split(tmp_path, split, label):
    rows = [(u, i, (x + 1) % 3 if x == label else x) for u, i, x in ROWS]
    assert f"the {split} split is empty" in _errors(_make(tmp_path / "d", rows))


def test_duplicate_pairs(tmp_path):
    rows = ROWS + [(1, 3, 2)]
    assert "1 (user, item) pair(s) occur more than once (first: user 1, item 3, in data rows 6 " \
        "and 7)" in \
        _errors(_make(tmp_path / "d", rows))


def test_feature_rows_differ_from_items(tmp_path):
    err = _errors(_make(tmp_path / "d", n_feat=6))
    assert "image_feat.npy: feature array has shape (6, 4), expected (5, d) with d >= 1; 6 rows, " \
        "but the dataset has 5 items" in err
    assert "text_feat.npy: feature array has shape (6, 3)" in err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_features(tmp_path, bad):
    text = np.ones((5, 3), np.float32)
    text[3, 1] = bad
    assert "text_feat.npy: 1 row(s) contain NaN or inf (first: row 3)" in \
        _errors(_make(tmp_path / "d", text=text))


def test_missing_feature_file(tmp_path):
    folder = _make(tmp_path / "d")
    (folder / "image_feat.npy").unlink()
    assert "visual feature file not found" in _errors(folder)


def test_malformed_inter_names_the_line(tmp_path):
    folder = _make(tmp_path / "d")
    path = folder / "d.inter"
    lines = path.read_text().splitlines()
    lines[3] = "1\tabc\t0"
    path.write_text("\n".join(lines) + "\n")
    assert "d.inter, line 4: column 'itemID' must hold integer ids, got 'abc'" in _errors(folder)


def test_missing_label_column(tmp_path):
    folder = _make(tmp_path / "d")
    (folder / "d.inter").write_text("userID\titemID\n0\t0\n")
    assert "line 1: column 'x_label' not found in the header ['userID', 'itemID']" in _errors(folder)


def test_unknown_label(tmp_path):
    folder = _make(tmp_path / "d", ROWS)
    with open(folder / "d.inter", "a") as f:
        f.write("2\t4\t3\n")
    assert "d.inter, line 12: unknown x_label 3 (accepted: 0 train, 1 valid, 2 test)" in _errors(folder)


def test_stats_numbers(tmp_path, capsys):
    folder = _make(tmp_path / "good")
    s = checks.stats(folder)
    assert (s["users"], s["items"], s["interactions"]) == (4, 5, 10)
    assert s["density"] == pytest.approx(10 / 20)
    assert s["splits"] == {"train": 6, "valid": 2, "test": 2}
    assert s["per_user"] == {"min": 1, "median": 3.0, "mean": 2.5, "max": 3}
    assert s["features"]["visual"] == {"file": "image_feat.npy", "shape": (5, 4), "dtype": "float32"}
    assert main(["stats", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"]["text"]["shape"] == [5, 3]
    assert main(["stats", str(tmp_path / "nope")]) == 2


def test_validate_a_missing_folder_is_a_user_error(tmp_path, capsys):
    # a wrong path is the user's mistake, not a dataset error: one `error:` line, exit 2
    assert main(["validate", str(tmp_path / "nosuch")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nosuch" in err[0]
