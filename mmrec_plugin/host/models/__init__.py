"""Reference models of the embedded host: :class:`BPR`, :class:`LightGCN` and the multimodal
:class:`FREEDOM` and :class:`MMGCN`, and the content-only :class:`ContentCosine`.

Importing this package (done by ``import mmrec_plugin.host``) registers them with
:mod:`mmrec_plugin.registry`.
"""
import os

from mmrec_plugin.host.models.bpr import BPR
from mmrec_plugin.host.models.content import ContentCosine
from mmrec_plugin.host.models.freedom import FREEDOM
from mmrec_plugin.host.models.lightgcn import LightGCN
from mmrec_plugin.host.models.mmgcn import MMGCN

__all__ = ["BPR", "LightGCN", "FREEDOM", "MMGCN", "ContentCosine"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "model")


def _register() -> None:
    from mmrec_plugin.registry import register_model

    for name, cls in (("BPR", BPR), ("LightGCN", LightGCN), ("FREEDOM", FREEDOM), ("MMGCN", MMGCN),
                      ("ContentCosine", ContentCosine)):
        register_model(name, cls, config_path=os.path.join(_CONFIG_DIR, f"{name}.yaml"))


_register()
