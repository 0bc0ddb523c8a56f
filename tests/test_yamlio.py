"""mmrec_plugin.yamlio: safe yaml with MMRec's floats, size/alias/nesting limits, file kinds."""
import os

import pytest

from mmrec_plugin import limits, yamlio
from mmrec_plugin.errors import ConfigError, DataError


def _laughs(levels, width=9):
    """A 'billion laughs' document: level j is a list of ``width`` aliases of level j - 1."""
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for j in range(1, levels):
        lines.append(f"a{j}: &a{j} [" + ",".join([f"*a{j - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def test_mmrec_float_rule_and_plain_values(tmp_path):
    p = _write(tmp_path, "lr: 1e-4\nbig: 1E5\nn: 3\nok: true\ngrid: [1, 2.5]\nname: baby\n")
    assert yamlio.load_yaml(p) == {"lr": 1e-4, "big": 1e5, "n": 3, "ok": True,
                                   "grid": [1, 2.5], "name": "baby"}
    assert isinstance(yamlio.load_yaml(p)["lr"], float)
    assert yamlio.load_yaml(_write(tmp_path, "")) == {}


def test_a_few_aliases_are_fine(tmp_path):
    p = _write(tmp_path, "base: &b {x: 1}\nother: *b\nmerged:\n  <<: *b\n  y: 2\n")
    assert yamlio.load_yaml(p) == {"base": {"x": 1}, "other": {"x": 1}, "merged": {"x": 1, "y": 2}}


def test_billion_laughs_is_refused_while_parsing(tmp_path):
    text = _laughs(9)  # 9^9 ~ 3.9e8 values from about 400 bytes
    assert len(text) < 500
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        yamlio.load_yaml(p)
    msg = str(e.value)
    assert msg.startswith(p + ", line ") and f"more than {limits.MAX_YAML_NODES} yaml values" in msg
    assert "lol" not in msg and len(msg) < 300  # the value is never printed


def test_the_node_limit_counts_expanded_aliases_exactly(tmp_path, monkeypatch):
    # a0 holds 3 scalars (4 nodes with the list), a1 two aliases of it (1 + 2 * 4 = 9 nodes);
    # the keys a0, a1 and the top mapping add 3: 4 + 9 + 3 = 16 nodes in all
    text = "a0: &x [1, 2, 3]\na1: [*x, *x]\n"
    monkeypatch.setattr(limits, "MAX_YAML_NODES", 16)
    assert yamlio.parse_text(text, "t") == {"a0": [1, 2, 3], "a1": [[1, 2, 3], [1, 2, 3]]}
    monkeypatch.setattr(limits, "MAX_YAML_NODES", 15)
    with pytest.raises(ConfigError, match="more than 15 yaml values"):
        yamlio.parse_text(text, "t")


def test_recursive_alias_and_deep_nesting(tmp_path):
    with pytest.raises(ConfigError, match="recursive alias"):
        yamlio.load_yaml(_write(tmp_path, "a: &r [1, *r]\n"))
    deep = "a: " + "[" * (limits.MAX_YAML_DEPTH + 5) + "]" * (limits.MAX_YAML_DEPTH + 5) + "\n"
    with pytest.raises(ConfigError, match=f"nested more than {limits.MAX_YAML_DEPTH} deep"):
        yamlio.load_yaml(_write(tmp_path, deep))
    fine = "a: " + "[" * 10 + "1" + "]" * 10 + "\n"
    assert yamlio.load_yaml(_write(tmp_path, fine))["a"] == [[[[[[[[[[1]]]]]]]]]]


def test_file_kinds_size_and_encoding(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    with pytest.raises(ConfigError, match="is not a regular file"):
        yamlio.load_yaml(str(fifo))
    with pytest.raises(ConfigError, match="is a folder"):
        yamlio.load_yaml(str(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        yamlio.load_yaml(str(tmp_path / "nope.yaml"))
    big = _write(tmp_path, b"a: 1\n" + b"#" * limits.MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match=f"at most {limits.MAX_CONFIG_BYTES} are read"):
        yamlio.load_yaml(big)
    bad = _write(tmp_path, b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"line 2: not a UTF-8 text file"):
        yamlio.load_yaml(bad)
    with pytest.raises(ConfigError, match=r"line 3: invalid YAML"):
        yamlio.load_yaml(_write(tmp_path, "a: 1\nb: [1, 2\nc: 3\n"))
    with pytest.raises(ConfigError, match="expected a mapping of key: value, got a list"):
        yamlio.load_yaml(_write(tmp_path, "- 1\n- 2\n"))
    assert yamlio.load_yaml(_write(tmp_path, b"\xef\xbb\xbfa: 1\n")) == {"a": 1}  # BOM


def test_the_error_class_is_chosen_by_the_caller(tmp_path):
    with pytest.raises(DataError):
        yamlio.load_yaml(str(tmp_path / "nope.yaml"), "dataset yaml", error=DataError)


def test_parse_value():
    assert yamlio.parse_value("1e-4") == 1e-4
    assert yamlio.parse_value("[1, 2]") == [1, 2]
    assert yamlio.parse_value("{a: 1}") == {"a": 1}
    assert yamlio.parse_value("baby") == "baby"
    assert yamlio.parse_value("a: b: c") == "a: b: c"  # not yaml: kept as text
    with pytest.raises(ConfigError) as e:
        yamlio.parse_value(_laughs(9).replace("\n", ", ").join("{}"), "--reg_weight")
    assert str(e.value).startswith("--reg_weight, line 1: more than")
    with pytest.raises(ConfigError, match="--x, line 1: alias"):
        yamlio.parse_value("&a [*a]", "--x")
