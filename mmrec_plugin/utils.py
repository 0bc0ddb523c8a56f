"""Small helpers shared by the rooms: checking config values, JSON-safe values, atomic file
writes, threads."""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import tempfile
from typing import Any, Iterator

from mmrec_plugin.errors import ConfigError

__all__ = ["cfg_get", "check_value", "jsonable", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "umask", "file_mode", "default_threads", "set_threads",
           "tune_allocator"]


def cfg_get(config, key: str, default: Any = None) -> Any:
    """``config[key]`` if present and not None, else ``default``.

    Works for plain dicts, the host's :class:`~mmrec_plugin.host.config.Config` (which raises
    for a missing key) and MMRec's Config (which returns None for one).
    """
    try:
        if key in config:
            value = config[key]
            return default if value is None else value
    except (KeyError, TypeError):
        pass
    return default


def check_value(key: str, value: Any, kind: type, ge=None, gt=None, le=None, lt=None,
                choices=None, owner: str = "") -> Any:
    """``value`` as ``kind`` (int, float, bool or str) within the bounds / ``choices``, else a
    ConfigError naming ``key``, the value and what is accepted (the one typed check of config
    values, used by the host's models and the method's config). A bool is never a number,
    a number never a bool, an int must be integral, a number must be finite (NaN and inf
    are rejected: ``--reg_weight .nan`` would train and be recorded as null)."""
    prefix = f"{owner}: " if owner else ""
    if kind is bool:
        try:
            import numpy as np
            is_bool = isinstance(value, (bool, np.bool_))
        except ImportError:  # pragma: no cover
            is_bool = isinstance(value, bool)
        if not is_bool:
            raise ConfigError(f"{prefix}config key '{key}' must be True or False, got {value!r}")
        return bool(value)
    if kind is str:
        if not isinstance(value, str) or (choices is not None and value not in choices):
            from mmrec_plugin.errors import did_you_mean

            allowed = f"one of {', '.join(choices)}" if choices is not None else "a string"
            raise ConfigError(f"{prefix}config key '{key}' must be {allowed}, got {value!r}"
                              f"{did_you_mean(str(value), choices or ())}")
        return value
    ok = not isinstance(value, (bool, list, tuple, dict, str))
    if ok:
        try:
            conv = kind(value)
            ok = math.isfinite(conv) if kind is float else conv == value
        except (TypeError, ValueError, OverflowError):
            ok = False
    what = "an integer" if kind is int else "a finite number"
    bounds = [f">= {ge}" if ge is not None else "", f"> {gt}" if gt is not None else "",
              f"<= {le}" if le is not None else "", f"< {lt}" if lt is not None else ""]
    bounds = [b for b in bounds if b]
    if ok:
        ok = not ((ge is not None and conv < ge) or (gt is not None and conv <= gt)
                  or (le is not None and conv > le) or (lt is not None and conv >= lt))
    if not ok:
        extra = " " + " and ".join(bounds) if bounds else ""
        hint = " (a list is a grid: run it through a grid search)" if isinstance(value, (list, tuple)) else ""
        if isinstance(value, float) and not math.isfinite(value):
            hint = " (NaN and inf are not settings)"
        raise ConfigError(f"{prefix}config key '{key}' must be {what}{extra}, got {value!r}{hint}")
    return conv


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tensors, devices and tuples made JSON-safe."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):
        return obj.detach().cpu().tolist()
    return str(obj)


def umask() -> int:
    """The process's file-creation mask (from /proc where it can be read without changing it;
    elsewhere by setting and restoring it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created file gets from ``open()``: ``0o666`` less the umask."""
    return 0o666 & ~umask()


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically
    (``os.replace``), on any error (Ctrl-C included) it is removed. A reader sees the old file
    or the new one, never a partial one. The file gets the mode of a newly created one
    (:func:`file_mode`: the umask applies, as for other tools), not mkstemp's 0600.
    Use: ``with atomic_path(p) as tmp: save(tmp)``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, payload: bytes) -> str:
    """Write ``payload`` to ``path`` atomically (:func:`atomic_path`), fsynced."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_text(path: str, text: str) -> str:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


#: variables that size the thread pools of OpenMP (torch), MKL and OpenBLAS (numpy)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def default_threads() -> int:
    """The thread count of ``run`` without ``--threads``: ``OMP_NUM_THREADS`` when it is set
    to a positive integer, else 1.

    Measured on the 2-core development machine, shared with other sessions (load average
    12-13; ``benchmarks/threads_bench.py``, BRMRS on the demo data, median epoch wall
    seconds): 1 thread 0.76 s, 2 threads 3.4 s; with the other core kept busy as well 0.85 s
    vs 11.2 s.
    OpenMP's threads wait for each other at every operation, so one that is not scheduled
    stalls the step: torch's default of one thread per core is a poor default wherever a core
    may be busy. See the README ("Threads")."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def set_threads(threads: int) -> int:
    """Use ``threads`` threads for torch's operations in this process (and for numpy's BLAS
    and child processes, through the environment, where they are not loaded yet).

    Returns:
        torch's thread count afterwards.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
_MMAP_THRESHOLD_MAX = 32 * 2**20
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def tune_allocator() -> bool:
    """Let glibc's malloc keep the memory of freed large tensors for reuse.

    A training step allocates and frees tensors of tens of MB (``[n_users + n_items, d]``
    activations and gradients). By default glibc serves them by ``mmap`` or returns freed
    heap memory to the system, so every step page-faults the same memory in again (system
    time, and zero-filling by the kernel). Raising ``M_MMAP_THRESHOLD`` (to its 32 MiB
    maximum) and ``M_TRIM_THRESHOLD`` keeps that memory in the process: a Baby BRMRS epoch
    then spends 0.0 instead of 0.3 s in the system (about 5% of its CPU time; user time
    within noise). Peak memory is unchanged (memory is retained, not added).

    Called by the ``mmrec-plugin`` entry points (not on import). Does nothing, returning
    False, where the C library has no ``mallopt`` (non-glibc, non-Linux), or when the
    environment sets ``MMREC_PLUGIN_TUNE_MALLOC=0``.

    Returns:
        True when both settings were applied.
    """
    if os.environ.get("MMREC_PLUGIN_TUNE_MALLOC", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim
