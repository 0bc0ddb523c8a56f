"""`run` (RecDataset through the host's reader) and `mmrec-plugin data validate` accept and
refuse the same .inter files: each case is fed to both, and the expected verdict is written
down per case (so a reader that accepts everything, or refuses everything, fails)."""
import numpy as np
import pytest

from mmrec_plugin.cli import main
from mmrec_plugin.errors import DataError
from mmrec_plugin.host.dataset import RecDataset

HEADER = "userID\titemID\tx_label\n"
# 5 users x 4 items each (items u..u+3 mod 6): 2 train, 1 valid, 1 test per user
ROWS = [(u, (u + j) % 6, (0, 0, 1, 2)[j]) for u in range(5) for j in range(4)]
BODY = "".join(f"{u}\t{i}\t{x}\n" for u, i, x in ROWS)

# (case, .inter text, accepted?)
CASES = [
    ("good", HEADER + BODY, True),
    ("crlf and blank lines", (HEADER + "\n" + BODY + "\n").replace("\n", "\r\n"), True),
    ("extra columns in another order", "rating\titemID\tx_label\tuserID\n"
     + "".join(f"5\t{i}\t{x}\t{u}\n" for u, i, x in ROWS), True),
    ("user id gap (warning only)", HEADER + BODY.replace("4\t", "7\t"), True),
    ("cold user (warning only)", HEADER + BODY + "9\t0\t2\n", True),
    ("id at the limit", HEADER + BODY + "999\t0\t1\n", True),
    ("NUL byte in an id", HEADER + BODY + "1\t5\x00\t0\n", False),
    ("Arabic-Indic digit", HEADER + BODY + "1\t\u0665\t0\n", False),
    ("user id 99999999999", HEADER + BODY + "99999999999\t0\t0\n", False),
    ("user id 50000000", HEADER + BODY + "50000000\t0\t0\n", False),
    ("negative id", HEADER + BODY + "-2\t0\t0\n", False),
    ("text id", HEADER + BODY + "u7\t0\t0\n", False),
    ("float label", HEADER + BODY + "1\t5\t0.0\n", False),
    ("label 3", HEADER + BODY + "1\t5\t3\n", False),
    ("short line", HEADER + BODY + "1\n", False),
    ("duplicate pair", HEADER + BODY + "0\t0\t2\n", False),
    ("no valid split", HEADER + BODY.replace("\t1\n", "\t0\n"), False),
    ("missing label column", "userID\titemID\n" + "".join(f"{u}\t{i}\n" for u, i, _ in ROWS),
     False),
    ("header only", HEADER, False),
    ("undecodable byte", HEADER + BODY + "1\t\udcff\t0\n", False),
]


def _dataset(root, text):
    folder = root / "d"
    folder.mkdir()
    data = text.encode("utf-8", "surrogateescape")
    (folder / "d.inter").write_bytes(data)
    n_items = 6
    for line in text.splitlines()[1:]:  # features sized to whatever the file's items are
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1].isdigit() and fields[1].isascii():
            n_items = max(n_items, int(fields[1]) + 1)
    np.save(folder / "image_feat.npy", np.ones((n_items, 3), np.float32))
    np.save(folder / "text_feat.npy", np.ones((n_items, 2), np.float32))
    return folder


def _run_accepts(root) -> bool:
    cfg = {"data_path": str(root), "dataset": "d", "USER_ID_FIELD": "userID",
           "ITEM_ID_FIELD": "itemID", "field_separator": "\t"}
    try:
        RecDataset(cfg).split()
    except DataError:
        return False
    return True


def _validate_accepts(folder, capsys) -> bool:
    code = main(["data", "validate", str(folder)])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in out + err, out + err
    if code == 1:
        assert "ERROR:" in out
    return code == 0


@pytest.mark.parametrize("case, text, accepted", CASES, ids=[c[0] for c in CASES])
def test_run_and_validate_agree(tmp_path, capsys, case, text, accepted):
    folder = _dataset(tmp_path, text)
    assert _validate_accepts(folder, capsys) is accepted  # first: main() sets up logging
    assert _run_accepts(tmp_path) is accepted
