"""How the combinations of one or more grids train: in this process, on a local process pool,
or on Ray (:mod:`mmrec_plugin.runs.ray`), behind one interface.

:func:`run_grids` is the one loop: it claims combinations from the grids in order
(:meth:`~mmrec_plugin.runs.grid.GridRun.claim_next`), keeps up to ``executor.workers`` of them
in flight, and commits each result in this process when it comes back (this process holds
the claims and is the only writer of the results folder). An executor only trains:

- :class:`Sequential`: one combination after another in this process (``--workers 1``);
- :class:`ProcessPool`: ``workers`` single-threaded worker processes on this machine (the
  default: ``min(cores // threads, combinations)``). Each worker trains a combination with
  :func:`~mmrec_plugin.runs.build.train_one` (writing its epoch checkpoints) and returns the
  record and the model payload. Results equal the sequential run's (each combination seeds
  its own generators). A worker that dies is retried (bounded) and then left for a rerun; a
  worker that outlives its parent (``kill -9`` of the run) stops itself.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from mmrec_plugin.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["Sequential", "ProcessPool", "default_executor", "run_grids", "Task"]

#: how often a combination whose worker process died is tried again
DEFAULT_MAX_RETRIES = 2
#: the environment variable that sets the default number of worker processes
WORKERS_VAR = "MMREC_PLUGIN_WORKERS"


class Task(dict):
    """What a worker needs to train one combination (picklable): config, params, key, index,
    n, analyze, keep_state, checkpoint, threads, model_cls."""


def _task(gr, index: int, threads: int) -> Task:
    return Task(config=gr.config, params=gr.grid[index], key=gr.keys[index], index=index, n=gr.n,
                analyze=gr.analyze, keep_state=gr.save_model, checkpoint=gr.checkpoint_path(index),
                threads=threads, model_cls=gr.model_cls)


def train_task(task: Task, on_eval=None, data=None):
    """Train one combination (in a worker or in this process): ``(record, payload)``."""
    from .build import train_one

    res = train_one(task["config"], task["params"], task["key"], task["index"], task["n"],
                    data=data, keep_state=task["keep_state"], on_eval=on_eval,
                    analyze=task["analyze"], checkpoint=task["checkpoint"],
                    model_cls=task.get("model_cls"))
    return res.record, res.state


class _Pending:
    """A task of :class:`Sequential`, trained when it is collected."""

    def __init__(self, task: Task):
        self.task = task


class Sequential:
    """Train in this process, one combination at a time."""

    workers = 1
    local = True
    pruning = False

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads

    def describe(self) -> str:
        return "in this process"

    def start(self) -> None:
        if self.threads:
            from mmrec_plugin.utils import set_threads

            set_threads(int(self.threads))

    def submit(self, task: Task):
        return _Pending(task)  # trained on collect

    def wait(self, handles: Sequence, timeout: float) -> List:
        return list(handles)[:1]

    def collect(self, handle):
        return train_task(handle.task)

    def cancel(self, handles: Sequence) -> None:
        pass

    def stop(self) -> None:
        pass


def _worker_init(level: int, log_path: Optional[str], parent: int, threads: int) -> None:
    """A pool worker: one torch thread, the parent's log level and log file, and a watchdog
    that ends the worker when its parent is gone (``kill -9`` of the run)."""
    from mmrec_plugin.utils import set_threads, tune_allocator

    tune_allocator()
    set_threads(int(threads))
    root = logging.getLogger()
    root.handlers[:] = []
    fmt = logging.Formatter("%(asctime)s %(levelname).1s [worker %(process)d] %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler()
    stream.setFormatter(fmt)
    stream.setLevel(level)
    root.addHandler(stream)
    if log_path:
        fh = logging.FileHandler(log_path, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s [worker %(process)d] %(message)s",
                                          "%Y-%m-%d %H:%M:%S"))
        fh.setLevel(logging.INFO)
        root.addHandler(fh)
    root.setLevel(min(level, logging.INFO) if log_path else level)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class ProcessPool:
    """Train on ``workers`` local worker processes (spawned, ``threads`` torch threads each)."""

    local = True
    pruning = False

    def __init__(self, workers: int, threads: int = 1, max_retries: int = DEFAULT_MAX_RETRIES):
        if workers < 1:
            raise UserError(f"--workers must be a positive integer, got {workers}")
        self.workers, self.threads, self.max_retries = int(workers), int(threads), int(max_retries)
        self.pool = None
        self.tries: Dict[Any, int] = {}

    def describe(self) -> str:
        return f"{self.workers} worker processes, {self.threads} thread(s) each"

    def start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        handlers = [h for h in logging.getLogger("mmrec_plugin").handlers
                    if isinstance(h, logging.FileHandler)]
        log_path = handlers[-1].baseFilename if handlers else None
        level = next((h.level for h in logging.getLogger().handlers if h.level), None) \
            or logging.getLogger().getEffectiveLevel()
        self.pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(level, log_path, os.getpid(), self.threads))

    def submit(self, task: Task):
        fut = self.pool.submit(train_task, task)
        fut.task = task
        return fut

    def wait(self, handles: Sequence, timeout: float) -> List:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def collect(self, handle):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.result()
        except BrokenProcessPool:
            self._restart()
            raise WorkerDied(handle.task, pool_down=True) from None

    def _restart(self) -> None:
        """A worker died: every future of the pool fails; start a fresh pool."""
        try:
            self.pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a broken pool may fail to shut down cleanly
            pass
        self.start()

    def cancel(self, handles: Sequence) -> None:
        for fut in handles:
            fut.cancel()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class WorkerDied(Exception):
    """The process training a task is gone (killed, out of memory)."""

    def __init__(self, task: Task, pool_down: bool = False, deaths: int = 1):
        super().__init__(f"worker died training combination {task['index'] + 1}")
        self.task = task
        self.pool_down = pool_down  # every task in flight died with it
        self.deaths = deaths  # how often it died (an engine that retries itself: more than 1)


def _picklable_by_reference(model_cls: type) -> bool:
    import importlib.util
    import sys

    module = getattr(model_cls, "__module__", "")
    if module == "__main__":
        return bool(getattr(sys.modules.get("__main__"), "__file__", None))
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_executor(config, n_combinations: int, workers: Optional[int] = None,
                     threads: int = 1):
    """The executor a grid uses without a flag: a :class:`ProcessPool` of
    ``min(cores // threads, combinations)`` workers (``workers`` when given, else the
    environment's ``MMREC_PLUGIN_WORKERS`` when set), or
    :class:`Sequential` for one worker, a GPU run, or a model class that a worker process
    cannot import (registered at run time from a file)."""
    from mmrec_plugin.registry import get_model

    threads = max(1, int(threads or 1))
    if workers is None and os.environ.get(WORKERS_VAR, "").strip():
        text = os.environ[WORKERS_VAR].strip()
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"{WORKERS_VAR}={text!r}: expected a positive integer")
        workers = min(int(text), max(1, n_combinations))
    if workers is None:
        workers = max(1, min((os.cpu_count() or 1) // threads, n_combinations))
        if str(config["device"]).startswith("cuda"):
            workers = 1  # one GPU: combinations take turns
    if workers > 1 and not _picklable_by_reference(get_model(config["model"])):
        logger.info("model %s is defined where worker processes cannot import it; training in "
                    "this process", config["model"])
        workers = 1
    return Sequential(threads) if workers == 1 else ProcessPool(workers, threads)


def run_grids(grids: Sequence, executor) -> None:
    """Train every combination left in ``grids`` with ``executor`` (module docstring)."""
    executor.start()
    inflight: Dict[Any, tuple] = {}
    tries: Dict[tuple, int] = {}
    try:
        while True:
            for gr in grids:
                while len(inflight) < executor.workers:
                    busy = {i for g, i in inflight.values() if g is gr}
                    index = gr.claim_next(exclude=busy)
                    if index is None:
                        break
                    task = _task(gr, index, getattr(executor, "threads", None) or 1)
                    inflight[executor.submit(task)] = (gr, index)
            if not inflight:
                if not any(gr.left() for gr in grids):
                    break
                for gr in grids:
                    if gr.left():
                        gr.wait_for_others()
                        break
                continue
            for handle in executor.wait(list(inflight), timeout=grids[0].POLL_SECONDS):
                gr, index = inflight.pop(handle)
                try:
                    record, payload = executor.collect(handle)
                except WorkerDied as died:
                    n = tries[(id(gr), index)] = tries.get((id(gr), index), 0) + died.deaths
                    if n > getattr(executor, "max_retries", 0):
                        logger.error("combination %d/%d (%s): its worker died %d time(s); left "
                                     "unfinished, rerun to train it", index + 1, gr.n,
                                     gr.describe(index), n)
                        gr.release(index, failed=True)
                    else:
                        logger.warning("combination %d/%d: its worker died; trying again (%d of "
                                       "%d)", index + 1, gr.n, n, executor.max_retries)
                        gr.release(index)
                    if died.pool_down:  # the other tasks in flight died with the pool
                        for other, (g2, i2) in list(inflight.items()):
                            inflight.pop(other)
                            g2.release(i2)
                    continue
                except BaseException:
                    gr.release(index)
                    raise
                gr.commit(index, record, payload)
    except BaseException:
        executor.cancel(list(inflight))
        for gr, index in inflight.values():
            gr.release(index)
        raise
    finally:
        executor.stop()
