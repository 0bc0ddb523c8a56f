"""Reading yaml safely: config files and command-line values, with bounded time and memory.

:func:`load_yaml` reads a yaml mapping from a file; :func:`parse_value` reads one
command-line value. Both use yaml's safe loader (plain data only, no Python objects) with
MMRec's float rule (``1e-4`` and ``1E5`` are floats, as in MMRec's config loader) and
refuse, as a :class:`~mmrec_plugin.errors.ConfigError` naming the file and line:

- anything but a regular file (a folder, a fifo, a device; checked before opening, so a
  fifo does not block), a file over :data:`~mmrec_plugin.limits.MAX_CONFIG_BYTES`, a file
  that is not UTF-8 text;
- a document of more than :data:`~mmrec_plugin.limits.MAX_YAML_NODES` nodes, every alias
  counted as the nodes it stands for (a few hundred bytes of nested aliases, "billion
  laughs", would stand for 10^9 values), a recursive alias, or lists/mappings nested deeper
  than :data:`~mmrec_plugin.limits.MAX_YAML_DEPTH`. These are found while parsing, before
  any value is built; the message never prints the value.

This is a floor module: it imports only :mod:`mmrec_plugin.errors` and :mod:`mmrec_plugin.limits`.
"""
from __future__ import annotations

import os
import re
import stat
from typing import Any, Dict, Optional, Type

import yaml
from yaml.events import AliasEvent

from mmrec_plugin import limits
from mmrec_plugin.errors import ConfigError, UserError

__all__ = ["load_yaml", "parse_value", "parse_text", "read_limited", "stat_regular"]


class _Limit(Exception):
    """A limit hit while composing; carries the message and the yaml mark."""

    def __init__(self, message: str, mark) -> None:
        super().__init__(message)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` / ``1E5`` as floats (MMRec's rule) and counts
    the nodes of the document (aliases expanded) and its nesting while composing it."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > limits.MAX_YAML_NODES:
            raise _Limit(f"more than {limits.MAX_YAML_NODES} yaml values once aliases are "
                         "expanded (nested aliases?); this is refused without building them",
                         mark)

    def compose_node(self, parent, index):  # noqa: D102 (yaml's composer API)
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = getattr(target, "_mmrec_size", None)
                if size is None:
                    raise _Limit(f"alias *{event.anchor} refers to a value that contains it "
                                 "(a recursive alias)", event.start_mark)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, event.start_mark)
        self._depth += 1
        if self._depth > limits.MAX_YAML_DEPTH:
            raise _Limit(f"lists or mappings nested more than {limits.MAX_YAML_DEPTH} deep",
                         event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(c._mmrec_size for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(k._mmrec_size + v._mmrec_size for k, v in node.value)
        else:
            size = 1
        node._mmrec_size = size
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _where(mark) -> str:
    return f", line {mark.line + 1}" if mark is not None else ""


_INVALID = object()


def parse_text(text: str, source: str, error: Type[UserError] = ConfigError) -> Any:
    """``text`` parsed as one yaml document (see the module docstring for the limits).

    Raises:
        ``error``: invalid yaml or a limit, the message starting with ``source`` and the line.
    """
    return _parse(text, source, error, invalid_ok=False)


def _parse(text: str, source: str, error: Type[UserError], invalid_ok: bool) -> Any:
    if len(text.encode("utf-8", "surrogatepass")) > limits.MAX_CONFIG_BYTES:
        raise error(f"{source}: longer than {limits.MAX_CONFIG_BYTES} bytes; that is more than "
                    "a yaml file of settings needs")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except _Limit as exc:
        raise error(f"{source}{_where(exc.mark)}: {exc}") from None
    except yaml.YAMLError as exc:
        if invalid_ok:
            return _INVALID
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{source}{_where(mark)}: invalid YAML ({problem})") from None
    except RecursionError:  # pragma: no cover (the depth limit comes first)
        raise error(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()


def stat_regular(path: str, what: str, error: Type[UserError], expected: str = "") -> os.stat_result:
    """``os.stat(path)`` of a regular file, checked before anything opens it; else ``error``
    naming ``what`` and the path: not found, unreadable, a folder, or a pipe, device or socket
    (``expected`` is appended to the last two messages)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path} is a folder{expected or ', not a file'}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is not a regular file (a pipe, device or socket){expected}")
    return st


def read_limited(path: str, what: str, max_bytes: int,
                 error: Type[UserError] = ConfigError) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    The file's kind is checked with ``stat`` before it is opened and again on the open
    descriptor (opened non-blocking), so a fifo or device never blocks the reader.

    Raises:
        ``error``: missing, a folder, not a regular file, too large, or unreadable (named
        ``what``, e.g. ``"config file"``).
    """
    st = stat_regular(path, what, error, "; expected a yaml file of key: value")
    if st.st_size > max_bytes:
        raise error(f"{what} {path} is {st.st_size} bytes; at most {max_bytes} are read "
                    f"({limits.human_bytes(max_bytes)})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{what} {path} is not a regular file; expected a yaml file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise error(f"{what} {path} grew past {max_bytes} bytes while being read")
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def decode_utf8(data: bytes, path: str, error: Type[UserError] = ConfigError,
                expected: str = "a yaml file of key: value") -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped), else ``error`` naming
    ``path`` and the line of the first undecodable byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{path}, line {line}: not a UTF-8 text file (undecodable byte at offset "
                    f"{exc.start}); expected {expected}") from None


def load_yaml(path: str, what: str = "config file",
              error: Type[UserError] = ConfigError) -> Dict[str, Any]:
    """The mapping in the yaml file ``path`` (an empty file gives ``{}``).

    Args:
        path: the file.
        what: how messages name it (``"config file"``, ``"dataset yaml"``).
        error: the UserError subclass raised (ConfigError; DataError for dataset files).

    Raises:
        ``error``: not a regular file, over the size limit, not UTF-8, invalid yaml, over a
        node or nesting limit (see the module docstring), or not a mapping; each names the
        file and, where it applies, the line.
    """
    path = os.fspath(path)
    text = decode_utf8(read_limited(path, what, limits.MAX_CONFIG_BYTES, error), path, error)
    data = parse_text(text, path, error)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of key: value, got a {type(data).__name__}")
    return data


def parse_value(text: str, what: Optional[str] = None) -> Any:
    """A command-line value parsed as yaml (``"[1, 2]"`` -> list, ``"1e-4"`` -> float).

    Text that is not valid yaml is kept as the string itself. A value over the limits of
    :func:`parse_text` (size, aliases, nesting) is a ConfigError naming ``what`` (e.g.
    ``"--learning_rate"``).
    """
    value = _parse(text, what or "command-line value", ConfigError, invalid_ok=True)
    return text if value is _INVALID else value
