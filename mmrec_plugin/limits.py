"""The limits every command applies to what a user hands it: names, paths, sizes, memory.

One place for the rules (docs/limits.md lists them for users):

- **Names** (:func:`check_name`): a dataset, model, variant or combination name becomes a
  folder or file name, so it must be a plain name: 1 to :data:`MAX_NAME_LENGTH` ASCII
  letters, digits and ``_ . + -``, not starting with ``.`` or ``-`` and without ``..``
  (no ``/``, ``\\``, NUL, spaces or other characters).
- **Paths** (:func:`inside`, :func:`check_output_file`, :func:`check_output_dir`): every
  path the tool writes is resolved (symbolic links included) and must stay inside the
  folder it belongs to; an output that must be a file may not be a folder and vice versa.
- **Ids** (:func:`max_id_allowed`): MMRec counts ``max id + 1`` users and items and sizes
  its tables by that count, so an id column may hold at most
  ``MAX_ID_FACTOR * (distinct ids) + ID_SLACK`` as its largest id + 1; a larger id is
  refused (naming the line) before anything is sized by it.
- **Files read as configuration** (:mod:`mmrec_plugin.yamlio`): regular files of at most
  :data:`MAX_CONFIG_BYTES`, at most :data:`MAX_YAML_NODES` yaml nodes once aliases are
  expanded, nested at most :data:`MAX_YAML_DEPTH` deep.
- **Results files** (``report``, ``analyze``, ``compare``): regular files of at most
  :data:`MAX_RESULTS_BYTES`.
- **Grids**: at most :data:`MAX_COMBINATIONS` combinations unless ``--max-combinations``
  raises it.
- **Memory** (:func:`check_allocation`): an allocation whose size a setting drives is
  estimated first and refused when it exceeds :data:`MEMORY_FRACTION` of the memory
  available (:func:`available_memory`), with the setting named.

This is a floor module: it imports only :mod:`mmrec_plugin.errors`.
"""
from __future__ import annotations

import os
import re
import stat
from typing import Optional, Union

from mmrec_plugin.errors import UserError

__all__ = ["MAX_NAME_LENGTH", "MAX_COMBINATIONS", "MAX_CONFIG_BYTES", "MAX_YAML_NODES",
           "MAX_YAML_DEPTH", "MAX_RESULTS_BYTES", "MAX_ID_FACTOR", "ID_SLACK", "MEMORY_FRACTION", "check_name",
           "inside", "check_output_file", "check_output_dir", "available_memory",
           "check_allocation", "max_id_allowed", "human_bytes"]

PathLike = Union[str, "os.PathLike[str]"]

#: longest accepted name (a file-name component is at most 255 bytes on common file systems;
#: names are combined with prefixes and suffixes such as ``<MODEL>-<DATASET>-<id>.pt``)
MAX_NAME_LENGTH = 100
#: default largest grid a run starts (``--max-combinations N`` raises it)
MAX_COMBINATIONS = 1000
#: largest yaml file (``--config``, dataset and model yaml) read, in bytes
MAX_CONFIG_BYTES = 1 << 20
#: most yaml nodes (scalars, lists, mappings) in one document, every alias counted as the
#: nodes it stands for: a file of nested aliases ("billion laughs") is refused while parsing
MAX_YAML_NODES = 100_000
#: largest results JSON read by ``report``, ``analyze`` and ``compare``, in bytes
MAX_RESULTS_BYTES = 64 << 20
#: deepest nesting of lists / mappings in a yaml document
MAX_YAML_DEPTH = 64
#: an id column may hold ids up to ``MAX_ID_FACTOR * distinct + ID_SLACK - 1``
MAX_ID_FACTOR = 10
ID_SLACK = 1000
#: the largest share of the available memory one estimated allocation may take
MEMORY_FRACTION = 0.8

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def check_name(name, what: str) -> str:
    """``name`` if it is a plain name (see the module docstring), else a UserError naming
    ``what`` (e.g. ``"dataset name (-d)"``) and the accepted form."""
    text = name if isinstance(name, str) else None
    problem = ""
    if text is None:
        problem = f"got a {type(name).__name__}, not a text"
    elif not text:
        problem = "it is empty"
    elif len(text) > MAX_NAME_LENGTH:
        problem = f"it is {len(text)} characters long"
    elif "\x00" in text:
        problem = "it contains a NUL byte"
    elif "/" in text or "\\" in text:
        problem = "it contains a path separator"
    elif ".." in text:
        problem = "it contains '..'"
    elif text[0] in ".-":
        problem = f"it starts with '{text[0]}'"
    elif not _NAME.fullmatch(text):
        bad = next(ch for ch in text if not _NAME.fullmatch(ch))
        problem = f"it contains {bad!r}"
    if problem:
        shown = repr(name if text is None or len(text) <= 60 else text[:60] + "...")
        raise UserError(
            f"{what} {shown}: {problem}; a name is 1 to {MAX_NAME_LENGTH} ASCII letters, digits "
            "and '_', '.', '+', '-', not starting with '.' or '-' and without '..' (it becomes a "
            "folder or file name)")
    return text


def inside(path: PathLike, root: PathLike, what: str) -> str:
    """The resolved ``path`` (``os.path.realpath``), which must lie in the resolved ``root``
    (or be it); else a UserError naming ``what``, the path and the folder."""
    real, base = os.path.realpath(os.fspath(path)), os.path.realpath(os.fspath(root))
    try:
        ok = os.path.commonpath([real, base]) == base
    except ValueError:  # different drives (Windows)
        ok = False
    if not ok:
        raise UserError(f"{what} {os.fspath(path)} resolves to {real}, outside {base}; "
                        "nothing is written outside the folder it belongs to")
    return real


def _first_existing(path: str) -> str:
    """``path`` or its nearest ancestor that exists (lexically, without resolving links)."""
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def check_output_dir(path: PathLike, what: str) -> str:
    """``path`` if it is a folder or can be created as one, else a UserError naming ``what``:
    it exists and is not a folder, or a part of it is a file."""
    p = os.fspath(path)
    if os.path.lexists(p) and not os.path.isdir(p):
        raise UserError(f"{what} {p}: exists and is not a folder; give a folder (it is created "
                        "if missing)")
    anc = _first_existing(p)
    if not os.path.isdir(anc):
        raise UserError(f"{what} {p}: {anc} is a file, so the folder cannot be created there")
    return p


def check_output_file(path: PathLike, what: str) -> str:
    """``path`` if it is a regular file or can be created as one, else a UserError naming
    ``what``: it is a folder (or another kind of file), or its folder cannot be created."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise UserError(f"{what} {p}: is a folder; give a file name")
    if os.path.lexists(p):
        try:
            mode = os.stat(p).st_mode
        except OSError:
            mode = None  # a dangling link: replaced like a missing file
        if mode is not None and not stat.S_ISREG(mode):
            raise UserError(f"{what} {p}: exists and is not a regular file")
    parent = os.path.dirname(os.path.abspath(p))
    anc = _first_existing(parent)
    if not os.path.isdir(anc):
        raise UserError(f"{what} {p}: {anc} is a file, so the file cannot be written there")
    return p


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> Optional[int]:
    """What the process's cgroup still allows (v2 ``memory.max - memory.current``, v1
    ``limit - usage``), or None without a limit."""
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_f) as fh:
                raw = fh.read().strip()
            if raw == "max":
                continue
            limit = int(raw)
            with open(usage_f) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit < 1 << 60:  # v1 reports "no limit" as a huge number
            return max(limit - usage, 0)
    return None


def available_memory() -> Optional[int]:
    """Bytes of memory this process can still get: ``MemAvailable`` of ``/proc/meminfo``
    (else ``sysconf``'s available pages), lowered to what a cgroup limit leaves; None
    where nothing can be read."""
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def check_allocation(nbytes: float, what: str, hint: str = "") -> int:
    """``nbytes`` (an estimate made before allocating) if it fits in :data:`MEMORY_FRACTION`
    of :func:`available_memory`; else a UserError saying what needs how much, what is
    available, and ``hint`` (the setting that drives the size, and how to lower it).
    Does nothing where the available memory cannot be read."""
    nbytes = int(max(nbytes, 0))
    avail = available_memory()
    if avail is not None and nbytes > MEMORY_FRACTION * avail:
        raise UserError(f"{what} needs about {human_bytes(nbytes)} of memory, more than "
                        f"{MEMORY_FRACTION:.0%} of the {human_bytes(avail)} available"
                        + (f"; {hint}" if hint else ""))
    return nbytes


def max_id_allowed(n_distinct: int) -> int:
    """The largest id accepted in a column with ``n_distinct`` distinct ids."""
    return MAX_ID_FACTOR * int(n_distinct) + ID_SLACK - 1
