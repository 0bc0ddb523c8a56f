"""`mmrec-plugin data ...` against hostile input: every case is one `error:` line and exit 2
(or, for `data validate`, its documented report: ERROR lines and exit 1), nothing written
outside --out, and no allocation sized by an id or a setting before it is checked."""
import os

import numpy as np
import pytest

from mmrec_plugin import limits
from mmrec_plugin.cli import main
from mmrec_plugin.data.files import read_inter, write_inter

# 6 users x 4 items each; every user has 2 train, 1 valid, 1 test
ROWS = [(u, (u + j) % 7, (0, 0, 1, 2)[j]) for u in range(6) for j in range(4)]


def _dataset(folder, rows=ROWS, extra=b""):
    folder.mkdir(parents=True, exist_ok=True)
    u, i, x = (np.array(c) for c in zip(*rows))
    write_inter(folder / f"{folder.name}.inter", u, i, x)
    if extra:
        with open(folder / f"{folder.name}.inter", "ab") as fh:
            fh.write(extra)
    np.save(folder / "image_feat.npy", np.ones((7, 3), np.float32))
    np.save(folder / "text_feat.npy", np.ones((7, 2), np.float32))
    return folder


def _one_error(capsys, code, *needles):
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


HUGE_IDS = [(b"99999999999\t1\t0\n", "userID 99999999999"), (b"3\t50000000\t0\n", "itemID 50000000")]


@pytest.mark.parametrize("line, needle", HUGE_IDS, ids=["user 99999999999", "item 50000000"])
@pytest.mark.parametrize("command", ["stats", "resplit"])
def test_a_huge_id_is_one_error_in_stats_and_resplit(tmp_path, capsys, command, line, needle):
    folder = _dataset(tmp_path / "d", extra=line)
    argv = ["data", command, str(folder)]
    if command == "resplit":
        argv += ["--out", str(tmp_path / "out"), "--name", "new"]
    _one_error(capsys, main(argv), "d.inter, line 26", needle, "far beyond",
               "data import --format inter")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, needle", HUGE_IDS, ids=["user 99999999999", "item 50000000"])
def test_a_huge_id_is_a_validate_error(tmp_path, capsys, line, needle):
    folder = _dataset(tmp_path / "d", extra=line)
    assert main(["data", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    errors = [ln for ln in out.splitlines() if "ERROR:" in ln]
    assert len(errors) == 1 and "line 26" in errors[0] and needle in errors[0], out


@pytest.mark.parametrize("extra, needle", [(b"1\t5\x00\t0\n", "NUL byte"),
                                           ("1\t\u0665\t0\n".encode(), "only ASCII digits")],
                         ids=["NUL", "Arabic-Indic"])
def test_nul_and_non_ascii_digits_are_refused_by_stats(tmp_path, capsys, extra, needle):
    folder = _dataset(tmp_path / "d", extra=extra)
    _one_error(capsys, main(["data", "stats", str(folder)]), "line 26", needle)


def test_wrong_kinds_of_paths(tmp_path, capsys):
    folder = _dataset(tmp_path / "d")
    a_file = tmp_path / "FILE"
    a_file.write_text("x")
    _one_error(capsys, main(["data", "resplit", str(folder), "--out", str(a_file), "--name", "n"]),
               "--out", "exists and is not a folder")
    _one_error(capsys, main(["data", "resplit", str(a_file), "--out", str(tmp_path / "o"),
                             "--name", "n"]), "is a file, not a dataset folder")
    _one_error(capsys, main(["data", "validate", str(a_file)]), "is a file, not a dataset folder")
    _one_error(capsys, main(["data", "stats", str(a_file)]), "is a file, not a dataset folder")
    _one_error(capsys, main(["data", "generate", "--out", str(a_file), "--name", "g"]),
               "--out", "exists and is not a folder")
    _one_error(capsys, main(["data", "generate", "--out", str(a_file / "sub"), "--name", "g"]),
               "is a file, so the folder cannot be created")
    _one_error(capsys, main(["data", "import", str(folder), "--out", str(a_file), "--name", "g"]),
               "--out", "exists and is not a folder")
    assert sorted(os.listdir(tmp_path)) == ["FILE", "d"]


BAD_NAMES = ["x/../../escape", "sub/evil", "..", ".hidden", "", "a\x00b", "caf\u00e9"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
@pytest.mark.parametrize("command", ["generate", "import", "resplit"])
def test_dataset_names_are_plain_names(tmp_path, capsys, command, name):
    folder = _dataset(tmp_path / "src" / "d")
    out = tmp_path / "out" / "data"
    argv = {"generate": ["data", "generate", "--users", "20", "--items", "40"],
            "import": ["data", "import", str(folder)],
            "resplit": ["data", "resplit", str(folder)]}[command]
    _one_error(capsys, main(argv + ["--out", str(out), "--name", name]), "dataset name (--name)",
               "ASCII letters, digits")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--users", "100000000000"], "100000000000 users"),
    (["--items", "5000000000", "--users", "10"], "5000000000 items"),
    (["--size", "clothing", "--image-dim", "10000000"], "feature widths 10000000/384"),
], ids=["users", "items", "image-dim"])
def test_generate_estimates_memory_before_allocating(tmp_path, capsys, monkeypatch, flags, needle):
    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 2**30)
    line = _one_error(capsys, main(["data", "generate", "--out", str(tmp_path), "--name", "g"]
                                   + flags), needle, "of memory, more than 80% of the 8.0 GiB",
                      "lower --users, --items")
    assert "TiB" in line or "GiB" in line
    assert not (tmp_path / "g").exists()


def test_generate_memory_estimate_bounds_the_real_peak():
    # the estimate must not be below what the draw really takes (tracemalloc sees numpy's
    # allocations); measured on a small size so the test stays quick
    import tracemalloc

    from mmrec_plugin.data import simulation

    cfg = simulation.SynthConfig(n_users=600, n_items=400, n_interactions=9000, k=8,
                                 image_dim=64, text_dim=48)
    tracemalloc.start()
    sim = simulation.simulate(cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 8000 < sim.users.size < 10000  # the counts are drawn around the target
    assert simulation.estimate_bytes(cfg) >= peak


@pytest.mark.parametrize("flag, value", [("--users", "\u0663"), ("--users", "1_000"),
                                         ("--noise", "nan"), ("--noise", "inf"),
                                         ("--seed", "-1")])
def test_generate_numbers_are_ascii_and_finite(tmp_path, capsys, flag, value):
    _one_error(capsys, main(["data", "generate", "--out", str(tmp_path), "--name", "g", flag,
                             value]), f"argument {flag}")


def test_resplit_seed_must_not_be_negative(tmp_path, capsys):
    folder = _dataset(tmp_path / "d")
    _one_error(capsys, main(["data", "resplit", str(folder), "--out", str(tmp_path / "o"),
                             "--name", "n", "--seed", "-3"]), "argument --seed")


# -------------------------------------------------------- the remedy: import --format inter
def test_import_inter_remaps_raw_ids(tmp_path, capsys):
    src = tmp_path / "raw"
    src.mkdir()
    # raw ids: users 99999999999 / 7 / 50000000, items 30 / 10 / 20 (integers, far apart)
    lines = ["userID\titemID\tx_label", "99999999999\t30\t0", "7\t10\t0", "7\t30\t0",
             "50000000\t20\t0", "7\t20\t1", "99999999999\t10\t2", "50000000\t30\t1",
             "50000000\t10\t2", "99999999999\t20\t1", "7\t30\t0"]  # the last repeats line 4
    (src / "raw.inter").write_text("\n".join(lines) + "\n")
    feats = np.arange(31 * 2, dtype=np.float32).reshape(31, 2)  # row r = raw item r
    np.save(src / "image_feat.npy", feats)
    np.save(src / "text_feat.npy", feats[:, :1] * 10)
    code = main(["data", "import", str(src), "--format", "inter", "--out", str(tmp_path / "o"),
                 "--name", "clean"])
    out = capsys.readouterr().out
    assert code == 0, out
    folder = tmp_path / "o" / "clean"
    inter = read_inter(folder / "clean.inter")
    # sorted raw ids -> 0..n-1: users 7 -> 0, 50000000 -> 1, 99999999999 -> 2; items 10, 20, 30
    got = sorted(zip(inter.users.tolist(), inter.items.tolist(), inter.labels.tolist()))
    assert got == [(0, 0, 0), (0, 1, 1), (0, 2, 0), (1, 0, 2), (1, 1, 0), (1, 2, 1),
                   (2, 0, 2), (2, 1, 1), (2, 2, 0)]
    assert (folder / "user_ids.tsv").read_text().splitlines() == [
        "newuserID\trawuserID", "0\t7", "1\t50000000", "2\t99999999999"]
    assert (np.load(folder / "image_feat.npy") == feats[[10, 20, 30]]).all()
    assert (np.load(folder / "text_feat.npy") == feats[[10, 20, 30], :1] * 10).all()
    assert "result: OK" in out  # the imported folder validates


def test_import_inter_with_text_ids_and_no_labels(tmp_path, capsys):
    src = tmp_path / "raw"
    src.mkdir()
    users = [f"A{u:03d}" for u in range(8)]
    rows = [(u, f"item-{(k * 3 + j) % 9}") for k, u in enumerate(users) for j in range(5)]
    (src / "raw.inter").write_text("userID\titemID\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
    code = main(["data", "import", str(src), "--out", str(tmp_path / "o"), "--name", "t"])
    assert code == 1  # validate reports the missing feature files
    out = capsys.readouterr().out
    assert "visual feature file not found" in out
    inter = read_inter(tmp_path / "o" / "t" / "t.inter")
    assert (inter.n_users, inter.n_items, len(inter)) == (8, 9, 40)
    # MMRec's rule for 5 interactions: 3 train, 1 valid, 1 test per user
    assert np.bincount(inter.labels, minlength=3).tolist() == [24, 8, 8]
    np.save(src / "image_feat.npy", np.ones((9, 2), np.float32))
    _one_error(capsys, main(["data", "import", str(src), "--out", str(tmp_path / "o"), "--name",
                             "t2"]), "the item ids are text")
