"""Install the BRMRS model into a real MMRec checkout, and say what that checkout needs.

MMRec (github enoche/MMRec) finds a model by file name: ``-m BRMRS`` imports
``src/models/brmrs.py`` and reads ``src/configs/model/BRMRS.yaml``. Installing therefore
means copying exactly two files, the ones this package ships as ``mmrec_plugin.mmrec_src``
(the repository's top-level ``src/``), into the checkout's ``src/``::

    <package>/models/brmrs.py            -> PATH/src/models/brmrs.py
    <package>/configs/model/BRMRS.yaml   -> PATH/src/configs/model/BRMRS.yaml

Copies are atomic (a temporary file in the target folder, then ``os.replace``). A different
file already at a target is never overwritten unless ``force``; an identical one is reported
as up to date. :func:`uninstall` removes only files identical to ours (any with ``force``).
MMRec's own files are only read, never edited.

What the checkout needs on the running Python stack is reported by
:func:`mmrec_plugin.bridge.stack.check_stack` (called by :func:`install`); the checkout,
the packaged files and the report live in :mod:`mmrec_plugin.bridge.checkout`.

Args (of :func:`install`):
    mmrec_path: the MMRec checkout root or its ``src/`` folder.
    force: overwrite a different existing file (default False).
    package_src: the folder holding ``models/brmrs.py`` and ``configs/model/BRMRS.yaml``
        (default: the installed ``mmrec_plugin.mmrec_src``, else the repository's ``src/``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from mmrec_plugin.bridge.checkout import (  # noqa: F401  (re-exported: the bridge's names)
    BLOCKER, MODEL_FILES, MODELS, OK, REQUIRED_FILES, FileAction, InstallReport, PathLike,
    StackIssue, find_mmrec_src, packaged_src)
from mmrec_plugin.bridge.stack import PIP_NAMES, check_stack  # noqa: F401  (re-exported)
from mmrec_plugin.errors import UserError
from mmrec_plugin.utils import file_mode

logger = logging.getLogger(__name__)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary file in ``dest``'s folder + os.replace."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=str(dest.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(src.read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())  # as a file created by open(): the umask applies
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- install / uninstall

def install(mmrec_path: PathLike, force: bool = False, package_src: Optional[PathLike] = None,
            check: bool = True) -> InstallReport:
    """Copy BRMRS's model and config into an MMRec checkout; see the module docstring.

    Nothing is written when a target differs and ``force`` is False.

    Returns:
        InstallReport with one FileAction per file and, when ``check``, the stack checklist.

    Raises:
        UserError: not an MMRec checkout; packaged files missing; a different file is in
            the way (names it and says to pass --force).
    """
    src = find_mmrec_src(mmrec_path)
    pkg = Path(package_src) if package_src is not None else packaged_src()
    for r in MODEL_FILES:
        if not (pkg / r).is_file():
            raise UserError(f"packaged file {pkg / r} is missing; reinstall the plugin")
    plan: List[Tuple[str, Path, Path, str]] = []
    blocked: List[Path] = []
    for r in MODEL_FILES:
        ours, dest = pkg / r, src / r
        if not dest.exists():
            plan.append((r, ours, dest, "installed"))
        elif dest.is_file() and _digest(dest) == _digest(ours):
            plan.append((r, ours, dest, "up to date"))
        elif force:
            plan.append((r, ours, dest, "overwritten"))
        else:
            blocked.append(dest)
    if blocked:
        raise UserError("refusing to overwrite " + ", ".join(str(b) for b in blocked)
                        + ": it differs from this plugin's version (an older BRMRS or your "
                        "own edit); pass --force to replace it")
    report = InstallReport(src=src)
    for r, ours, dest, action in plan:
        if action != "up to date":
            if dest.is_dir():
                raise UserError(f"{dest} is a folder; remove it or choose another checkout")
            _atomic_copy(ours, dest)
            logger.debug("%s %s", action, dest)
        report.files.append(FileAction(r, dest, action))
    if check:
        check_stack(src, report=report)
    return report


def uninstall(mmrec_path: PathLike, force: bool = False,
              package_src: Optional[PathLike] = None) -> InstallReport:
    """Remove BRMRS's files from an MMRec checkout.

    Only files identical to the packaged ones are removed, unless ``force``; when one
    differs and ``force`` is False nothing is removed. MMRec's other files are untouched
    (BRMRS's graph cache under ``<data>/<dataset>/.cache/`` stays; delete it by hand).

    Raises:
        UserError: not an MMRec checkout; a file differs (names it, says to pass --force).
    """
    src = find_mmrec_src(mmrec_path)
    pkg: Optional[Path]
    try:
        pkg = Path(package_src) if package_src is not None else packaged_src()
    except UserError:
        if not force:
            raise
        pkg = None
    differing: List[Path] = []
    for r in MODEL_FILES:
        dest = src / r
        if dest.is_file() and not force:
            ours = pkg / r if pkg is not None else None
            if ours is None or not ours.is_file() or _digest(ours) != _digest(dest):
                differing.append(dest)
    if differing:
        raise UserError("not removing " + ", ".join(str(d) for d in differing)
                        + ": it differs from this plugin's version (your own edit or another "
                        "release); pass --force to remove it anyway")
    report = InstallReport(src=src)
    for r in MODEL_FILES:
        dest = src / r
        if dest.is_file():
            dest.unlink()
            if dest.suffix == ".py":
                for pyc in (dest.parent / "__pycache__").glob(dest.stem + ".*.pyc"):
                    pyc.unlink()
            logger.debug("removed %s", dest)
            report.files.append(FileAction(r, dest, "removed"))
        else:
            report.files.append(FileAction(r, dest, "absent"))
    return report


