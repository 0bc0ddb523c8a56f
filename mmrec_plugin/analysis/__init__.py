"""User-subset analysis, study presets and reports (docs/METHOD.md).

- :mod:`.subsets`  ranks of held-out targets under the text / visual / fused scores, the
  six-way partition, the seed subsets U_t, U_v, U_tv, U_r, per-type recall, analyze_model;
- :mod:`.studies`  named presets (fig1, table2, neg_strategies, sensitivity, synthetic,
  gamma_sweep) as grid-search overrides, run_study, run_gamma_sweep;
- :mod:`.report`   results JSON -> markdown tables and PNG plots (matplotlib optional);
- :mod:`.cli`      ``mmrec-plugin analyze``, ``report`` and ``study``.

Submodules are imported on use (this package imports nothing heavy).
"""
