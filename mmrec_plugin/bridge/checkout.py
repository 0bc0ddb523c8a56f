"""An MMRec checkout and what is installed into it: recognising one (:func:`find_mmrec_src`),
the packaged BRMRS files (:func:`packaged_src`, :data:`MODEL_FILES`) and the report that
``install``, ``uninstall`` and the stack check fill (:class:`InstallReport`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

from mmrec_plugin.errors import UserError

PathLike = Union[str, "os.PathLike[str]"]

#: Files (relative to MMRec's ``src/``) that every MMRec checkout has; used to recognise one.
REQUIRED_FILES: Tuple[str, ...] = (
    "main.py",
    "utils/quick_start.py",
    "common/abstract_recommender.py",
    "common/trainer.py",
    "configs/overall.yaml",
    "models/",
)

#: What is installed: path in the package == path under MMRec's ``src/``.
MODEL_FILES: Tuple[str, ...] = ("models/brmrs.py", "configs/model/BRMRS.yaml")

# Status levels of a stack check, from worst to best.
BLOCKER = "FAIL"   # MMRec itself, or BRMRS inside it, cannot run
MODELS = "WARN"    # some of MMRec's other models cannot run
OK = "ok"


@dataclass
class FileAction:
    """What happened to one model file: ``installed``, ``up to date``, ``overwritten``,
    ``removed``, ``absent`` (uninstall: nothing there) or ``kept`` (uninstall: differs)."""

    relpath: str
    dest: Path
    action: str


@dataclass
class StackIssue:
    """One line of the stack checklist.

    Args:
        level: ``FAIL`` (MMRec or BRMRS inside it cannot run), ``WARN`` (some other MMRec
            models cannot run) or ``ok``.
        topic: short name (``numpy``, ``scipy``, ``torchvision``, ``cuda``, ``packages``).
        message: what was found, naming the file and line.
        fix: the command or action that fixes it ('' when nothing is needed).
    """

    level: str
    topic: str
    message: str
    fix: str = ""


@dataclass
class InstallReport:
    """The result of :func:`install` / :func:`uninstall` / :func:`check_stack`."""

    src: Path
    files: List[FileAction] = field(default_factory=list)
    stack: List[StackIssue] = field(default_factory=list)
    python: str = ""

    @property
    def blockers(self) -> List[StackIssue]:
        return [s for s in self.stack if s.level == BLOCKER]

    def format(self) -> str:
        """A human-readable checklist (the CLI prints it)."""
        lines = [f"MMRec checkout: {self.src}"]
        for f in self.files:
            lines.append(f"  {f.action:<11} {f.dest}")
        if self.stack:
            lines.append("")
            lines.append(f"What this checkout needs on this Python stack ({self.python}):")
            for s in self.stack:
                lines.append(f"  [{s.level}] {s.topic}: {s.message}")
                if s.fix:
                    lines.append(f"         fix: {s.fix}")
            if self.blockers:
                lines.append("")
                lines.append(f"{len(self.blockers)} problem(s) marked FAIL must be fixed before "
                             "`python main.py -m BRMRS -d DATASET` runs in this checkout "
                             "(its files were not edited).")
            else:
                lines.append("")
                lines.append(f"Ready: cd {self.src} && python main.py -m BRMRS -d DATASET")
        return "\n".join(lines)


# ---------------------------------------------------------------- locating things

def find_mmrec_src(mmrec_path: PathLike) -> Path:
    """MMRec's ``src/`` folder for a checkout root or its ``src/``.

    Raises:
        UserError: the path does not exist or lacks files every MMRec checkout has
            (the message lists the missing ones).
    """
    p = Path(mmrec_path).expanduser()
    if not p.exists():
        raise UserError(f"--mmrec {mmrec_path}: no such folder (give the MMRec checkout "
                        "root or its src/ folder)")
    if not p.is_dir():
        raise UserError(f"--mmrec {mmrec_path}: not a folder (give the MMRec checkout "
                        "root or its src/ folder)")
    src = p / "src" if (p / "src").is_dir() and not (p / "main.py").is_file() else p
    missing = [r for r in REQUIRED_FILES
               if not ((src / r).is_dir() if r.endswith("/") else (src / r).is_file())]
    if missing:
        raise UserError(
            f"--mmrec {mmrec_path}: does not look like an MMRec checkout; missing in {src}: "
            + ", ".join(missing)
            + " (expected the root of a clone of github.com/enoche/MMRec, or its src/ folder)")
    return src.resolve()


def packaged_src() -> Path:
    """The folder holding the packaged ``models/brmrs.py`` and ``configs/model/BRMRS.yaml``.

    Looks in the installed subpackage ``mmrec_plugin.mmrec_src`` first, then in the
    repository's ``src/`` next to the ``mmrec_plugin`` package (a source checkout).

    Raises:
        UserError: neither holds both files.
    """
    candidates: List[Path] = []
    try:
        spec = importlib.util.find_spec("mmrec_plugin.mmrec_src")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in list(spec.submodule_search_locations or []):
            candidates.append(Path(loc))
        if spec.origin and spec.origin not in ("namespace", "built-in"):
            candidates.append(Path(spec.origin).parent)
    candidates.append(Path(__file__).resolve().parent.parent.parent / "src")  # (mmrec_plugin/bridge/)
    for c in candidates:
        if all((c / r).is_file() for r in MODEL_FILES):
            return c
    raise UserError("the packaged BRMRS files (" + ", ".join(MODEL_FILES) + ") were not found in "
                    + ", ".join(str(c) for c in candidates)
                    + "; reinstall the plugin (pip install <the BR-MRS folder>)")
