"""``mmrec-plugin install`` / ``mmrec-plugin uninstall``: BRMRS into a real MMRec checkout.

The top-level parser (:mod:`mmrec_plugin.cli`) wires these in::

    mmrec-plugin install --mmrec PATH [--force]     copy models/brmrs.py + configs/model/BRMRS.yaml
    mmrec-plugin uninstall --mmrec PATH [--force]   remove them (only if identical to ours)

``PATH`` is the MMRec checkout root or its ``src/``. ``install`` also prints what the
checkout needs on the running Python stack (run it with the Python that runs MMRec).
User-fixable problems raise :class:`mmrec_plugin.errors.UserError`; the top-level CLI
prints them as ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse

from mmrec_plugin.bridge import mmrec


def add_install_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mmrec-plugin install``."""
    parser.add_argument("--mmrec", required=True, metavar="PATH",
                        help="MMRec checkout root (or its src/ folder)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a different brmrs.py / BRMRS.yaml already there")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the report of what the checkout needs on this Python stack")


def run_install(args: argparse.Namespace) -> int:
    """Install; print the files and the stack checklist. 0 when done (even with FAIL
    lines in the checklist: the files are in place; the checklist says what to fix)."""
    report = mmrec.install(args.mmrec, force=args.force, check=getattr(args, "check", True))
    print(report.format())
    return 0


def add_uninstall_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mmrec-plugin uninstall``."""
    parser.add_argument("--mmrec", required=True, metavar="PATH",
                        help="MMRec checkout root (or its src/ folder)")
    parser.add_argument("--force", action="store_true",
                        help="remove brmrs.py / BRMRS.yaml even if they differ from this plugin's")


def run_uninstall(args: argparse.Namespace) -> int:
    """Uninstall; print what was removed. 0 when done."""
    report = mmrec.uninstall(args.mmrec, force=args.force)
    print(report.format())
    return 0
