import numpy as np
import pytest
import scipy.stats
import torch

from mmrec_plugin.errors import DataError
from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
from mmrec_plugin.host.dataset import RecDataset


def _splits(cfg):
    return RecDataset(cfg).split()


def test_batches_shape_and_positives(tiny):
    train, _, _ = _splits(tiny)
    loader = TrainDataLoader(tiny, train, batch_size=16)
    batches = list(loader)
    assert len(batches) == len(loader) == int(np.ceil(len(train) / 16))
    assert all(b.dtype == torch.int64 and b.shape[0] == 3 for b in batches)
    data = torch.cat(batches, dim=1).numpy()
    # every training pair exactly once per epoch
    got = sorted(zip(data[0].tolist(), data[1].tolist()))
    assert got == sorted(zip(train.users.tolist(), train.items.tolist()))


def test_negatives_never_training_positives_and_only_training_items(tmp_path, h):
    # items 40..44 occur only in valid/test: they must never be sampled
    rows = h.random_rows(n_users=20, n_items=40, seed=3)
    rows += [(0, 40, 1), (1, 41, 2), (2, 44, 1)]
    h.write_inter(tmp_path, "d", rows)
    cfg = h.make_config(tmp_path, "d")
    train, _, _ = _splits(cfg)
    pos = {(int(u), int(i)) for u, i in zip(train.users, train.items)}
    train_items = set(train.items.tolist())
    loader = TrainDataLoader(cfg, train, batch_size=7)
    negs = []
    for _ in range(30):
        for b in loader:
            u, j = b[0].tolist(), b[2].tolist()
            assert not any((uu, jj) in pos for uu, jj in zip(u, j))
            negs += j
    assert set(negs) <= train_items
    assert set(negs) == train_items - {i for i in train_items if all((u, i) in pos for u in range(20))}


def test_negatives_uniform_over_allowed_items(tiny):
    train, _, _ = _splits(tiny)
    loader = TrainDataLoader(tiny, train, batch_size=64)
    user = 5
    own = set(train.items[train.users == user].tolist())
    allowed = sorted(set(train.items.tolist()) - own)
    draws = loader.sample_negatives(np.full(40000, user))
    assert set(draws.tolist()) == set(allowed)
    counts = np.array([(draws == i).sum() for i in allowed])
    p = scipy.stats.chisquare(counts).pvalue
    assert p > 1e-3, p


def test_seeded_deterministic_and_resampled_each_epoch(tiny):
    train, _, _ = _splits(tiny)
    a = TrainDataLoader(tiny, train, batch_size=50)
    b = TrainDataLoader(tiny, train, batch_size=50)
    ea1, ea2 = a.epoch_tensor(), a.epoch_tensor()
    assert torch.equal(ea1, b.epoch_tensor())
    assert not torch.equal(ea1, ea2)  # reshuffled and resampled
    c = TrainDataLoader(dict(tiny, seed=1), train, batch_size=50)
    assert not torch.equal(ea1, c.epoch_tensor())
    a.pretrain_setup()  # back to the seed
    assert torch.equal(a.epoch_tensor(), ea1)


def test_no_shuffle_keeps_order(tiny):
    train, _, _ = _splits(tiny)
    e = TrainDataLoader(tiny, train, batch_size=50, shuffle=False).epoch_tensor().numpy()
    assert e[0].tolist() == train.users.tolist() and e[1].tolist() == train.items.tolist()


def test_user_with_all_items_is_an_error(tmp_path, h):
    h.write_inter(tmp_path, "d", [(0, 0, 0), (0, 1, 0), (1, 0, 0), (0, 2, 1), (1, 2, 2)])
    cfg = h.make_config(tmp_path, "d")
    with pytest.raises(DataError, match="user 0 interacted with all 2 training items"):
        TrainDataLoader(cfg, _splits(cfg)[0], 4)


def _mask_sets(loader):
    out = {}
    for users, mask in loader:
        u = users.numpy()
        r, c = mask.numpy()
        for k, uu in enumerate(u):
            out[int(uu)] = set(c[r == k].tolist())
    return out


@pytest.mark.parametrize("batch_size", [1, 4, 4096])
def test_eval_loader_masks_exactly_training_items(tmp_path, h, batch_size):
    rows = h.random_rows(n_users=15, n_items=25, seed=7)
    rows = [r for r in rows if not (r[0] == 3 and r[2] == 2)]  # user 3 has no test item
    h.write_inter(tmp_path, "d", rows)
    cfg = h.make_config(tmp_path, "d")
    train, valid, test = _splits(cfg)

    def items_of(ds, u):
        return set(ds.items[ds.users == u].tolist())

    for split in (valid, test):
        loader = EvalDataLoader(cfg, split, additional_dataset=train, batch_size=batch_size)
        expected_users = sorted(set(split.users.tolist()))
        assert loader.eval_users.tolist() == expected_users
        masks = _mask_sets(loader)
        assert sorted(masks) == expected_users
        indptr, indices = loader.eval_items_per_user
        for k, u in enumerate(expected_users):
            assert masks[u] == items_of(train, u)  # only training items, never valid/test
            assert set(indices[indptr[k]:indptr[k + 1]].tolist()) == items_of(split, u)
        assert loader.get_eval_len_list().tolist() == [len(items_of(split, u)) for u in expected_users]
    assert 3 not in EvalDataLoader(cfg, test, train, 8).eval_users.tolist()
