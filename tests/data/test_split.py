"""Per-user splits: MMRec's rule and leave-one-out, against per-user counts worked by hand."""
import numpy as np
import pytest

from mmrec_plugin.data import split as SP
from mmrec_plugin.cli import main as _main


def main(argv):
    """``mmrec-plugin data ARGV``."""
    return _main(["data"] + list(argv))
from mmrec_plugin.data.files import read_inter, write_inter


def _users(sizes):
    users = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(0).permutation(users)  # interleaved, as in a real file


# (n) -> (train, valid, test), worked from MMRec's notebook rule by hand
HAND = {1: (1, 0, 0), 2: (2, 0, 0), 3: (1, 1, 1), 5: (3, 1, 1), 9: (7, 1, 1), 10: (8, 1, 1),
        14: (12, 1, 1), 15: (12, 1, 2), 19: (16, 1, 2), 20: (16, 2, 2), 37: (30, 3, 4)}


def test_split_counts_by_hand():
    for n, want in HAND.items():
        assert SP.split_counts(n) == want
        assert SP.split_counts(n, loo=True) == ((n, 0, 0) if n < 3 else (n - 2, 1, 1))


def test_mmrec_split_per_user_proportions():
    sizes = list(HAND) * 3
    users = _users(sizes)
    labels = SP.mmrec_split(users, seed=1)
    for u, n in enumerate(sizes):
        got = tuple(np.bincount(labels[users == u], minlength=3))
        assert got == HAND[n], (u, n, got)


def test_loo_gives_one_valid_one_test_per_user_with_enough_interactions():
    sizes = [1, 2, 3, 4, 10, 50, 7]
    users = _users(sizes)
    labels = SP.loo_split(users, seed=2)
    for u, n in enumerate(sizes):
        lab = labels[users == u]
        if n >= 3:
            assert (lab == 1).sum() == 1 and (lab == 2).sum() == 1 and (lab == 0).sum() == n - 2
        else:
            assert (lab == 0).all()


def test_splits_are_deterministic_and_random():
    users = _users([30] * 50)
    a, b = SP.mmrec_split(users, 7), SP.mmrec_split(users, 7)
    c = SP.mmrec_split(users, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # every position of a 30-item user ends up in test for some seed (uniform choice)
    hits = np.zeros(30)
    for s in range(40):
        hits += SP.mmrec_split(users, s)[users == 0] == 2
    assert (hits > 0).all()


@pytest.mark.parametrize("loo", [False, True])
def test_resplit_dataset_writes_a_new_folder(tmp_path, loo):
    src = tmp_path / "src"
    src.mkdir()
    sizes = [12, 3, 5, 25]
    users = np.repeat(np.arange(4), sizes)
    items = np.concatenate([np.arange(n) for n in sizes])
    write_inter(src / "src.inter", users, items, np.zeros(users.size, dtype=np.int8))
    np.save(src / "image_feat.npy", np.ones((25, 3), np.float32))
    np.save(src / "text_feat.npy", np.ones((25, 2), np.float32))
    argv = ["resplit", str(src), "--out", str(tmp_path), "--name", "new", "--seed", "3"]
    assert main(argv + (["--loo"] if loo else [])) == 0
    out = read_inter(tmp_path / "new" / "new.inter")
    assert sorted(zip(out.users.tolist(), out.items.tolist())) == \
        sorted(zip(users.tolist(), items.tolist()))
    for u, n in enumerate(sizes):
        assert tuple(np.bincount(out.labels[out.users == u], minlength=3)) == \
            SP.split_counts(n, loo=loo)
    assert np.load(tmp_path / "new" / "image_feat.npy").shape == (25, 3)
    assert (tmp_path / "new" / "new.yaml").is_file()
    # an existing folder is refused; the same seed gives the same file
    assert main(argv + (["--loo"] if loo else [])) == 2
    argv2 = argv[:4] + ["--name", "again"] + argv[6:]
    assert main(argv2 + (["--loo"] if loo else [])) == 0
    assert (tmp_path / "again" / "again.inter").read_bytes() == \
        (tmp_path / "new" / "new.inter").read_bytes()
