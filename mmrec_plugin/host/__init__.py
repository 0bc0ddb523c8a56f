"""The embedded MMRec-compatible host. Importing it registers the reference models (BPR,
LightGCN) with :mod:`mmrec_plugin.registry`."""
from mmrec_plugin.host import models  # noqa: F401  (registers BPR and LightGCN)
