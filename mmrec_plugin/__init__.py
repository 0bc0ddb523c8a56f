"""BR-MRS: synergy-aware multimodal recommendation with cross-modal hard negatives.

An MMRec-style plugin. Rooms (one concern each), bottom up:

- :mod:`mmrec_plugin.errors`, :mod:`.utils`, :mod:`.schema`, :mod:`.store`, :mod:`.sparse`:
  the floor (errors, typed config keys, the LMDB store, sparse products);
- :mod:`mmrec_plugin.method`   framework-agnostic method library (graphs, propagation,
  fusion, candidate pools, losses, the objective);
- :mod:`mmrec_plugin.registry` model name -> class;
- :mod:`mmrec_plugin.host`     the embedded MMRec-compatible host (config, dataset, loaders,
  evaluator, trainer, reference models);
- :mod:`mmrec_plugin.runs`     the one run pipeline (build, train, grids, reload);
- :mod:`mmrec_plugin.analysis` user-subset analysis, compare, reports;
- :mod:`mmrec_plugin.data`     synthetic data and dataset tools;
- :mod:`mmrec_plugin.bridge`   installing the model into a real MMRec checkout.

From a notebook: :func:`run` trains a config and returns its results and models;
:func:`load_model` gets a trained model back from a results file, to recommend with.
"""
from mmrec_plugin.version import __version__

__all__ = ["__version__", "run", "load_model"]


def __getattr__(name):  # the API is imported when it is used (no torch on a plain import)
    if name in ("run", "load_model"):
        from mmrec_plugin import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmrec_plugin' has no attribute {name!r}")
