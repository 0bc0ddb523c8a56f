"""The training loop, evaluation and early stopping (MMRec's Trainer, stricter).

Per epoch: ``model.train()``, ``model.pre_epoch_processing()``, then for each batch
``loss = model.calculate_loss(batch)`` (a tuple is summed; a model that leaves its named loss
terms in ``model.last_loss_terms`` gets each term's epoch sum logged and kept in
``history[e]["terms"]``), backward, optional gradient
clipping (``clip_grad_norm``), an optimiser step; then ``model.post_epoch_processing()``
(a returned string is logged) and one step of the learning-rate schedule
``lr_epoch = learning_rate * a ** (epoch / b)`` for ``learning_rate_scheduler = [a, b]``.

Every ``eval_step`` epochs the valid and test loaders are ranked in full (training items set to
``-1e10``; the ``max(topk)`` best by :func:`~mmrec_plugin.host.evaluator.rank_loader`, which
gives ``torch.topk``'s result, cheaper on CPU). Early stopping follows MMRec: the valid score ``valid_metric`` improves
when strictly greater than the best so far; otherwise a counter grows, and training stops
once it exceeds ``stopping_step`` (so after ``stopping_step + 1`` evaluations in a row
without improvement). The state at the best valid evaluation is kept
(``best_state``) and restored into the model at the end. A NaN or infinite loss raises
:class:`NanLossError` instead of being swallowed.

:meth:`Trainer.state_dict` / :meth:`Trainer.load_state_dict` carry everything a run needs to
continue exactly where it stopped (model, optimiser, schedule, early-stopping state, history,
random generators): the run pipeline checkpoints every epoch and a killed combination
resumes at its last finished epoch, with the same final result.

Args (config keys; the Config has checked them, :mod:`mmrec_plugin.host.schema`):
    learner (str): adam (torch's fused Adam where available) | sgd | adagrad | rmsprop.
    learning_rate (float), weight_decay (float, default 0),
    learning_rate_scheduler ([a, b], default [1.0, 50]),
    epochs (int), eval_step (int), stopping_step (int),
    valid_metric (str, e.g. ``Recall@20``), metrics, topk,
    clip_grad_norm (None, a number = max_norm, or a dict of ``clip_grad_norm_`` arguments).
"""
from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from mmrec_plugin.errors import ConfigError, UserError
from mmrec_plugin.host.evaluator import Evaluator, rank_loader
from mmrec_plugin.host.schema import check_config, parse_metric

logger = logging.getLogger(__name__)

LEARNERS = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(learner: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser ``LEARNERS[learner]``. Adam uses torch's fused kernel where it exists
    (torch >= 2.4 on CPU, CUDA): one pass over the parameters instead of about seven
    (BRMRS's 3.4M parameters on Baby: 2.2 ms vs 14.4 ms per step, one CPU thread); the
    same update up to float rounding. Otherwise, e.g. an older torch, the default Adam."""
    cls = LEARNERS[learner]
    if cls is torch.optim.Adam and params:
        try:
            return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (TypeError, RuntimeError, ValueError):  # no fused kernel for this torch/device
            pass
    return cls(params, lr=lr, weight_decay=weight_decay)


def state_copy(state: Dict, device=None) -> Dict:
    """A detached copy of a ``state_dict`` (on ``device`` when given); entries that are not
    tensors (a module's ``get_extra_state``) are deep-copied."""
    import copy

    out = {}
    for k, v in state.items():
        if torch.is_tensor(v):
            v = v.detach()
            out[k] = v.to(device) if device is not None and v.device != torch.device(device) else v.clone()
        else:
            out[k] = copy.deepcopy(v)
    return out


class NanLossError(UserError):
    """The training loss became NaN or infinite."""


class Trainer:
    """Trains a model with early stopping on the validation metric.

    Args:
        config: the run configuration (keys in the module docstring).
        model: an :class:`~mmrec_plugin.host.abstract_recommender.AbstractRecommender`.
    """

    def __init__(self, config, model):
        check_config(config)
        self.config = config
        self.model = model
        self.learner = str(config["learner"]).lower()
        self.learning_rate = float(config["learning_rate"])
        self.weight_decay = float(config["weight_decay"])
        self.epochs = int(config["epochs"])
        self.eval_step = int(config["eval_step"])
        self.stopping_step = int(config["stopping_step"])
        self.evaluator = Evaluator(config)
        self.valid_metric = getattr(config, "valid_metric_key", None) or "@".join(
            map(str, parse_metric(config["valid_metric"])))
        n_items = getattr(model, "n_items", None)
        if isinstance(n_items, int) and self.evaluator.max_k > n_items:
            raise ConfigError(
                f"config key 'topk': the largest cut-off {self.evaluator.max_k} exceeds the "
                f"{n_items} items of the dataset; use cut-offs <= {n_items}, e.g. --topk \"[5, 10]\""
            )
        clip = config.get("clip_grad_norm")
        self.clip_grad_norm = None if clip is None else (dict(clip) if isinstance(clip, dict)
                                                         else {"max_norm": float(clip)})
        a, b = (float(x) for x in config["learning_rate_scheduler"])
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.learner, params, self.learning_rate, self.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda=lambda epoch: a ** (epoch / b)
        )
        self.best_valid_score = -math.inf
        self.best_valid_result: Dict[str, float] = {}
        self.best_test_upon_valid: Dict[str, float] = {}
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.best_epoch: Optional[int] = None
        self.history: list = []
        self.last_terms: Optional[Dict[str, float]] = None
        self.cur_step = 0
        self.start_epoch = 0  # > 0 after load_state_dict (a resumed run)
        self.pruned = False

    # ------------------------------------------------------------------ pieces
    def _state_copy(self) -> Dict[str, torch.Tensor]:
        return state_copy(self.model.state_dict())

    def train_epoch(self, train_data, epoch: int) -> float:
        """The epoch's summed loss; for a model that leaves ``{name: scalar}`` in
        ``model.last_loss_terms`` after each ``calculate_loss``, their per-epoch sums go to
        ``self.last_terms``."""
        self.model.train()
        self.model.pre_epoch_processing()
        total = 0.0
        parts, names = None, None
        for batch_idx, interaction in enumerate(train_data):
            self.optimizer.zero_grad()
            losses = self.model.calculate_loss(interaction)
            named = getattr(self.model, "last_loss_terms", None)
            if isinstance(named, dict) and named:
                step = torch.stack([torch.as_tensor(v).detach().reshape(()).float() for v in named.values()])
                same = parts is not None and tuple(named) == names
                parts, names = (parts + step if same else step), tuple(named)
            loss = sum(losses) if isinstance(losses, (tuple, list)) else losses
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NanLossError(
                    f"training loss is {value} at epoch {epoch}, batch {batch_idx}: the model "
                    f"diverged; try a lower learning_rate (now {self.learning_rate}) or check "
                    f"the model's inputs"
                )
            loss.backward()
            if self.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            total += value
        self.last_terms = dict(zip(names, parts.tolist())) if parts is not None else None
        return total

    @torch.no_grad()
    def evaluate(self, eval_data) -> Dict[str, float]:
        """Full-ranking metrics of the current model on ``eval_data`` (an EvalDataLoader)."""
        self.model.eval()
        top = rank_loader(self.model, eval_data, self.evaluator.max_k)
        if top is None:
            return {f"{m}@{k}": 0.0 for m in self.evaluator.metrics for k in self.evaluator.topk}
        return self.evaluator.evaluate(top, eval_data)

    # ------------------------------------------------------------------ resume
    def state_dict(self, train_data=None) -> Dict:
        """Everything a resumed :meth:`fit` needs to continue exactly where this one is: the
        model (and the ``training_state()`` of its submodules that keep per-epoch state outside
        their parameters), optimiser and schedule, the early-stopping state and history, and
        the random generators (Python's, numpy's, torch's and the training loader's)."""
        state = {
            "epoch": len(self.history), "model": self.model.state_dict(),
            # per-epoch state of submodules outside their parameters (e.g. the BR-MRS
            # objective's epoch count): modules with training_state() / load_training_state()
            "modules": {name: m.training_state() for name, m in self.model.named_modules()
                        if callable(getattr(m, "training_state", None))},
            "optimizer": self.optimizer.state_dict(), "lr_scheduler": self.lr_scheduler.state_dict(),
            "best_valid_score": self.best_valid_score, "best_valid_result": self.best_valid_result,
            "best_test_upon_valid": self.best_test_upon_valid, "best_state": self.best_state,
            "best_epoch": self.best_epoch, "history": self.history, "cur_step": self.cur_step,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }
        if train_data is not None and hasattr(train_data, "rng_state"):
            state["rng"]["loader"] = train_data.rng_state()
        return state

    def load_state_dict(self, state: Dict, train_data=None) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (the next :meth:`fit` starts at its epoch)."""
        self.model.load_state_dict(state["model"])
        modules = dict(self.model.named_modules())
        for name, value in state.get("modules", {}).items():
            modules[name].load_training_state(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        for name in ("best_valid_score", "best_valid_result", "best_test_upon_valid", "best_state",
                     "best_epoch", "history", "cur_step"):
            setattr(self, name, state[name])
        self.start_epoch = int(state["epoch"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if train_data is not None and rng.get("loader") is not None:
            train_data.set_rng_state(rng["loader"])

    # ------------------------------------------------------------------ loop
    def fit(
        self,
        train_data,
        valid_data=None,
        test_data=None,
        verbose: bool = True,
        on_eval: Optional[Callable[[int, float, "Trainer"], bool]] = None,
        on_epoch: Optional[Callable[["Trainer"], None]] = None,
    ) -> Tuple[float, Dict[str, float], Dict[str, float]]:
        """Train; return ``(best_valid_score, best_valid_result, best_test_upon_valid)``.

        ``on_eval(epoch, valid_score, trainer)``, called after every evaluation (its epoch
        already in ``trainer.history``), may return False to stop training there (an early-termination scheduler pruning this run): then
        ``self.pruned`` is True and the best results so far are returned. ``on_epoch(trainer)``
        is called at the end of every epoch that training goes on after (to checkpoint it).
        After :meth:`load_state_dict`, training continues at the saved epoch.
        """
        log = logger.info if verbose else logger.debug
        stop = False
        self.pruned = False
        for epoch in range(self.start_epoch, self.epochs):
            t0 = time.time()
            loss = self.train_epoch(train_data, epoch)
            self.lr_scheduler.step()
            post = self.model.post_epoch_processing()
            train_s = time.time() - t0
            record = {"epoch": epoch, "loss": loss, "seconds": train_s, "valid": None, "test": None}
            msg = f"epoch {epoch}: loss {loss:.4f}, train {train_s:.2f}s"
            if self.last_terms:
                record["terms"] = self.last_terms
                msg = (f"epoch {epoch}: loss {loss:.4f} ("
                       + ", ".join(f"{k} {v:.4f}" for k, v in self.last_terms.items()) + f"), train {train_s:.2f}s")
            if post:
                msg += f", {post}"
            if valid_data is not None and (epoch + 1) % self.eval_step == 0:
                t1 = time.time()
                valid_result = self.evaluate(valid_data)
                test_result = self.evaluate(test_data) if test_data is not None else {}
                record["eval_seconds"] = time.time() - t1
                record["valid"], record["test"] = valid_result, test_result
                score = valid_result[self.valid_metric]
                if score > self.best_valid_score:
                    self.best_valid_score = score
                    self.best_valid_result = valid_result
                    self.best_test_upon_valid = test_result
                    self.best_state = self._state_copy()
                    self.best_epoch = epoch
                    self.cur_step = 0
                else:
                    self.cur_step += 1
                    stop = self.cur_step > self.stopping_step
                msg += (
                    f", eval {record['eval_seconds']:.2f}s, valid {self.valid_metric} {score:.4f}"
                    f" (best {self.best_valid_score:.4f} at epoch {self.best_epoch})"
                )
                if test_result and self.valid_metric in test_result:
                    msg += f", test {self.valid_metric} {test_result[self.valid_metric]:.4f}"
            self.history.append(record)
            if record["valid"] is not None and on_eval is not None and not stop \
                    and not on_eval(epoch, record["valid"][self.valid_metric], self):
                self.pruned = stop = True
                msg += "; pruned by the scheduler"
            log(msg)
            if stop:
                log(
                    f"early stop at epoch {epoch}: no improvement of {self.valid_metric} for "
                    f"{self.cur_step} evaluations; best epoch {self.best_epoch}"
                )
                break
            if on_epoch is not None and epoch + 1 < self.epochs:
                on_epoch(self)
        if self.best_state is None:  # no evaluation happened: keep the final state
            self.best_state = self._state_copy()
            self.best_epoch = self.history[-1]["epoch"] if self.history else None
        else:
            self.model.load_state_dict(self.best_state)
        return self.best_valid_score, self.best_valid_result, self.best_test_upon_valid
