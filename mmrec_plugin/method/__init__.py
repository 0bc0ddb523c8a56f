"""BR-MRS method pieces, framework-agnostic (SPEC sections 2-3).

- :mod:`.graphs`       bipartite normalisation, block-wise top-k homogeneous graphs;
- :mod:`.propagation`  torch-geometric LightGCN propagation and homogeneous smoothing;
- :mod:`.fusion`       ``mean`` / ``gate`` / ``mlp`` fusion;
- :mod:`.pools`        candidate pools from ``I \\ O_u`` and negative strategies;
- :mod:`.losses`       BPR, CHNS, synergy-aware BPR, InfoNCE, orthogonality, L2;
- :mod:`.cache`        graph cache in the LMDB store, keyed by a digest of all inputs.

Nothing here imports the host: the model glue (``src/models/brmrs.py``) wires these pieces
into an MMRec-style ``GeneralRecommender``.
"""
