"""Installing BRMRS into a real MMRec checkout (:mod:`mmrec_plugin.bridge.mmrec`) and its
CLI subcommands (:mod:`mmrec_plugin.bridge.cli`)."""

from mmrec_plugin.bridge.mmrec import (  # noqa: F401
    InstallReport,
    check_stack,
    find_mmrec_src,
    install,
    packaged_src,
    uninstall,
)
