import logging

import numpy as np
import pytest
import torch

from mmrec_plugin.errors import ConfigError, UserError
from mmrec_plugin.host.abstract_recommender import GeneralRecommender
from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
from mmrec_plugin.host.dataset import RecDataset
from mmrec_plugin.host.trainer import NanLossError, Trainer


class ScriptedModel(GeneralRecommender):
    """A toy model whose valid quality follows a script, and whose weight moves each epoch.

    After epoch e, users with id < schedule[e] get their valid items ranked first; the others
    get them ranked last. ``w`` is pulled towards 10 by SGD, so each epoch's state differs.
    """

    def __init__(self, config, train_data, valid, schedule, nan_at=None):
        super().__init__(config, train_data)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.valid_items = valid.inter_matrix("csr").toarray().astype(bool)
        self.schedule = schedule
        self.epoch = -1
        self.nan_at = nan_at
        self.w_after_epoch = []

    def pre_epoch_processing(self):
        self.epoch += 1

    def calculate_loss(self, interaction):
        loss = ((self.w - 10.0) ** 2).sum()
        if self.nan_at is not None and self.epoch == self.nan_at[0]:
            loss = loss * float("nan")
        return loss, 0.0 * loss  # a tuple is summed

    def post_epoch_processing(self):
        self.w_after_epoch.append(float(self.w.detach()))
        return "w %.3f" % self.w_after_epoch[-1]

    def full_sort_predict(self, interaction):
        users = interaction[0].numpy()
        good = users < self.schedule[self.epoch]
        vi = self.valid_items[users]
        scores = np.where(vi, np.where(good[:, None], 1.0, -1.0), 0.0)
        return torch.tensor(scores, dtype=torch.float32) + 0.0 * self.w


@pytest.fixture
def setup(tmp_path, h):
    # 10 users, each: 3 training items, 1 valid, 1 test, out of 30 items
    rng = np.random.default_rng(0)
    rows = []
    for u in range(10):
        it = rng.choice(30, 5, replace=False)
        rows += [(u, int(it[0]), 1), (u, int(it[1]), 2)] + [(u, int(i), 0) for i in it[2:]]
    h.write_inter(tmp_path, "toy", rows)
    cfg = h.make_config(
        tmp_path, "toy", learner="sgd", learning_rate=0.1, stopping_step=2, metrics=["Recall"],
        topk=[1], valid_metric="Recall@1", is_multimodal_model=False, epochs=50,
    )
    train, valid, test = RecDataset(cfg).split()
    return cfg, TrainDataLoader(cfg, train, 8), EvalDataLoader(cfg, valid, train, 4), EvalDataLoader(cfg, test, train, 4), valid


def test_early_stopping_and_best_state_restore(setup, caplog):
    cfg, tr, va, te, valid = setup
    # valid recall@1 per epoch: .1 .3 .2 .3 .2 (then would rise to .9): best at epoch 1,
    # then 3 evaluations without strict improvement > stopping_step=2 -> stop after epoch 4
    model = ScriptedModel(cfg, tr, valid, [1, 3, 2, 3, 2, 9, 9, 9])
    trainer = Trainer(cfg, model)
    with caplog.at_level(logging.INFO, logger="mmrec_plugin.host.trainer"):
        score, vres, tres = trainer.fit(tr, va, te)
    assert len(trainer.history) == 5
    assert trainer.best_epoch == 1
    assert score == pytest.approx(0.3) and vres["recall@1"] == pytest.approx(0.3)
    assert [r["valid"]["recall@1"] for r in trainer.history] == pytest.approx([0.1, 0.3, 0.2, 0.3, 0.2])
    assert set(tres) == {"recall@1"}
    # the model is restored to its state after epoch 1, not the last one
    assert float(model.w.detach()) == pytest.approx(model.w_after_epoch[1])
    assert model.w_after_epoch[4] != pytest.approx(model.w_after_epoch[1])
    assert float(trainer.best_state["w"]) == pytest.approx(model.w_after_epoch[1])
    assert {"epoch", "loss", "seconds", "valid", "test"} <= set(trainer.history[0])
    assert "early stop at epoch 4" in caplog.text and "w " in caplog.text


def test_named_loss_terms_are_summed_per_epoch_and_logged(setup, caplog):
    cfg, tr, va, te, valid = setup
    model = ScriptedModel(cfg, tr, valid, [1] * 3)
    model.loss_names = ("main", "zero")
    losses = []
    orig = model.calculate_loss

    def spy(interaction):
        out = orig(interaction)
        losses.append(float(out[0].detach()))
        return out

    model.calculate_loss = spy
    trainer = Trainer(dict(cfg, epochs=2), model)
    with caplog.at_level(logging.INFO, logger="mmrec_plugin.host.trainer"):
        trainer.fit(tr, va, te)
    per_epoch = len(losses) // 2
    first = trainer.history[0]["terms"]
    assert set(first) == {"main", "zero"} and first["zero"] == 0.0
    assert first["main"] == pytest.approx(sum(losses[:per_epoch]), rel=1e-6)
    assert first["main"] == pytest.approx(trainer.history[0]["loss"], rel=1e-6)
    assert "(main " in caplog.text


def test_eval_step_counts_evaluations(setup):
    cfg, tr, va, te, valid = setup
    cfg = dict(cfg, eval_step=2)
    model = ScriptedModel(cfg, tr, valid, [0, 5, 0, 4, 0, 4, 0, 4, 0, 9])
    trainer = Trainer(cfg, model)
    trainer.fit(tr, va, te)
    evaluated = [r["epoch"] for r in trainer.history if r["valid"] is not None]
    assert evaluated == [1, 3, 5, 7]  # best at 1, then 3 non-improving evaluations
    assert trainer.best_epoch == 1 and len(trainer.history) == 8


def test_nan_loss_raises(setup):
    cfg, tr, va, te, valid = setup
    model = ScriptedModel(cfg, tr, valid, [1] * 10, nan_at=(2, 0))
    with pytest.raises(NanLossError, match="epoch 2, batch 0") as e:
        Trainer(cfg, model).fit(tr, va, te)
    assert isinstance(e.value, UserError)


def test_topk_beyond_the_items_is_config_error(setup):
    cfg, tr, va, te, valid = setup  # 30 items
    model = ScriptedModel(cfg, tr, valid, [1])
    with pytest.raises(ConfigError, match=r"'topk'.*50.*30 items"):
        Trainer(dict(cfg, topk=[10, 50], valid_metric="Recall@10"), model)


def test_unknown_learner_is_config_error(setup):
    cfg, tr, va, te, valid = setup
    model = ScriptedModel(cfg, tr, valid, [1])
    with pytest.raises(ConfigError, match=r"'learner'.*'adamw'.*adam, sgd, adagrad, rmsprop"):
        Trainer(dict(cfg, learner="adamw"), model)


@pytest.mark.parametrize("learner,cls", [("Adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
                                         ("adagrad", torch.optim.Adagrad), ("RMSprop", torch.optim.RMSprop)])
def test_learners(setup, learner, cls):
    cfg, tr, va, te, valid = setup
    trainer = Trainer(dict(cfg, learner=learner, weight_decay=0.5), ScriptedModel(cfg, tr, valid, [1]))
    assert isinstance(trainer.optimizer, cls)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.5


def test_lr_schedule(setup):
    cfg, tr, va, te, valid = setup
    cfg = dict(cfg, learning_rate_scheduler=[0.5, 2], epochs=3)
    trainer = Trainer(cfg, ScriptedModel(cfg, tr, valid, [1] * 3))
    trainer.fit(tr)  # no valid data: trains all epochs, keeps the final state
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** (3 / 2))
    assert len(trainer.history) == 3 and trainer.best_epoch == 2


def test_bad_valid_metric(setup):
    cfg, tr, va, te, valid = setup
    with pytest.raises(ConfigError, match="valid_metric"):
        Trainer(dict(cfg, valid_metric="NDCG@1"), ScriptedModel(cfg, tr, valid, [1]))


def test_make_optimizer_fused_adam_matches_plain_adam():
    from mmrec_plugin.host.trainer import make_optimizer

    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(50, 8))
    w2 = torch.nn.Parameter(w1.detach().clone())
    fused = make_optimizer("adam", [w1], 0.01, 1e-4)
    plain = torch.optim.Adam([w2], lr=0.01, weight_decay=1e-4)
    assert fused.defaults.get("fused") is True  # this torch (>= 2.4) has the CPU kernel
    for _ in range(5):
        g = torch.randn(50, 8)
        w1.grad, w2.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=1e-5, atol=1e-6)
    sgd = make_optimizer("sgd", [w1], 0.1, 0.0)
    assert isinstance(sgd, torch.optim.SGD)
