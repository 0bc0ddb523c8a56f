"""BR-MRS, framework-agnostic (docs/METHOD.md).

- :mod:`.model`        ``BRMRSNet``: one ``ModalityChannel`` per modality, any M >= 2;
- :mod:`.objective`    ``BRObjective``: CHNS + synergy-aware BPR (+ fused BPR) for any model;
- :mod:`.config`       ``BRMRSConfig`` and ``ObjectiveConfig``: every key, its type and default;
- :mod:`.pools`        candidate pools from ``I \\ O_u`` and the choice of negatives;
- :mod:`.losses`       BPR, CHNS, synergy-aware BPR, InfoNCE, orthogonality;
- :mod:`.fusion`       ``mean`` / ``gate`` / ``mlp`` / ``concat`` fusion of M modalities;
- :mod:`.graphs`       block-wise top-k homogeneous graphs;
- :mod:`.propagation`  homogeneous smoothing, the M-channel layer 0;
- :mod:`.cache`        graph cache in the LMDB store, keyed by a digest of all inputs.

Nothing here imports the host; only :mod:`.config` raises config-key errors, the rest raises
``ValueError``. The MMRec adapter (``src/models/brmrs.py``) wires ``BRMRSNet`` into an
MMRec-style ``GeneralRecommender``.
"""
