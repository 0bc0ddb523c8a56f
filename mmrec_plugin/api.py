"""The Python API, for notebooks and scripts: train with :func:`run`, get a model back with
:func:`load_model`, recommend with it.

Example::

    from mmrec_plugin import run, load_model

    result = run("BRMRS", "demo", config={"epochs": 20})     # trains (or resumes) the grid
    result.best["test"]["recall@20"]                         # the selected combination's record
    m = result.best_model                                    # its trained model
    items, scores = m.recommend([0, 1, 2], k=10)             # the dataset's ids, best first

    m = load_model("results/BRMRS-demo.json")                # later, from the results file
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from mmrec_plugin.recommend import TrainedModel, load_model

__all__ = ["run", "load_model", "RunResult", "TrainedModel"]


class RunResult:
    """What :func:`run` returns: the grid's records and its trained models.

    Attributes:
        path: the results JSON file.
        summary: its content (a :class:`~mmrec_plugin.runs.grid.GridResult`).
        best: the record of the combination selected by validation (None if none finished).
        combinations: every finished combination's record.
    """

    def __init__(self, summary):
        self.summary = summary
        self.path: str = summary.path
        self.best: Optional[Dict[str, Any]] = summary.best
        self.combinations: List[Dict[str, Any]] = summary.combinations
        self._models: Dict[str, TrainedModel] = {}

    def model(self, combination: Any = "best") -> TrainedModel:
        """The trained model of ``combination`` (``best``, an id, or an index), loaded once."""
        key = str(combination)
        if key not in self._models:
            self._models[key] = load_model(self.path, combination)
        return self._models[key]

    @property
    def best_model(self) -> TrainedModel:
        return self.model("best")

    def __repr__(self) -> str:
        metric = (self.summary.get("selected_by") or "valid recall@20").split()[-1]
        best = self.best and (self.best.get("valid") or {}).get(metric)
        return (f"RunResult({self.summary.get('model')} on {self.summary.get('dataset')}, "
                f"{len(self.combinations)}/{self.summary.get('n_combinations')} combinations, "
                f"best valid {metric} {best})")


def run(model: str, dataset: str, config: Optional[Dict[str, Any]] = None,
        config_file: Optional[str] = None, data_path: Optional[str] = None,
        results_dir: Optional[str] = None, workers: Optional[int] = None,
        analyze: bool = True) -> RunResult:
    """Train (or resume) the grid of ``model`` on ``dataset``, as ``mmrec-plugin run`` does.

    Args:
        model, dataset: names (``demo`` is generated when absent).
        config: config keys to override (a list makes a grid, as on the command line);
            unknown keys are errors naming the closest known key.
        config_file: an extra yaml layer; data_path / results_dir: the folders.
        workers: combinations trained at once (default: min(cores, combinations) worker
            processes; 1: in this process).
        analyze: record the user-subset analysis of multimodal models.
    """
    import os

    from mmrec_plugin.analysis.rerun import record_analysis
    from mmrec_plugin.host.config import Config, expand_grid, strict_key
    from mmrec_plugin.runs import default_executor, grid

    overrides = dict(config or {})
    if data_path is not None:
        overrides["data_path"] = data_path
    if results_dir is not None:
        overrides["results_dir"] = results_dir
    cfg = Config(model, dataset, config_dict=overrides, config_file=config_file, check_keys=strict_key)
    folder = os.path.join(cfg["data_path"], cfg["dataset"])
    if cfg["dataset"] == "demo" and not os.path.isfile(os.path.join(folder, cfg["inter_file_name"])):
        from mmrec_plugin.data.synthetic import ensure_demo

        ensure_demo(folder)
    executor = default_executor(cfg, len(expand_grid(cfg)), workers=workers)
    summary = grid(cfg, executor=executor, analyze=record_analysis if analyze else None)
    return RunResult(summary)
