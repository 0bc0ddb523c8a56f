"""mmrec_plugin.utils: atomic writes keep the old file on failure and leave no temp file."""
import os

import pytest

from mmrec_plugin.utils import atomic_path, atomic_write_text


def test_atomic_path_replaces_on_success(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(str(p), "old")
    with atomic_path(str(p)) as tmp:
        with open(tmp, "w") as fh:
            fh.write("new")
        assert p.read_text() == "old"  # not visible before the block ends
    assert p.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(str(p), "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(p)) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise KeyboardInterrupt
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]
