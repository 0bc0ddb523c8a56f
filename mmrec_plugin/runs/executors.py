"""How the combinations of one or more grids train: in this process, on a local process pool,
or on Ray (:mod:`mmrec_plugin.runs.ray`), behind one interface.

:func:`run_grids` is the one loop: it claims combinations from the grids in order
(:meth:`~mmrec_plugin.runs.grid.GridRun.claim_next`), keeps up to ``executor.workers`` of them
in flight, and commits each result in this process when it comes back (this process holds
the claims and is the only writer of the results folder). An executor only trains:

- :class:`Sequential`: one combination after another in this process (``--workers 1``);
- :class:`ProcessPool`: up to ``workers`` single-threaded worker processes on this machine at
  once (the default: ``min(cores // threads, combinations)``), one per combination. Each
  trains its combination with :func:`~mmrec_plugin.runs.build.train_one` (writing its epoch
  checkpoints) and returns the record and the model payload. Results equal the sequential
  run's (each combination seeds its own generators). A worker that dies is retried
  (bounded) and then left for a rerun; a worker that outlives its parent (``kill -9`` of the
  run) stops itself.
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


def _child(task: Task, conn, level: int, log_path: Optional[str], parent: int, threads: int) -> None:
    """A worker process: train one task, send back ``('ok', (record, payload))`` or
    ``('error', exception, traceback text)``."""
    _worker_init(level, log_path, parent, threads)
    try:
        record, payload = train_task(_from_file(task))
        # tensors as bytes: torch's own pickling shares memory that ends with this process
        out = ("ok", (record, None if payload is None else _to_bytes(payload)))
    except BaseException as exc:  # (sent to the parent, which raises it)
        import traceback

        out = ("error", exc, traceback.format_exc())
    try:
        conn.send(out)
    except Exception as exc:  # an exception that does not pickle: its text
        conn.send(("error", RuntimeError(str(exc)), ""))
    conn.close()


def _to_bytes(payload) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _from_bytes(data: bytes):
    import io

    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class _Job:
    def __init__(self, process, conn, task: Task):
        self.process, self.conn, self.task = process, conn, task


class ProcessPool:
    """Train on up to ``workers`` local worker processes at once (spawned, ``threads`` torch
    threads each): one process per combination, so a worker that dies is known exactly."""

    local = True
    pruning = False

    def __init__(self, workers: int, threads: int = 1, max_retries: int = DEFAULT_MAX_RETRIES):
        if workers < 1:
            raise UserError(f"--workers must be a positive integer, got {workers}")
        self.workers, self.threads, self.max_retries = int(workers), int(threads), int(max_retries)
        self.jobs: List[_Job] = []

    def describe(self) -> str:
        return f"{self.workers} worker processes, {self.threads} thread(s) each"

    def start(self) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        handlers = [h for h in logging.getLogger("mmrec_plugin").handlers
                    if isinstance(h, logging.FileHandler)]
        self.log_path = handlers[-1].baseFilename if handlers else None
        self.level = next((h.level for h in logging.getLogger().handlers if h.level), None) \
            or logging.getLogger().getEffectiveLevel()

    def submit(self, task: Task) -> _Job:
        receive, send = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(target=_child, name=f"combination-{task['index'] + 1}",
                                   args=(_by_file(task), send, self.level, self.log_path, os.getpid(),
                                         self.threads))
        process.start()
        send.close()
        job = _Job(process, receive, task)
        self.jobs.append(job)
        return job

    def wait(self, handles: Sequence[_Job], timeout: float) -> List[_Job]:
        from multiprocessing.connection import wait

        by = {}
        for job in handles:
            by[job.conn] = job
            by[job.process.sentinel] = job
        ready = wait(list(by), timeout=timeout)
        return list(dict.fromkeys(by[r] for r in ready))

    def collect(self, job: _Job):
        try:
            message = job.conn.recv()
        except (EOFError, OSError):
            message = None  # the process ended without an answer: it died
        finally:
            job.conn.close()
            job.process.join()
            self.jobs.remove(job)
        if message is None:
            raise WorkerDied(job.task)
        if message[0] == "error":
            exc = message[1]
            if not isinstance(exc, (UserError, KeyboardInterrupt)) and message[2]:
                logger.error("combination %d failed in its worker:\n%s", job.task["index"] + 1, message[2])
            raise exc
        record, payload = message[1]
        return record, (None if payload is None else _from_bytes(payload))

    def cancel(self, handles: Sequence[_Job]) -> None:
        for job in handles:
            if job.process.is_alive():
                job.process.terminate()

    def stop(self) -> None:
        for job in list(self.jobs):
            if job.process.is_alive():
                job.process.terminate()
            job.process.join()
            job.conn.close()
        self.jobs = []


class WorkerDied(Exception):
    """The process training a task is gone (killed, out of memory)."""

    def __init__(self, task: Task, deaths: int = 1):
        super().__init__(f"worker died training combination {task['index'] + 1}")
        self.task = task
        self.deaths = deaths  # how often it died (an engine that retries itself: more than 1)


def importable_elsewhere(module_name: str) -> bool:
    """Whether a fresh process could import ``module_name`` by name (a module loaded here from
    a file path, such as a model in ``./src/models/``, is in ``sys.modules`` but cannot be)."""
    import importlib.util
    import sys

    top = module_name.split(".")[0]
    saved = sys.modules.pop(top, None)  # find_spec answers from sys.modules when it can
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False
    finally:
        if saved is not None:
            sys.modules[top] = saved


def _picklable_by_reference(model_cls: type) -> bool:
    import sys

    module = getattr(model_cls, "__module__", "")
    if module == "__main__":
        return bool(getattr(sys.modules.get("__main__"), "__file__", None))
    return importable_elsewhere(module) or _source_file(model_cls) is not None


def _source_file(model_cls: type) -> Optional[str]:
    """The file a model class was loaded from, when a worker can load it from there too."""
    import sys

    path = getattr(sys.modules.get(getattr(model_cls, "__module__", "")), "__file__", None)
    return path if path and os.path.isfile(path) else None


def _by_file(task: Task) -> Task:
    """``task`` with a model class from a file-loaded module replaced by where to find it."""
    cls = task.get("model_cls")
    if cls is None or cls.__module__ == "__main__" or importable_elsewhere(cls.__module__):
        return task
    path = _source_file(cls)
    if path is None:
        return task
    return Task(task, model_cls=("file", cls.__module__, path, cls.__qualname__))


def _from_file(task: Task) -> Task:
    """Undo :func:`_by_file` in the worker: load the module from its file under its name."""
    ref = task.get("model_cls")
    if not (isinstance(ref, tuple) and ref and ref[0] == "file"):
        return task
    import importlib.util
    import sys

    _, name, path, qualname = ref
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    cls = module
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return Task(task, model_cls=cls)


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
    """Train every combination left in ``grids`` with ``executor`` (module docstring); an
    executor that trains whole batches (Ray Tune) claims and commits through ``run_batch``."""
    if getattr(executor, "batch", False):
        executor.run_batch(grids)
        return
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
                if handle not in inflight:
                    continue
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
