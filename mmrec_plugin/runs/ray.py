"""Grid combinations on Ray workers (``--ray-address``, ``--scheduler``; the ``distributed``
extra). Imported only when those flags are given: the default path never imports Ray.

:class:`Ray` is an executor of :func:`mmrec_plugin.runs.executors.run_grids`: the driver
claims combinations in the results store exactly as the other executors do (so it
cooperates with other runs of the same grid in the same folder), keeps up to ``workers``
of them in flight as Ray tasks (``ray.remote``), and commits each result when its task
returns. The driver is the only writer of the store, the model files and the JSON summary;
a worker only trains (:func:`mmrec_plugin.runs.build.train_one`) and returns the record and
the best ``state_dict``. The driver's dataset splits travel through Ray's object store; a multimodal model reads its
feature files from the config's ``data_path``, which every node then needs.

Failures:

- a worker process that dies (killed, out of memory, a lost node) is retried by Ray up to
  ``max_retries`` times; after that the combination is released unfinished (logged; a
  rerun trains it) and the grid goes on;
- a user error raised in a worker (a bad config value) stops the grid with that error;
- the driver killed with ``kill -9``: committed combinations stay, the claims of those in
  flight go stale with the driver's process, and the rerun trains exactly those;
- Ctrl-C: tasks in flight are cancelled, their claims released, Ray shut down.

``--scheduler asha``: :class:`mmrec_plugin.runs.tune.RayTune`, the grid through Ray Tune's
``Tuner`` with its ``ASHAScheduler``.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Optional

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


def _on_device(task, threads, device):
    """``task`` with its config's device set to ``device`` here, torch at ``threads``."""
    import torch

    from mmrec_plugin.utils import set_threads

    set_threads(int(threads))
    task = dict(task)
    task["config"] = task["config"].copy()
    task["config"]["device"] = torch.device(device)
    return task


def _train_task(task, threads, device, data):
    """One combination in a Ray worker: ``(record, model payload)``; ``data``: the driver's
    dataset splits (from Ray's object store)."""
    from .executors import train_task

    return train_task(_on_device(task, threads, device), data=data)


def _pickle_model_by_value(model_cls) -> None:
    """A model class from a module a worker cannot import (loaded from a file path) travels
    by value (cloudpickle already sends ``__main__`` and unregistered modules that way)."""
    import sys

    import ray.cloudpickle

    from .executors import importable_elsewhere

    module = sys.modules.get(getattr(model_cls, "__module__", "__main__"))
    if module is None or module.__name__ == "__main__":
        return
    if not importable_elsewhere(module.__name__):
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


class Ray:
    """An executor (:mod:`mmrec_plugin.runs.executors`) that trains combinations as Ray tasks.

    Args:
        threads: torch threads per worker (default 1).
        workers: combinations in flight at once (default: the cluster's CPUs divided by
            ``cpus_per_trial``); a local instance gets ``workers * cpus_per_trial`` CPUs.
        address: join this Ray cluster (``ray start --head`` printed it; ``auto``: the
            cluster this machine belongs to; ``local`` or None: start a local instance).
        cpus_per_trial, gpus_per_trial: Ray resources per combination (GPUs: default 1 when
            the config uses a GPU here, else 0; fractions share a device). A trial with a GPU
            trains on ``cuda`` (Ray sets its ``CUDA_VISIBLE_DEVICES``), else on the CPU.
        max_retries: reruns of a combination whose worker process died.
        grace_period, reduction_factor: ASHA's (in epochs).
    """

    local = False  # workers may be on other machines: no checkpoints in the results folder

    def __init__(self, config, threads: Optional[int] = None, workers: Optional[int] = None,
                 address: Optional[str] = None, cpus_per_trial: Optional[float] = None,
                 gpus_per_trial: Optional[float] = None, max_retries: int = DEFAULT_MAX_RETRIES):
        require_ray()
        self.config = config
        self.threads = int(threads or 1)
        self.cpus_per_trial = float(1.0 if cpus_per_trial is None else cpus_per_trial)
        device_here = str(config["device"])
        if gpus_per_trial is None:
            gpus_per_trial = 1.0 if device_here.startswith("cuda") else 0.0
        self.gpus_per_trial = float(gpus_per_trial)
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be a positive integer, got {workers}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        self.address = None if address in (None, "local") else address
        self.requested = workers
        self.workers = workers or 1
        self.ray_retries = int(max_retries)
        self.max_retries = 0  # Ray retries a dead worker itself; after that the grid gives up
        self.started = False

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        return (f"Ray ({where}), {self.cpus_per_trial:g} CPU(s) and {self.gpus_per_trial:g} "
                f"GPU(s) per combination")

    def start(self) -> None:
        import ray

        local_cpus = int(math.ceil((self.requested or os.cpu_count() or 1) * self.cpus_per_trial))
        self.started = _start_ray(self.address, local_cpus, self.gpus_per_trial > 0)
        have = ray.cluster_resources()
        if self.started and self.gpus_per_trial > have.get("GPU", 0):  # would wait forever
            raise UserError(f"--gpus-per-trial {self.gpus_per_trial:g}: this machine has "
                            f"{have.get('GPU', 0):g} GPU(s) for Ray; use --gpus-per-trial 0")
        self.workers = self.requested or max(1, int(have.get("CPU", 1) // self.cpus_per_trial))
        logger.info("Ray: %d worker(s), %d thread(s) each", self.workers, self.threads)
        from mmrec_plugin.registry import get_model

        _pickle_model_by_value(get_model(self.config["model"]))
        self.task = ray.remote(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial,
                               max_retries=self.ray_retries, retry_exceptions=False)(_train_task)
        self.device = "cuda" if self.gpus_per_trial > 0 else "cpu"
        self.data_refs = {}

    def data_ref(self, config):
        """The dataset splits of ``config`` in Ray's object store (put once)."""
        import ray

        from .build import load_data

        key = id(config)
        if key not in self.data_refs:
            self.data_refs[key] = ray.put(load_data(config))
        return self.data_refs[key]

    def submit(self, task):
        return self.task.remote(task, self.threads, self.device, self.data_ref(task["config"]))

    def wait(self, handles, timeout: float):
        import ray

        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def collect(self, ref):
        import ray

        from .executors import WorkerDied

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised by our code in the worker
            cause = getattr(exc, "cause", None)
            if isinstance(cause, UserError):
                raise cause from None
            raise
        except ray.exceptions.RayError:  # the worker died, Ray's retries used up
            raise WorkerDied({"index": -1}, deaths=self.ray_retries + 1) from None

    def cancel(self, handles) -> None:
        import ray

        for ref in handles:
            ray.cancel(ref, force=True)

    def stop(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


__all__ = ["Ray", "require_ray", "SCHEDULERS", "DEFAULT_MAX_RETRIES"]
