"""One run: the dataset, loaders, model, trainer and evaluator of one combination, built once.

:func:`build` makes a :class:`Run` from a config (and a combination's values): it seeds
``random``, numpy and torch with the combination's seed, builds the training loader and
the valid and test loaders, calls ``train_data.pretrain_setup()``, builds a fresh model
through the registry and a :class:`~mmrec_plugin.host.trainer.Trainer`, in MMRec's order.
:func:`train_one` trains a combination and returns a :class:`Result` (its record and the
payload of its model file); it writes nothing but its epoch checkpoints. Every command
trains, evaluates and ranks through these (grid search, compare, analyze, bench,
recommend): none builds loaders or an evaluator itself.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

from mmrec_plugin.utils import jsonable

from .records import now, provenance

logger = logging.getLogger(__name__)

__all__ = ["Data", "Run", "Result", "load_data", "build", "train_one", "init_seed", "SPLITS"]

SPLITS = ("valid", "test")
#: the config keys that decide what the dataset's splits are
DATA_KEYS = ("data_path", "dataset", "inter_file_name", "field_separator", "USER_ID_FIELD",
             "ITEM_ID_FIELD", "inter_splitting_label")


def init_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclasses.dataclass
class Data:
    """A dataset read once: the whole file and its ``train`` / ``valid`` / ``test`` splits
    (:class:`~mmrec_plugin.host.dataset.RecDataset` objects sharing the user and item counts)."""

    full: Any
    train: Any
    valid: Any
    test: Any
    #: the sorted cold item ids of a cold-item split (its ``.cold`` file), else None
    cold: Optional[np.ndarray] = None

    def split(self, name: str):
        if name not in ("train",) + SPLITS:
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)


_DATA: Dict[str, Data] = {}


def load_data(config, cache: bool = True) -> Data:
    """Read and split the dataset of ``config`` (once per process and dataset with ``cache``:
    a file changed on disk is read again)."""
    from mmrec_plugin.host.dataset import RecDataset

    folder = os.path.join(str(config["data_path"]), str(config["dataset"]))
    inter = os.path.join(folder, str(config["inter_file_name"]))
    try:
        stamp = os.stat(inter).st_mtime_ns
    except OSError:
        stamp = None
    key = repr([str(config.get(k)) for k in DATA_KEYS] + [stamp])
    if cache and key in _DATA:
        return _DATA[key]
    from mmrec_plugin.host.cold import read_cold_items

    full = RecDataset(config)
    data = Data(full, *full.split(), cold=read_cold_items(config, full.get_item_num()))
    if cache:
        _DATA.clear()  # one dataset at a time: a study over many datasets must not hold them all
        _DATA[key] = data
    return data


@dataclasses.dataclass
class Result:
    """A trained combination: its ``record`` (what the results JSON lists) and ``state`` (the
    payload of its model file: best-valid ``state_dict`` on the CPU, config, params, best
    epoch, provenance; None for a combination that diverged or was pruned). ``run`` is the
    trained :class:`Run` when it was kept (in-process training only)."""

    record: Dict[str, Any]
    state: Optional[Dict[str, Any]] = None
    run: Optional["Run"] = None


@dataclasses.dataclass
class Run:
    """The pieces of one combination (see the module docstring), built once by :func:`build`."""

    config: Any
    params: Dict[str, Any]
    data: Data
    train_data: Any
    valid_data: Any
    test_data: Any
    model: Any
    trainer: Any
    #: the combination's record and model file, for a Run rebuilt from a results file
    record: Optional[Dict[str, Any]] = None
    model_path: Optional[str] = None

    @property
    def evaluator(self):
        return self.trainer.evaluator

    def loader(self, split: str):
        """The evaluation loader of ``split`` (``valid`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected valid or test")
        return self.valid_data if split == "valid" else self.test_data

    def evaluate(self, split: str = "test") -> Dict[str, float]:
        """The configured metrics of the model as it is, ranked as the trainer ranks."""
        return self.trainer.evaluate(self.loader(split))

    def per_user(self, split: str = "test") -> Dict[str, np.ndarray]:
        """Each evaluated user's metrics: ``{'users': int64[N], '<metric>@<K>': float64[N]}``,
        users in increasing id order; their means are :meth:`evaluate`'s result."""
        import torch

        from mmrec_plugin.host.evaluator import rank_loader

        loader = self.loader(split)
        self.model.eval()
        with torch.no_grad():
            top = rank_loader(self.model, loader, self.evaluator.max_k)
        out = self.evaluator.evaluate_per_user(top, loader)
        out["users"] = np.asarray(loader.eval_users, dtype=np.int64)
        return out

    def rank(self, users: np.ndarray, k: int, mask, batch_size: Optional[int] = None,
             progress: Optional[Callable[[int], None]] = None):
        """The ``k`` best items of ``users`` (dataset ids) with the (user, item) pairs of the
        scipy CSR ``mask`` excluded, ranked as the trainer ranks
        (:func:`~mmrec_plugin.host.evaluator.rank_batch`), in batches of ``batch_size`` users
        (default ``eval_batch_size``): ``(items int64[n, k], scores float32[n, k])``; a user
        with fewer than ``k`` items left gets item -1 and score NaN in the remaining places.
        ``progress(done)`` is called after every batch."""
        import torch

        from mmrec_plugin.host.evaluator import MASKED, rank_batch

        users = np.asarray(users, dtype=np.int64)
        bs = int(batch_size or self.config["eval_batch_size"])
        device = self.config["device"]
        items = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(users), bs):
                ub = users[start:start + bs]
                sub = mask[ub]
                rows = np.repeat(np.arange(len(ub), dtype=np.int64), np.diff(sub.indptr))
                cols = sub.indices.astype(np.int64)
                batch = [torch.as_tensor(ub, device=device),
                         torch.as_tensor(np.stack([rows, cols]), device=device)]
                top, val = rank_batch(self.model, batch, k, with_scores=True)
                items[start:start + len(ub)] = top.numpy()
                scores[start:start + len(ub)] = val.numpy()
                if progress is not None:
                    progress(start + len(ub))
        padded = scores <= MASKED / 2
        items[padded], scores[padded] = -1, np.nan
        return items, scores

    def cold_metrics(self) -> Dict[str, Dict[str, float]]:
        """On a cold-item split: ``valid_cold`` / ``test_cold`` (held-out cold items ranked
        among the cold items) and ``valid_warm`` / ``test_warm`` (the usual ranking, warm
        items as ground truth) of the model as it is (:mod:`mmrec_plugin.host.cold`); else {}."""
        from mmrec_plugin.host.cold import ColdEvalDataLoader, warm_only
        from mmrec_plugin.host.dataloader import EvalDataLoader

        if self.data.cold is None:
            return {}
        out = {}
        bs = self.config["eval_batch_size"]
        for split in SPLITS:
            ds = self.data.split(split)
            out[f"{split}_cold"] = self.trainer.evaluate(ColdEvalDataLoader(self.config, ds, self.data.cold, bs))
            warm = EvalDataLoader(self.config, warm_only(ds, self.data.cold),
                                  additional_dataset=self.data.train, batch_size=bs)
            out[f"{split}_warm"] = self.trainer.evaluate(warm)
        return out

    def fit(self, on_eval: Optional[Callable] = None, on_epoch: Optional[Callable] = None):
        """Train (early stopping on valid); returns the trainer's ``(score, valid, test)``."""
        return self.trainer.fit(self.train_data, self.valid_data, self.test_data, on_eval=on_eval,
                                on_epoch=on_epoch)


def build(config, params: Optional[Mapping[str, Any]] = None, data: Optional[Data] = None,
          model_cls: Optional[type] = None) -> Run:
    """Build the :class:`Run` of ``config`` with the combination ``params`` set (see the
    module docstring); ``model_cls``: the model class (default: the registry's for
    ``config['model']``; a worker process is handed the class of the process that claimed
    the combination, which may have registered it at run time)."""
    from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
    from mmrec_plugin.host.trainer import Trainer
    from mmrec_plugin.registry import get_model

    cfg = config.with_params(params or {})
    seed = cfg["seed"][0] if isinstance(cfg["seed"], list) else cfg["seed"]
    data = data if data is not None else load_data(cfg)
    init_seed(int(seed))
    train_data = TrainDataLoader(cfg, data.train, batch_size=cfg["train_batch_size"], shuffle=True)
    valid_data = EvalDataLoader(cfg, data.valid, additional_dataset=data.train,
                                batch_size=cfg["eval_batch_size"])
    test_data = EvalDataLoader(cfg, data.test, additional_dataset=data.train,
                               batch_size=cfg["eval_batch_size"])
    train_data.pretrain_setup()
    check_memory(cfg, data)
    model = (model_cls or get_model(cfg["model"]))(cfg, train_data).to(cfg["device"])
    trainer = Trainer(cfg, model)
    return Run(cfg, dict(params or {}), data, train_data, valid_data, test_data, model, trainer)


#: float32 copies of the embedding tables a training step keeps (weights, gradients, two Adam
#: moments, the best-valid copy, layer activations and their gradients): a lower estimate
EMBEDDING_COPIES = 16


def check_memory(config, data: Data) -> None:
    """Refuse a setting whose embedding tables alone cannot fit, before allocating them:
    ``(n_users + n_items) x embedding_size`` floats, :data:`EMBEDDING_COPIES` times
    (:func:`mmrec_plugin.limits.check_allocation`; ``--embedding_size 10000000`` is one error
    line, not an allocation traceback)."""
    from mmrec_plugin.limits import check_allocation

    d = config.get("embedding_size")
    if not isinstance(d, int):
        return
    rows = data.full.get_user_num() + data.full.get_item_num()
    check_allocation(4.0 * rows * d * EMBEDDING_COPIES,
                     f"{config['model']} with embedding_size {d} on {rows} users and items",
                     "lower --embedding_size")


def model_payload(run: Run, provenance_: Dict[str, Any]) -> Dict[str, Any]:
    """What a model file holds: the best-valid weights (CPU) and where they come from."""
    from mmrec_plugin.host.trainer import state_copy

    state = run.trainer.best_state or run.model.state_dict()
    return {
        "format": "mmrec_plugin.model/2", "state_dict": state_copy(state, "cpu"),
        "config": run.config.to_dict(), "params": jsonable(run.params),
        "best_epoch": run.trainer.best_epoch, "provenance": provenance_,
    }


def train_one(config, params: Mapping[str, Any], key: str, index: int = 0, n: int = 1,
              data: Optional[Data] = None, keep_state: bool = True,
              on_eval: Optional[Callable[[int, float, Any], bool]] = None,
              analyze: Optional[Callable] = None, checkpoint: Optional[str] = None,
              keep_run: bool = False, model_cls: Optional[type] = None) -> Result:
    """Train one combination of ``config``'s grid and return its :class:`Result`.

    Args:
        config: the grid's Config; ``params``: the combination's values.
        key: its store key (the record's ``id`` is ``key[:12]``).
        index, n: its place in the grid (for messages and the record).
        data: the dataset (default: :func:`load_data`).
        keep_state: return the model file's payload.
        on_eval: :meth:`Trainer.fit`'s hook; a combination it stops is recorded with
            ``status: 'pruned'`` (its results so far, no model file).
        analyze: ``analyze(model, config, train_dataset, test_dataset) -> dict | None``, run
            on the best model of a finished combination and recorded under ``'analysis'``.
        checkpoint: a file for epoch checkpoints: written after every epoch, and a run
            killed mid-training resumes from it (same final result as without the kill).
        keep_run: return the trained :class:`Run` in ``Result.run``.
        model_cls: the model class (see :func:`build`).
    """
    from mmrec_plugin.host.trainer import NanLossError
    from mmrec_plugin.registry import get_model

    from . import checkpoints

    started = now()
    model_cls = model_cls or get_model(config["model"])
    run = build(config, params, data, model_cls)
    cfg = run.config
    record: Dict[str, Any] = {
        "id": key[:12], "index": index, "params": jsonable(dict(params)), "config": cfg.to_dict(),
        "best_epoch": None, "valid": None, "test": None, "seconds": None, "status": None,
        "model_path": None,
    }
    on_epoch = None
    if checkpoint is not None:
        state = checkpoints.read(checkpoint, key)
        if state is not None:
            run.trainer.load_state_dict(state["trainer"], run.train_data)
            logger.info("combination %d/%d: resuming at epoch %d from its checkpoint", index + 1, n,
                        run.trainer.start_epoch)

        def on_epoch(trainer):
            checkpoints.write(checkpoint, key, trainer, run.train_data)

    t0 = time.time()
    try:
        _, valid_result, test_result = run.fit(on_eval=on_eval, on_epoch=on_epoch)
    except NanLossError as exc:
        record.update(status="nan", seconds=time.time() - t0, error=str(exc),
                      history=jsonable(run.trainer.history),
                      provenance=provenance(cfg, model_cls, started))
        logger.error("combination %d/%d: %s; this combination is skipped, the grid goes on",
                     index + 1, n, exc)
        return Result(record, None, run if keep_run else None)
    trainer = run.trainer
    prov = provenance(cfg, model_cls, started)
    record.update(status="pruned" if trainer.pruned else "ok", seconds=time.time() - t0,
                  best_epoch=trainer.best_epoch, valid=jsonable(valid_result),
                  test=jsonable(test_result), history=jsonable(trainer.history), provenance=prov)
    if trainer.pruned:
        return Result(record, None, run if keep_run else None)
    for name, metrics in run.cold_metrics().items():  # (a cold-item split only)
        record[name] = jsonable(metrics)
    analysis = analyze(run.model, cfg, run.data.train, run.data.test) if analyze is not None else None
    if analysis is not None:
        record["analysis"] = analysis
    payload = model_payload(run, prov) if keep_state else None
    return Result(record, payload, run if keep_run else None)

