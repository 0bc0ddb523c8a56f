"""BR-MRS: synergy-aware multimodal recommendation with cross-modal hard negatives.

An MMRec-style plugin. Rooms (one concern each):

- :mod:`mmrec_plugin.method`   framework-agnostic method library (graphs, propagation,
  fusion, candidate pools, losses);
- :mod:`mmrec_plugin.registry` model name -> class;
- :mod:`mmrec_plugin.host`     the embedded MMRec-compatible host (config, dataset, loaders,
  evaluator, trainer, grid search);
- :mod:`mmrec_plugin.analysis` user-subset analysis and reports;
- :mod:`mmrec_plugin.data`     synthetic data and dataset tools;
- :mod:`mmrec_plugin.store`    the LMDB store (results, graph cache);
- :mod:`mmrec_plugin.bridge`   installing the model into a real MMRec checkout.
"""

__version__ = "0.1.0"
