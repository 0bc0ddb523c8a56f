"""store.digest is typed: values of different kinds never share a key."""
import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_plugin.store import digest


def test_values_of_different_types_differ():
    values = [1, "1", True, b"1", 1.0, None, "True", "1.0", 0, False, "", b"", [], [1], ("1",), {"a": 1}, {"a": "1"}]
    keys = [digest(v) for v in values]
    assert len(set(keys)) == len(values), [(v, k[:8]) for v, k in zip(values, keys)]


@pytest.mark.parametrize("scalar,python", [
    (np.int64(1), 1), (np.int32(1), 1), (np.float64(0.5), 0.5), (np.float32(0.5), 0.5), (np.bool_(True), True),
])
def test_numpy_scalars_count_as_the_python_value_they_hold(scalar, python):
    assert digest(scalar) == digest(python)
    assert digest(scalar) != digest(str(python))


def test_boundaries_between_parts_are_kept():
    assert digest("ab", "c") != digest("a", "bc")
    assert digest(["ab"], "c") != digest(["a"], "bc")
    assert digest(12, 3) != digest(1, 23)
    assert digest("a") == digest("a") and digest(b"a") == digest(bytearray(b"a")) == digest(memoryview(b"a"))


def test_arrays_and_sparse():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert digest(a) == digest(a.copy()) and digest(a) != digest(a.astype(np.float64))
    assert digest(a) != digest(a.reshape(3, 2))
    m = sp.csr_matrix(a)
    assert digest(m) == digest(sp.coo_matrix(a)) and digest(m) != digest(a)
    with pytest.raises(TypeError, match="cannot hash"):
        digest(object())
