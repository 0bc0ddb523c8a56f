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


def test_tune_allocator_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    import ctypes
    import sys

    from mmrec_plugin.utils import tune_allocator

    monkeypatch.setenv("MMREC_PLUGIN_TUNE_MALLOC", "0")
    assert tune_allocator() is False
    monkeypatch.delenv("MMREC_PLUGIN_TUNE_MALLOC")
    try:
        has_mallopt = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallopt")
    except OSError:
        has_mallopt = False
    assert tune_allocator() is has_mallopt
    assert tune_allocator() is has_mallopt  # idempotent


def test_has_csr_sum_kernel_matches_torch_version():
    import torch

    from mmrec_plugin.sparse import has_csr_sum_kernel

    major = int(torch.__version__.split(".")[0])
    assert has_csr_sum_kernel() is (major >= 2)


@pytest.mark.parametrize("kind,value", [
    (float, float("nan")), (float, float("inf")), (float, float("-inf")), (int, float("inf")),
    (int, float("nan")),
])
def test_check_value_rejects_nan_and_inf(kind, value):
    """The one typed config check refuses non-finite numbers (``--reg_weight .nan`` would
    otherwise train and be recorded as null), naming the key; finite values pass."""
    from mmrec_plugin.errors import ConfigError
    from mmrec_plugin.utils import check_value

    with pytest.raises(ConfigError, match=r"config key 'w' must be (a finite number|an integer)"):
        check_value("w", value, kind, ge=0)
    assert check_value("w", 2, kind, ge=0) == 2 and isinstance(check_value("w", 2, kind), kind)

