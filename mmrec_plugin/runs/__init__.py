"""The run pipeline: every command trains, evaluates and reloads models through it.

- :func:`build` -> :class:`Run`: the dataset, loaders, model, trainer and evaluator of one
  combination, built once (:mod:`.build`);
- :func:`train_one` -> :class:`Result`: one combination trained (its record and model payload);
- :func:`grid` -> :class:`GridResult`: a config's whole grid, resumable, through an executor
  (:mod:`.executors`: in this process, a local process pool, or Ray), committed to the
  results folder (:mod:`.grid`, :mod:`.claims`, :mod:`.records`, :mod:`.checkpoints`);
- :func:`load` -> :class:`Run`: a combination's saved model rebuilt from a results file
  (:mod:`.load`, the only reader of model files).

Example::

    from mmrec_plugin.host.config import Config
    from mmrec_plugin import runs

    config = Config("BRMRS", "demo", config_dict={"results_dir": "results/"})
    summary = runs.grid(config)                   # trains (or resumes) the grid
    best = runs.load(summary.path, "best")        # the best combination's model
    best.evaluate("test")                         # {'recall@20': ..., ...}
"""
from .build import Data, Result, Run, build, init_seed, load_data, train_one
from .executors import ProcessPool, Sequential, default_executor
from .grid import MAX_COMBINATIONS, GridResult, grid, quick_start
from .load import find_combination, load, read_results

__all__ = ["Data", "Result", "Run", "build", "init_seed", "load_data", "train_one", "ProcessPool",
           "Sequential", "default_executor", "MAX_COMBINATIONS", "GridResult", "grid", "quick_start",
           "find_combination", "load", "read_results"]
