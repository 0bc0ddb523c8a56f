"""Reference models of the embedded host: :class:`BPR`, :class:`LightGCN` and the multimodal
:class:`FREEDOM` and :class:`MMGCN`.

Importing this package registers them with :mod:`mmrec_plugin.registry` when that module
provides ``register_model`` (the import is guarded so the models work without it).
"""
import logging
import os

from mmrec_plugin.host.models.bpr import BPR
from mmrec_plugin.host.models.freedom import FREEDOM
from mmrec_plugin.host.models.lightgcn import LightGCN
from mmrec_plugin.host.models.mmgcn import MMGCN

__all__ = ["BPR", "LightGCN", "FREEDOM", "MMGCN"]

logger = logging.getLogger(__name__)

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "model")


def _register() -> None:
    try:
        from mmrec_plugin import registry
    except ImportError:
        return
    register = getattr(registry, "register_model", None)
    if register is None:  # registry absent, or only partly imported (circular import)
        return
    for name, cls in (("BPR", BPR), ("LightGCN", LightGCN), ("FREEDOM", FREEDOM), ("MMGCN", MMGCN)):
        try:
            register(name, cls, config_path=os.path.join(_CONFIG_DIR, f"{name}.yaml"))
        except Exception as exc:  # e.g. already registered by the registry itself
            logger.debug("registering %s with mmrec_plugin.registry failed: %s", name, exc)


_register()
