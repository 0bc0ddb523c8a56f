"""mmrec_plugin.host.files: the one reader of .inter and .npy files, case by case.

Each bad file is one DataError naming the file and (for .inter) the line; the well-formed
files give the ids written, compared with the rows the test wrote."""
import os

import numpy as np
import pytest

from mmrec_plugin import limits
from mmrec_plugin.errors import DataError
from mmrec_plugin.host import files

HEADER = "userID\titemID\tx_label\n"
ROWS = [(u, (u * 3 + j) % 7, (0, 0, 0, 1, 2)[j]) for u in range(6) for j in range(5)]
BODY = "".join(f"{u}\t{i}\t{x}\n" for u, i, x in ROWS)  # 30 lines: lines 2..31


def _write(tmp_path, text, name="d.inter"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(p)


GOOD = [
    ("plain", HEADER + BODY),
    ("crlf", (HEADER + BODY).replace("\n", "\r\n")),
    ("blank lines", HEADER + "\n" + BODY + "\n\n"),
    ("byte-order mark", "\ufeff" + HEADER + BODY),
    ("plus sign and spaces", HEADER + BODY.replace("0\t0\t0", " +0 \t0\t0")),
    ("text column with UTF-8", "userID\treview\titemID\tx_label\n"
     + "".join(f"{u}\tgut \u00fcber alles\t{i}\t{x}\n" for u, i, x in ROWS)),
    ("quoted id", HEADER + BODY.replace("5\t1\t0", '"5"\t1\t0')),
]


@pytest.mark.parametrize("case, text", GOOD, ids=[g[0] for g in GOOD])
def test_well_formed_files_give_the_rows_written(tmp_path, case, text):
    inter = files.read_interactions(_write(tmp_path, text))
    assert list(zip(inter.users.tolist(), inter.items.tolist(), inter.labels.tolist())) == ROWS
    assert inter.users.dtype == np.int64 and inter.labels.dtype == np.int8
    assert (inter.n_users, inter.n_items) == (6, 7)


BIG = 10 * 8 + 999 + 1  # the first item id refused: with it the file has 8 distinct items

BAD = [
    ("NUL after a digit", BODY + "3\t1\x00\t0\n", "line 32: contains a NUL byte"),
    ("NUL alone", BODY + "3\t\x00\t0\n", "line 32: contains a NUL byte"),
    ("Arabic-Indic digit", BODY + "3\t\u0663\t0\n",
     "line 32: column 'itemID' must hold integer ids (only ASCII digits 0-9), got '\u0663'"),
    ("full-width digit", BODY + "\uff13\t1\t0\n", "line 32: column 'userID' must hold integer ids"),
    ("no-break space", BODY + "3\t\u00a01\t0\n", "line 32: column 'itemID' must hold integer ids"),
    ("underscore", BODY + "3\t1_0\t0\n", "line 32: column 'itemID' must hold integer ids, got '1_0'"),
    ("float", BODY + "3\t1.0\t0\n", "line 32: column 'itemID' must hold integer ids, got '1.0'"),
    ("text id", BODY + "3\tabc\t0\n", "line 32: column 'itemID' must hold integer ids, got 'abc'"),
    ("negative id", BODY + "-1\t1\t0\n", "line 32: column 'userID' must be a non-negative id, got -1"),
    ("label 3", BODY + "3\t1\t3\n", "line 32: unknown x_label 3"),
    ("short line", BODY + "3\t1\n", "line 32: 2 field(s), expected 3"),
    ("beyond 64 bits", BODY + "3\t" + "9" * 25 + "\t0\n", "line 32: column 'itemID'"),
    ("user id 99999999999", BODY + "99999999999\t1\t0\n",
     "line 32: userID 99999999999 is far beyond the 7 distinct userID value(s)"),
    ("user id 50000000", "50000000\t1\t0\n" + BODY,
     "line 2: userID 50000000 is far beyond the 7 distinct userID value(s)"),
    ("item id just past the rule", BODY + f"3\t{BIG}\t0\n",
     f"line 32: itemID {BIG} is far beyond the 8 distinct itemID value(s) of the file "
     f"(accepted: ids up to {10 * 8 + 999}"),
    ("undecodable byte", BODY.encode() + b"3\t\xff\t0\n", "line 32: not a UTF-8 text file"),
]


@pytest.mark.parametrize("case, body, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_lines_are_one_error_naming_file_and_line(tmp_path, case, body, needle):
    head = HEADER.encode() if isinstance(body, bytes) else HEADER
    path = _write(tmp_path, head + body)
    with pytest.raises(DataError) as e:
        files.read_interactions(path)
    msg = str(e.value)
    assert msg.startswith(path) and needle in msg, msg
    assert "\n" not in msg


def test_the_id_error_names_the_remedy_and_the_rule(tmp_path):
    path = _write(tmp_path, HEADER + BODY + "99999999999\t1\t0\n")
    with pytest.raises(DataError) as e:
        files.read_interactions(path)
    assert "mmrec-plugin data import --format inter" in str(e.value)
    assert f"{limits.MAX_ID_FACTOR} x distinct + {limits.ID_SLACK - 1}" in str(e.value)


def test_ids_within_the_rule_are_accepted(tmp_path):
    # 7 distinct items: the largest accepted id is 10 * 7 + 999 = 1069 (gaps are MMRec's business)
    path = _write(tmp_path, HEADER + BODY.replace("\t6\t", "\t1069\t"))
    inter = files.read_interactions(path)
    assert inter.n_items == 1070


def test_the_id_rule_is_checked_before_anything_is_sized_by_the_largest_id(tmp_path, monkeypatch):
    real_zeros = np.zeros

    def guarded_zeros(shape, *a, **k):
        n = shape if isinstance(shape, int) else int(np.prod(shape))
        assert n < 10**6, f"np.zeros({shape}) sized by an id"
        return real_zeros(shape, *a, **k)

    monkeypatch.setattr(files.np, "zeros", guarded_zeros)
    path = _write(tmp_path, HEADER + BODY + "99999999999\t1\t0\n")
    with pytest.raises(DataError, match="far beyond"):
        files.read_interactions(path)


FILE_KINDS = [
    ("missing", lambda p: None, "interaction file .* not found"),
    ("folder", lambda p: os.mkdir(p), "is a folder, not a file"),
    ("fifo", lambda p: os.mkfifo(p), r"is not a regular file \(a pipe"),  # must not block
    ("empty", lambda p: open(p, "w").close(), "is empty: expected a header line"),
    ("header only", lambda p: open(p, "w").write(HEADER), "has a header but no interactions"),
    ("missing column", lambda p: open(p, "w").write("userID\titemID\n0\t0\n"),
     r"line 1: column 'x_label' not found in the header \['userID', 'itemID'\]"),
]


@pytest.mark.parametrize("case, make, pattern", FILE_KINDS, ids=[c[0] for c in FILE_KINDS])
def test_file_kinds(tmp_path, case, make, pattern):
    path = str(tmp_path / "d.inter")
    make(path)
    with pytest.raises(DataError, match=pattern):
        files.read_interactions(path)


def test_separator_rule():
    assert files.separator("\\t") == "\t" and files.separator(",") == ","
    for bad in ("", "ab", "\n", None, 3):
        with pytest.raises(DataError, match="field_separator"):
            files.separator(bad)


def test_duplicate_pairs_and_gaps():
    users = np.array([0, 0, 1, 2, 1])
    items = np.array([1, 2, 1, 0, 1])
    assert files.duplicate_pairs(users, items) == (1, 2, 4)  # pair (1, 1) in rows 2 and 4
    assert files.duplicate_pairs(users[:4], items[:4]) is None
    msg = files.id_gaps(np.array([0, 3, 3]), "user")
    assert "2 of 0..3 have no interaction (first: [1, 2])" in msg
    assert files.id_gaps(np.array([1, 0, 2]), "item") is None


# ----------------------------------------------------------------------------- features
def _npy(tmp_path, arr, name="f.npy", **kw):
    p = tmp_path / name
    np.save(p, arr, **kw)
    return str(p)


def test_features_load_as_float32_and_check_in_blocks(tmp_path, monkeypatch):
    arr = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    got = files.load_features(_npy(tmp_path, arr), 5)
    assert got.dtype == np.float32 and got.flags.writeable and (got == arr).all()
    fortran = files.load_features(_npy(tmp_path, np.asfortranarray(arr), "g.npy"), 5)
    assert (fortran == arr).all()
    monkeypatch.setattr(files, "_ROWS", 2)  # blocks of two rows: the NaN is in the third block
    bad = arr.copy()
    bad[4, 1] = np.nan
    with pytest.raises(DataError, match=r"1 row\(s\) contain NaN or inf \(first: row 4\)"):
        files.load_features(_npy(tmp_path, bad, "h.npy"), 5)


def _zero_byte(tmp_path):
    p = tmp_path / "f.npy"
    p.write_bytes(b"")
    return str(p)


def _npz(tmp_path):
    p = tmp_path / "f.npz"
    np.savez(p, a=np.ones((5, 2)))
    os.replace(p, tmp_path / "f.npy")
    return str(tmp_path / "f.npy")


def _truncated(tmp_path):
    p = _npy(tmp_path, np.ones((5, 4), np.float32))
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-8])
    return p


def _text(tmp_path):
    p = tmp_path / "f.npy"
    p.write_text("1 2 3\n4 5 6\n")
    return str(p)


def _huge_header(tmp_path):
    # a valid header announcing 10^12 rows, and no data: refused without allocating
    p = _npy(tmp_path, np.ones((1, 4), np.float32))
    data = open(p, "rb").read().replace(b"(1, 4)", b"(1000000000000, 4)")
    open(p, "wb").write(data)
    return p


FEATURES = [
    ("zero bytes", _zero_byte, "the file is empty (0 bytes)"),
    ("npz saved as npy", _npz, "a zip archive (an .npz saved under a .npy name?)"),
    ("object array", lambda t: _npy(t, np.array([[object()] * 2] * 5, dtype=object),
                                    allow_pickle=True), "holds Python objects"),
    ("truncated", _truncated, "truncated"),
    ("text file", _text, "not a .npy file"),
    ("huge header", _huge_header, "truncated: the header announces shape (1000000000000, 4)"),
    ("strings", lambda t: _npy(t, np.array([["a"] * 2] * 5)), "dtype <U1; expected real numbers"),
    ("complex", lambda t: _npy(t, np.ones((5, 2), np.complex64)), "dtype complex64"),
    ("1-d", lambda t: _npy(t, np.ones(5, np.float32)), "shape (5,), expected (5, d)"),
    ("no columns", lambda t: _npy(t, np.ones((5, 0), np.float32)), "shape (5, 0)"),
    ("wrong rows", lambda t: _npy(t, np.ones((6, 2), np.float32)),
     "6 rows, but the dataset has 5 items"),
    ("inf", lambda t: _npy(t, np.full((5, 2), np.inf, np.float32)), "5 row(s) contain NaN or inf"),
]


@pytest.mark.parametrize("case, make, needle", FEATURES, ids=[f[0] for f in FEATURES])
def test_bad_feature_files_are_one_error_naming_the_file(tmp_path, case, make, needle):
    path = make(tmp_path)
    with pytest.raises(DataError) as e:
        files.load_features(path, 5)
    assert str(e.value).startswith(path) or str(e.value).startswith(f"feature file {path}")
    assert needle in str(e.value), str(e.value)


def test_feature_copy_is_checked_against_memory(tmp_path, monkeypatch):
    path = _npy(tmp_path, np.ones((5, 1000), np.float32))
    monkeypatch.setattr(limits, "available_memory", lambda: 10_000)
    with pytest.raises(Exception, match=r"needs about 19.5 KiB of memory"):
        files.load_features(path, 5)
