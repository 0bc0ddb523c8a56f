"""Cold-start items: the split (cold items lose every training interaction; each user's
cold interactions go half to valid, half to test; no user loses all of their training),
the cold and warm metrics against a hand-worked case, the content-only baseline against a
dense reference, and the cold-item metrics recorded by a run."""
import numpy as np
import pytest
import torch

from mmrec_plugin.data.cold import cold_split
from mmrec_plugin.errors import UserError
from mmrec_plugin.host.cold import ColdEvalDataLoader, warm_only
from mmrec_plugin.host.dataset import RecDataset
from mmrec_plugin.host.evaluator import Evaluator, rank_loader


def test_cold_split_moves_every_interaction_of_the_cold_items():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(50), 12)
    items = np.concatenate([rng.choice(40, 12, replace=False) for _ in range(50)])
    labels = np.tile([0] * 10 + [1, 2], 50)
    new, cold = cold_split(users, items, labels, 0.25, seed=3)
    is_cold = np.isin(items, cold)
    assert 0 < len(cold) <= 10  # 25% of 40, minus any put back to keep users trainable
    assert not (is_cold & (new == 0)).any()  # never in training
    assert (new[~is_cold] == labels[~is_cold]).all()  # the warm part keeps its labels
    for u in range(50):
        mine = is_cold & (users == u)
        n_valid, n_test = (new[mine] == 1).sum(), (new[mine] == 2).sum()
        assert n_valid == mine.sum() // 2 and n_test == mine.sum() - n_valid
        assert ((users == u) & (new == 0)).any()
    again, cold2 = cold_split(users, items, labels, 0.25, seed=3)
    assert (again == new).all() and (cold2 == cold).all()  # seeded
    for bad in (0.0, 0.95, -1, "x"):
        with pytest.raises(UserError, match=r"--cold-items must be a fraction in \(0, 0.9\]"):
            cold_split(users, items, labels, bad)


def test_a_user_who_would_lose_all_training_keeps_an_item():
    # user 0 trains only on items 0 and 1; with every item drawn cold, those come back
    users = np.array([0, 0, 0, 1, 1, 1, 1])
    items = np.array([0, 1, 2, 2, 3, 4, 0])
    labels = np.array([0, 0, 2, 0, 0, 1, 2])
    new, cold = cold_split(users, items, labels, 0.9, seed=0)
    for u in (0, 1):
        assert ((users == u) & (new == 0)).any()


class Table(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def full_sort_predict(self, batch):
        return self.table[batch[0]].clone()


def test_cold_and_warm_metrics_by_hand(tmp_path, h):
    # 3 users, 6 items; items 4 and 5 are cold (no training interaction)
    rows = [(0, 0, 0), (0, 1, 0), (0, 4, 2), (0, 2, 2),
            (1, 1, 0), (1, 2, 0), (1, 5, 1), (1, 4, 2), (1, 3, 2),
            (2, 0, 0), (2, 3, 0), (2, 1, 2)]
    h.write_inter(tmp_path, "cold", rows)
    cfg = h.make_config(tmp_path, "cold", is_multimodal_model=False, topk=[1, 2], metrics=["Recall"],
                        valid_metric="Recall@1")
    train, valid, test = RecDataset(cfg).split()
    cold = np.array([4, 5])
    # scores: user 0 prefers 5 over 4; user 1 prefers 4 over 5
    table = np.array([[0, 0, 3, 1, 1, 2], [0, 0, 0, 5, 3, 1], [9, 0, 1, 0, 0, 0]], dtype=float)
    model = Table(table)
    loader = ColdEvalDataLoader(cfg, test, cold, batch_size=2)
    assert list(loader.eval_users) == [0, 1]  # user 2 has no cold test item
    top = rank_loader(model, loader, 2)
    assert top.tolist() == [[1, 0], [0, 1]]  # positions in [4, 5]: user 0 -> 5, 4; user 1 -> 4, 5
    res = Evaluator(cfg).evaluate(top, loader)
    assert res["recall@1"] == pytest.approx((0.0 + 1.0) / 2)  # user 0 misses 4, user 1 hits 4
    assert res["recall@2"] == pytest.approx(1.0)
    # warm test items only: user 0 {2}, user 1 {3}, user 2 {1}; all items ranked, train masked
    from mmrec_plugin.host.dataloader import EvalDataLoader

    warm = EvalDataLoader(cfg, warm_only(test, cold), train, 2)
    top = rank_loader(model, warm, 2)
    res = Evaluator(cfg).evaluate(top, warm)
    # user 0: train {0, 1} masked -> 2 (3) first: a hit; user 1: 3 (5) first: a hit; user 2:
    # train {0, 3} masked -> 2 (1) first, not its test item 1: a miss
    assert list(warm.eval_users) == [0, 1, 2]
    assert res["recall@1"] == pytest.approx((1 + 1 + 0) / 3)


def test_content_cosine_against_a_dense_reference(tmp_path, h):
    from mmrec_plugin.host.dataloader import TrainDataLoader
    from mmrec_plugin.host.models.content import ContentCosine

    rows = h.random_rows(n_users=8, n_items=12, per_user=(4, 6), seed=2)
    h.write_inter(tmp_path, "cc", rows)
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(12, 5)), rng.normal(size=(12, 3))
    np.save(tmp_path / "cc" / "image_feat.npy", img.astype(np.float32))
    np.save(tmp_path / "cc" / "text_feat.npy", txt.astype(np.float32))
    cfg = h.make_config(tmp_path, "cc")
    train, _, _ = RecDataset(cfg).split()
    model = ContentCosine(cfg, TrainDataLoader(cfg, train, 16))
    got = model.full_sort_predict([torch.arange(8)]).numpy()
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    content = norm(np.hstack([norm(txt), norm(img)]))  # (modalities in name order)
    dense = train.inter_matrix("csr").toarray()
    for u in range(8):
        profile = content[dense[u] > 0].mean(axis=0)
        want = content @ profile / np.linalg.norm(profile)
        np.testing.assert_allclose(got[u], want, rtol=1e-5, atol=1e-6)


def test_data_resplit_cold_items_command(tmp_path, capsys):
    from mmrec_plugin.cli import main
    from mmrec_plugin.data.synthetic import generate
    from mmrec_plugin.host.cold import read_cold_items

    generate(str(tmp_path / "data"), "src", n_users=60, n_items=40, n_interactions=600, k=4,
             image_dim=6, text_dim=4, seed=1)
    argv = ["data", "resplit", str(tmp_path / "data" / "src"), "--out", str(tmp_path / "data"),
            "--name", "srccold", "--seed", "2"]
    assert main(argv + ["--cold-items", "0.25"]) == 0
    assert "cold items" in capsys.readouterr().out
    cfg = {"data_path": str(tmp_path / "data") + "/", "dataset": "srccold"}
    cold = read_cold_items(cfg, 40)
    folder = tmp_path / "data" / "srccold"
    rows = [ln.split("\t") for ln in (folder / "srccold.inter").read_text().splitlines()[1:]]
    train_items = {int(r[1]) for r in rows if r[2].strip() == "0"}
    assert 0 < len(cold) <= 10 and not set(cold.tolist()) & train_items
    assert (folder / "image_feat.npy").is_file() and (folder / "text_feat.npy").is_file()
    for extra, needle in ((["--cold-items", "0"], "(0, 0.9]"), (["--cold-items", "0.91"], "(0, 0.9]"),
                          (["--cold-items", "0.2", "--loo"], "two kinds of split")):
        assert main(argv[:-4] + ["--name", "other", "--seed", "2"] + extra) == 2
        assert needle in capsys.readouterr().err
