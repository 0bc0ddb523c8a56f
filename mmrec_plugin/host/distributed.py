"""Grid combinations on Ray workers (``--workers N``, ``--ray-address``; the ``distributed``
extra). Imported only when those flags are given: the default path never imports Ray.

The Ray driver is one more way to run a :class:`~mmrec_plugin.host.quick_start.GridRun`:
it claims combinations in the results store exactly as the sequential loop does (so it
cooperates with other runs of the same grid in the same folder), keeps up to ``workers``
of them in flight as Ray tasks, and commits each result when its task returns. The driver
is the only writer of the store, the model files and the JSON summary; a worker only
trains (:func:`mmrec_plugin.host.quick_start._train_one`) and returns the record and the
best ``state_dict``. The dataset is loaded once by the driver and shared through Ray's
object store, so workers on other machines need neither the data nor the results folder.

Failures:

- a worker process that dies (killed, out of memory, a lost node) is retried by Ray up to
  ``max_retries`` times; after that the combination is released unfinished (logged; a
  rerun trains it) and the grid goes on;
- a user error raised in a worker (a bad config value) stops the grid with that error;
- the driver killed with ``kill -9``: committed combinations stay, the claims of those in
  flight go stale with the driver's process, and the rerun trains exactly those;
- Ctrl-C: tasks in flight are cancelled, their claims released, Ray shut down.

``--scheduler asha``: after every evaluation a worker reports its validation score to a
small Ray actor that holds Ray Tune's :class:`~ray.tune.schedulers.ASHAScheduler`
(asynchronous successive halving, time unit = epochs) and stops when it says so. A
stopped combination is committed with ``status: 'pruned'`` (results so far, no model
file) and is never selected; a later run without ``--scheduler`` trains it in full.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from typing import Any, Dict, Optional

from mmrec_plugin.errors import UserError

logger = logging.getLogger(__name__)

#: how often Ray reruns a combination whose worker process died
DEFAULT_MAX_RETRIES = 2
SCHEDULERS = ("asha",)
EXTRA = ('pip install "brmrs-mmrec-plugin[distributed]" (from a checkout: '
         'pip install -e ".[distributed]")')


def require_ray(scheduler: Optional[str] = None) -> None:
    """Raise a :class:`UserError` naming the extra when Ray (or Ray Tune, for a scheduler)
    is not installed, or when ``scheduler`` is unknown."""
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler {scheduler!r} is not known; accepted: "
                        f"{', '.join(SCHEDULERS)}")
    try:
        import ray  # noqa: F401

        if scheduler is not None:
            import ray.tune  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--workers, --ray-address and --scheduler run the grid on Ray, which is "
                        f"not installed here ({exc}); install the extra: {EXTRA}") from None


def _train_task(train_one, config, params, index, n, splits, model_cls, key, keep_state,
                threads, device, pruner, analyze=None):
    """One combination in a Ray worker (``train_one``: ``GridRun.train_one``, i.e.
    ``quick_start._train_one``); returns ``(record, model payload)``."""
    import torch

    from mmrec_plugin.utils import set_threads

    set_threads(int(threads))
    cfg = config.copy()
    cfg["device"] = torch.device(device)
    on_eval = None
    if pruner is not None:
        import ray

        def on_eval(epoch, score):
            return ray.get(pruner.report.remote(index, epoch + 1, float(score)))

    return train_one(cfg, params, index, n, splits, model_cls, key, keep_state=keep_state,
                     on_eval=on_eval, analyze=analyze)


class _Pruner:
    """Ray Tune's ASHA scheduler behind a Ray actor: ``report(index, epochs, score)`` ->
    whether that combination may go on. Tune's scheduler interface identifies a run by
    ``trial.trial_id`` only."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: float):
        from ray.tune.schedulers import ASHAScheduler

        self.scheduler = ASHAScheduler(time_attr="epochs", metric="valid", mode="max",
                                       max_t=max_t, grace_period=grace_period,
                                       reduction_factor=reduction_factor)
        self.max_t = max_t
        self.trials: Dict[int, Any] = {}

    def report(self, index: int, epochs: int, score: float) -> bool:
        from types import SimpleNamespace

        from ray.tune.schedulers import TrialScheduler

        if epochs >= self.max_t:
            return True  # the last epoch: the combination ends anyway, it is not pruned
        trial = self.trials.get(index)
        if trial is None:
            trial = self.trials[index] = SimpleNamespace(trial_id=str(index))
            self.scheduler.on_trial_add(None, trial)
        action = self.scheduler.on_trial_result(None, trial, {"epochs": epochs, "valid": score})
        return action != TrialScheduler.STOP


def _pickle_model_by_value(model_cls) -> None:
    """A model class from a module a worker cannot import (loaded from a file path) travels
    by value (cloudpickle already sends ``__main__`` and unregistered modules that way)."""
    import sys

    import ray.cloudpickle

    module = sys.modules.get(getattr(model_cls, "__module__", "__main__"))
    if module is None or module.__name__ == "__main__":
        return
    try:
        importable = importlib.util.find_spec(module.__name__) is not None
    except (ImportError, ValueError):
        importable = False
    if not importable:
        ray.cloudpickle.register_pickle_by_value(module)


def _start_ray(address: Optional[str], n_cpus: int, want_gpus: bool) -> bool:
    """Start a local Ray instance (or join ``address``); True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    t0 = time.time()
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True,
                  configure_logging=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=n_cpus, num_gpus=None if want_gpus else 0,
                     **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = ""
        if address and address != "auto":
            hint = ("; a cluster with token authentication (the default of `ray start`) needs "
                    "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) "
                    "for an explicit address; on a node of the cluster, --ray-address auto "
                    "finds both")
        raise UserError(f"could not start or join {where}: {exc}{hint}") from None
    res = ray.cluster_resources()
    logger.info("Ray %s in %.1fs: %g CPU(s), %g GPU(s)", "joined" if address else "started",
                time.time() - t0, res.get("CPU", 0), res.get("GPU", 0))
    return True


def run_on_ray(run, splits, model_cls, threads: Optional[int] = None,
               workers: Optional[int] = None, address: Optional[str] = None,
               cpus_per_trial: float = 1.0, gpus_per_trial: Optional[float] = None,
               scheduler: Optional[str] = None, max_retries: int = DEFAULT_MAX_RETRIES,
               grace_period: int = 5, reduction_factor: float = 2.0) -> None:
    """Run the combinations of ``run`` (a ``GridRun``) on Ray (see the module docstring).

    Args:
        run: the grid run (claims, commits, summary).
        splits: ``(train, valid, test)`` datasets, shipped to the workers once.
        model_cls: the model class.
        threads: torch threads per worker (default 1).
        workers: combinations in flight at once (default: the cluster's CPUs divided by
            ``cpus_per_trial``); a local instance gets ``workers * cpus_per_trial`` CPUs.
        address: join this Ray cluster (``ray start --head`` printed it; ``auto``: the
            cluster this machine belongs to) instead of starting a local instance.
        cpus_per_trial, gpus_per_trial: Ray resources per combination (GPUs: default 1 when
            the config uses a GPU here, else 0; fractions share a device). A trial with a GPU
            trains on ``cuda`` (Ray sets its ``CUDA_VISIBLE_DEVICES``), else on the CPU.
        scheduler: None or ``'asha'`` (early termination on the validation metric).
        max_retries: reruns of a combination whose worker process died.
        grace_period, reduction_factor: ASHA's (in epochs).
    """
    import ray

    threads = int(threads or 1)
    cpus_per_trial = float(cpus_per_trial)
    device_here = str(run.config["device"])
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if device_here.startswith("cuda") else 0.0
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be a positive integer, got {workers}")
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    local_cpus = int(math.ceil((workers or os.cpu_count() or 1) * cpus_per_trial))
    started = _start_ray(address, local_cpus, gpus_per_trial > 0)
    run.t0 = time.time()  # the ETA counts training, not Ray's start
    inflight: Dict[Any, int] = {}
    try:
        have = ray.cluster_resources()
        if started and gpus_per_trial > have.get("GPU", 0):  # the task would wait forever
            raise UserError(f"--gpus-per-trial {gpus_per_trial:g}: this machine has "
                            f"{have.get('GPU', 0):g} GPU(s) for Ray; use --gpus-per-trial 0")
        if workers is None:
            workers = max(1, int(have.get("CPU", 1) // cpus_per_trial))
        logger.info("%d worker(s), %g CPU(s) and %g GPU(s) per combination, %d thread(s) each%s",
                    workers, cpus_per_trial, gpus_per_trial, threads,
                    f", scheduler {scheduler}" if scheduler else "")
        _pickle_model_by_value(model_cls)
        task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                          max_retries=max_retries, retry_exceptions=False)(_train_task)
        config_ref, splits_ref = ray.put(run.config), ray.put(splits)
        pruner = None
        if scheduler == "asha":
            max_t = int(run.config["epochs"])
            pruner = ray.remote(num_cpus=0)(_Pruner).remote(
                max_t, max(1, min(int(grace_period), max_t)), float(reduction_factor))
        device = "cuda" if gpus_per_trial > 0 else "cpu"
        while True:
            while len(inflight) < workers:
                index = run.claim_next(exclude=set(inflight.values()))
                if index is None:
                    break
                ref = task.remote(run.train_one, config_ref, run.grid[index], index, run.n,
                                  splits_ref, model_cls, run.keys[index], run.save_model,
                                  threads, device, pruner, run.analyze)
                inflight[ref] = index
            if not inflight:
                if not run.left():
                    break
                run.wait_for_others()
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=run.POLL_SECONDS)
            for ref in ready:
                index = inflight.pop(ref)
                try:
                    record, payload = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # raised by our code in the worker
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, UserError):
                        raise cause from None
                    raise
                except ray.exceptions.RayError as exc:  # the worker died, retries used up
                    logger.error("combination %d/%d (%s): its worker died %d time(s) (%s); "
                                 "left unfinished, rerun to train it", index + 1, run.n,
                                 run.describe(index), max_retries + 1,
                                 type(exc).__name__)
                    run.release(index, failed=True)
                    continue
                run.commit(index, record, payload)
    except BaseException:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


__all__ = ["run_on_ray", "require_ray", "SCHEDULERS", "DEFAULT_MAX_RETRIES"]
