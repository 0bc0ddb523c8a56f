"""``--scheduler asha``: the grid through Ray Tune's public API (``tune.Tuner``,
``tune.with_resources``, ``tune.with_parameters``, ``ASHAScheduler``).

:class:`RayTune` claims every combination it can in the results store (as every executor
does, so it cooperates with other runs of the same grid), hands them to one ``Tuner`` as a
grid search over their indices, and commits each result in this process, the claim holder
and the only writer of the results folder. Each trial trains its combination with
:func:`~mmrec_plugin.runs.build.train_one` and reports ``{"epochs", "valid"}`` after every
evaluation; Tune's ASHA (asynchronous successive halving, time unit = epochs) stops the weak
ones. A trial sends its record (and, when it finishes, its model payload) to a small Ray
actor of this driver, so a stopped trial still leaves its results so far: it is committed
with ``status: 'pruned'`` (no model file) and never selected; a later run without
``--scheduler`` trains it in full. A user error in a trial stops the grid with that error;
a trial that fails otherwise leaves its combination unclaimed for a rerun.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from mmrec_plugin.errors import UserError
from mmrec_plugin.utils import jsonable

from .ray import Ray

logger = logging.getLogger(__name__)

__all__ = ["RayTune"]


class _Collector:
    """The driver's mailbox for its trials: their records so far, final results, errors."""

    def __init__(self):
        self.partial: Dict[int, Dict] = {}
        self.final: Dict[int, Tuple[Dict, Optional[bytes]]] = {}
        self.errors: Dict[int, str] = {}

    def put_partial(self, task_id: int, record: Dict) -> None:
        self.partial[task_id] = record

    def put_final(self, task_id: int, record: Dict, payload: Optional[bytes]) -> None:
        self.final[task_id] = (record, payload)

    def put_error(self, task_id: int, message: str) -> None:
        self.errors[task_id] = message

    def take(self):
        return self.partial, self.final, self.errors


def _trainable(space, tasks, collector, threads, device, data):
    """One Tune trial: train the combination ``tasks[space["task"]]``."""
    import ray
    from ray import tune

    from .executors import _to_bytes, train_task
    from .ray import _on_device

    task_id = space["task"]
    task = _on_device(tasks[task_id], threads, device)
    max_t = int(task["config"]["epochs"])

    def on_eval(epoch, score, trainer):
        ray.get(collector.put_partial.remote(task_id, {
            "best_epoch": trainer.best_epoch, "valid": jsonable(trainer.best_valid_result),
            "test": jsonable(trainer.best_test_upon_valid), "history": jsonable(trainer.history)}))
        if epoch + 1 < max_t:  # (the last epoch ends the trial anyway: not a pruning point)
            tune.report({"epochs": epoch + 1, "valid": float(score)})
        return True  # Tune stops the trials its scheduler prunes

    try:
        record, payload = train_task(task, on_eval=on_eval, data=data)
    except UserError as exc:
        ray.get(collector.put_error.remote(task_id, str(exc)))
        raise
    ray.get(collector.put_final.remote(task_id, record, None if payload is None else _to_bytes(payload)))
    best = (record.get("valid") or {}).get(task["config"].valid_metric_key, 0.0)
    tune.report({"epochs": max(1, len(record.get("history") or [])), "valid": float(best or 0.0)})


class RayTune(Ray):
    """The executor of ``--scheduler asha`` (module docstring); the arguments of :class:`Ray`
    plus ASHA's ``grace_period`` and ``reduction_factor`` (in epochs)."""

    pruning = True
    batch = True  # run_grids hands it whole grids (run_batch)

    def __init__(self, config, scheduler: str = "asha", grace_period: int = 5,
                 reduction_factor: float = 2.0, **ray_options):
        from .ray import require_ray

        require_ray(scheduler)
        super().__init__(config, **ray_options)
        self.scheduler, self.grace_period, self.reduction_factor = scheduler, grace_period, reduction_factor

    def describe(self) -> str:
        return super().describe() + f", Ray Tune with scheduler {self.scheduler}"

    def run_batch(self, grids) -> None:
        """Claim, train through one Tuner, commit; again while other runs hold combinations."""
        from .executors import _task

        self.start()
        try:
            while any(gr.left() for gr in grids):
                claimed: List[Tuple[Any, int]] = []
                for gr in grids:
                    while True:
                        index = gr.claim_next(exclude={i for g, i in claimed if g is gr})
                        if index is None:
                            break
                        claimed.append((gr, index))
                if not claimed:
                    next(gr for gr in grids if gr.left()).wait_for_others()
                    continue
                self._tune(claimed, [_task(gr, i, self.threads) for gr, i in claimed])
        finally:
            self.stop()

    def _tune(self, claimed, tasks) -> None:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        from .executors import _from_bytes

        max_t = int(tasks[0]["config"]["epochs"])
        collector = ray.remote(num_cpus=0)(_Collector).remote()
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, tasks=tasks, collector=collector, threads=self.threads,
                                 device=self.device, data=self.data_ref(tasks[0]["config"])),
            {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})
        scheduler = ASHAScheduler(time_attr="epochs", metric="valid", mode="max", max_t=max_t,
                                  grace_period=max(1, min(int(self.grace_period), max_t)),
                                  reduction_factor=float(self.reduction_factor))
        storage = tempfile.mkdtemp(prefix="mmrec-plugin-tune-")
        try:
            tuner = tune.Tuner(
                trainable, param_space={"task": tune.grid_search(list(range(len(tasks))))},
                tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=self.workers),
                run_config=tune.RunConfig(storage_path=storage, name="grid", verbose=0))
            try:
                tuner.fit()
            except BaseException:
                for gr, index in claimed:
                    gr.release(index)
                raise
            partial, final, errors = ray.get(collector.take.remote())
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        if errors:
            for gr, index in claimed:
                gr.release(index)
            raise UserError(next(iter(errors.values())))
        for task_id, (gr, index) in enumerate(claimed):
            task = tasks[task_id]
            if task_id in final:
                record, payload = final[task_id]
                gr.commit(index, record, None if payload is None else _from_bytes(payload))
            elif task_id in partial:
                record = {"id": task["key"][:12], "index": index, "params": jsonable(task["params"]),
                          "config": task["config"].with_params(task["params"]).to_dict(),
                          "model_path": None, "status": "pruned", "seconds": None, **partial[task_id]}
                gr.commit(index, record, None)
            else:
                logger.error("combination %d/%d (%s): its trial failed before its first evaluation; "
                             "left unfinished, rerun to train it", index + 1, gr.n, gr.describe(index))
                gr.release(index, failed=True)
