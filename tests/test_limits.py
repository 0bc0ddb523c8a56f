"""mmrec_plugin.limits: plain names, paths kept inside their folder, output kinds, memory."""
import os

import pytest

from mmrec_plugin import limits
from mmrec_plugin.errors import UserError

GOOD_NAMES = ["baby", "demo", "BRMRS", "FREEDOM_BR", "synth-baby", "v1.2", "a+b", "x" * 100,
              "0", "d.e"]
BAD_NAMES = [
    ("", "it is empty"),
    ("x" * 101, "101 characters long"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("x/../../escape", "path separator"),
    ("..", "'..'"),
    ("a..b", "'..'"),
    (".hidden", "starts with '.'"),
    ("-rf", "starts with '-'"),
    ("a\x00b", "NUL byte"),
    ("a b", "contains ' '"),
    ("caf\u00e9", "contains '\u00e9'"),
    ("\u0663", "contains '\u0663'"),  # an Arabic-Indic digit is not an ASCII digit
    ("a\n", "contains '\\n'"),
    (5, "got a int"),
    (None, "got a NoneType"),
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_plain_names_pass(name):
    assert limits.check_name(name, "dataset name") == name


@pytest.mark.parametrize("name, why", BAD_NAMES, ids=[repr(b[0])[:20] for b in BAD_NAMES])
def test_other_names_are_refused_naming_the_option_and_the_rule(name, why):
    with pytest.raises(UserError) as e:
        limits.check_name(name, "dataset name (-d)")
    msg = str(e.value)
    assert msg.startswith("dataset name (-d) ") and why in msg, msg
    assert "ASCII letters, digits and '_', '.', '+', '-'" in msg
    assert "\n" not in msg


def test_inside_accepts_the_folder_and_below_and_resolves_links(tmp_path):
    root = tmp_path / "res"
    (root / "a").mkdir(parents=True)
    assert limits.inside(root / "a" / "f.json", root, "x") == str(root / "a" / "f.json")
    assert limits.inside(root, root, "x") == str(root)
    assert limits.inside(root / "a" / ".." / "b", root, "x") == str(root / "b")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UserError, match="outside"):
        limits.inside(root / "link" / "f.json", root, "summary")  # a link out of the folder


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "../res2/x"])
def test_inside_refuses_paths_that_leave_the_folder(tmp_path, rel):
    root = tmp_path / "res"
    root.mkdir()
    with pytest.raises(UserError) as e:
        limits.inside(os.path.join(str(root), rel), root, "summary file")
    assert str(e.value).startswith("summary file ") and str(root) in str(e.value)


def test_output_kinds(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    d = tmp_path / "dir"
    d.mkdir()
    assert limits.check_output_dir(d, "--out") == str(d)
    assert limits.check_output_dir(tmp_path / "new" / "deeper", "--out")  # created later
    with pytest.raises(UserError, match="--out .*file.txt: exists and is not a folder"):
        limits.check_output_dir(f, "--out")
    with pytest.raises(UserError, match="is a file, so the folder cannot be created"):
        limits.check_output_dir(f / "sub", "--out")
    assert limits.check_output_file(f, "--out") == str(f)
    assert limits.check_output_file(d / "new.json", "--out")
    with pytest.raises(UserError, match="--out .*dir: is a folder; give a file name"):
        limits.check_output_file(d, "--out")
    with pytest.raises(UserError, match="is a file, so the file cannot be written"):
        limits.check_output_file(f / "x.json", "--out")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        limits.check_output_file(fifo, "--out")


def test_available_memory_reads_meminfo():
    with open("/proc/meminfo") as fh:
        info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in fh if ln.split()[1:]}
    got = limits.available_memory()
    assert got is not None and 0 < got <= info["MemTotal"]


def test_check_allocation_uses_the_documented_fraction(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 1000 * 2**20)
    assert limits.check_allocation(800 * 2**20, "x") == 800 * 2**20  # exactly 80 %: allowed
    with pytest.raises(UserError) as e:
        limits.check_allocation(800 * 2**20 + 1, "embeddings of 10 x 10", "lower --embedding_size")
    msg = str(e.value)
    assert msg == ("embeddings of 10 x 10 needs about 800.0 MiB of memory, more than 80% of the "
                   "1000.0 MiB available; lower --embedding_size")
    monkeypatch.setattr(limits, "available_memory", lambda: None)
    assert limits.check_allocation(10**18, "x") == 10**18  # nothing known: nothing refused


def test_id_rule():
    assert limits.max_id_allowed(0) == 999
    assert limits.max_id_allowed(19445) == 10 * 19445 + 999


def test_human_bytes():
    assert [limits.human_bytes(n) for n in (5, 1536, 3 * 2**30)] == ["5 B", "1.5 KiB", "3.0 GiB"]
