"""MMRec-style entry point: ``python main.py -m MODEL -d DATASET [options]``.

The same as ``mmrec-plugin run``; see ``python main.py --help`` and the README.
"""
import sys

from mmrec_plugin.cli import main

if __name__ == "__main__":
    sys.exit(main(["run"] + sys.argv[1:]))
