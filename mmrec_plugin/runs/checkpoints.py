"""Epoch checkpoints of a combination in training: ``<results_dir>/checkpoints/<key>.pt``.

After every epoch the process training a combination writes the trainer's whole state
(:meth:`~mmrec_plugin.host.trainer.Trainer.state_dict`: model, optimiser, schedule,
early-stopping state, history, random generators) atomically; a run that finds a
checkpoint for the combination it claims continues from it, and ends with the result an
uninterrupted run gets. The committer removes it with the combination's record. Files are
read with ``torch.load(weights_only=True)`` (tensors and plain containers only).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

import numpy as np

from .records import save_model_file

logger = logging.getLogger(__name__)

__all__ = ["path_for", "write", "read", "remove"]

FORMAT = "mmrec_plugin.checkpoint/1"


def path_for(results_dir: str, key: str) -> str:
    return os.path.join(results_dir, "checkpoints", f"{key[:32]}.pt")


def _np_state_out(state):
    name, keys, pos, has_gauss, cached = state
    import torch

    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
            float(cached))


def _np_state_in(state):
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def write(path: str, key: str, trainer, train_data=None) -> None:
    """Write ``trainer``'s state for combination ``key`` to ``path`` (atomically)."""
    state = trainer.state_dict(train_data)
    state["rng"] = dict(state["rng"], numpy=_np_state_out(state["rng"]["numpy"]))
    tmp = save_model_file(path, {"format": FORMAT, "key": key, "trainer": state})
    os.replace(tmp, path)


def read(path: str, key: str) -> Optional[Dict[str, Any]]:
    """The checkpoint of ``key`` at ``path``, or None (absent, another combination's, or
    unreadable: then training starts from epoch 0, with a warning)."""
    import torch

    if not os.path.isfile(path):
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("key") != key:
            raise ValueError("not a checkpoint of this combination")
        saved["trainer"]["rng"]["numpy"] = _np_state_in(saved["trainer"]["rng"]["numpy"])
    except Exception as exc:  # a damaged file costs the epochs it held, nothing else
        logger.warning("checkpoint %s unreadable (%s); training this combination from epoch 0",
                       path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return saved


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
