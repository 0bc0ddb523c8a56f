"""The synthetic generator (SPEC section 7): determinism, layout, the A/B rank conditions,
ground-truth types and top-K positives against naive recomputations."""
import json

import numpy as np
import pytest

from mmrec_plugin.data import synthetic as S
from mmrec_plugin.data.files import read_inter
from mmrec_plugin.data.split import split_counts
from mmrec_plugin.errors import ConfigError, DataError

TINY = dict(n_users=40, n_items=60, n_interactions=400, k=4, min_per_user=5, max_per_user=20)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_identical_files_different_seed_differs(tmp_path):
    a = S.generate(tmp_path, "a", seed=3, image_dim=24, text_dim=16, **TINY)
    b = S.generate(tmp_path / "other", "a", seed=3, image_dim=24, text_dim=16, **TINY)
    c = S.generate(tmp_path, "c", seed=4, image_dim=24, text_dim=16, **TINY)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    for name in ("image_feat.npy", "text_feat.npy"):
        assert fa[name] != fc[name]
    assert fa["a.inter"] != fc["c.inter"]


def test_layout_and_shapes(tmp_path):
    folder = S.generate(tmp_path, "toy", seed=0, image_dim=24, text_dim=16, **TINY)
    names = {p.name for p in folder.iterdir()}
    assert names == {"toy.inter", "toy.types", "toy.yaml", "image_feat.npy", "text_feat.npy",
                     "meta.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    inter = read_inter(folder / "toy.inter")
    img = np.load(folder / "image_feat.npy")
    txt = np.load(folder / "text_feat.npy")
    assert img.dtype == np.float32 and txt.dtype == np.float32
    assert img.shape == (60, 24) and txt.shape == (60, 16)
    assert inter.n_users == 40 and inter.n_items <= 60
    # no duplicate pairs, each user between the bounds
    key = inter.users * 60 + inter.items
    assert np.unique(key).size == key.size
    per_user = np.bincount(inter.users, minlength=40)
    assert per_user.min() >= 5 and per_user.max() <= 20
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_interactions"] == len(inter)
    assert meta["params"]["seed"] == 0 and meta["params"]["k"] == 4
    types = S.read_types(folder)
    assert np.array_equal(types["users"], inter.users) and np.array_equal(types["items"], inter.items)
    assert set(types["types"]) <= set(S.TYPES)
    assert np.array_equal(np.asarray(S.TYPES)[types["codes"]], types["types"])
    import yaml
    keys = yaml.safe_load((folder / "toy.yaml").read_text())
    assert keys["inter_file_name"] == "toy.inter"
    assert keys["vision_feature_file"] == "image_feat.npy"
    assert keys["USER_ID_FIELD"] == "userID"


def test_raw_features_without_projection_are_the_latent_views(tmp_path):
    cfg = S.SynthConfig(noise=0.0, seed=1, **TINY)
    sim = S.simulate(cfg)
    k = cfg.k
    assert sim.text_feat.shape == (60, 3 * k)
    np.testing.assert_allclose(sim.text_feat[:, :k], sim.z["text"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sim.text_feat[:, k:2 * k], sim.z["synergy"] @ sim.A.T, atol=1e-5)
    np.testing.assert_allclose(sim.image_feat[:, k:2 * k], sim.z["synergy"] @ sim.B.T, atol=1e-5)
    np.testing.assert_allclose(sim.image_feat[:, 2 * k:], sim.z["redundant"], atol=1e-5)


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_mixing_matrices_rank_conditions(k):
    A, B = S.mixing_matrices(k, np.random.default_rng(k))
    assert A.shape == B.shape == (k, k)
    assert np.linalg.matrix_rank(A) == k // 2
    assert np.linalg.matrix_rank(B) == k // 2
    assert np.linalg.matrix_rank(np.vstack([A, B])) == k
    # each modality alone misses half of z_s: their null spaces are complementary
    _, _, vt_a = np.linalg.svd(A)
    null_a = vt_a[k // 2:]
    assert np.linalg.matrix_rank(B @ null_a.T) == k // 2


def test_types_and_topk_match_a_naive_recomputation():
    cfg = S.SynthConfig(choice_noise=0.0, seed=5, gammas={"synergy": 2.0, "visual": 0.5}, **TINY)
    sim = S.simulate(cfg)
    g = cfg.gammas
    assert g == {"text": 1.0, "visual": 0.5, "synergy": 2.0, "redundant": 1.0}
    got = {}
    for u, i, t in zip(sim.users, sim.items, sim.types):
        got.setdefault(int(u), set()).add(int(i))
        contrib = [g[x] * sum(sim.theta[x][u, j] * sim.z[x][i, j] for j in range(cfg.k))
                   for x in S.TYPES]
        assert S.TYPES[t] == S.TYPES[int(np.argmax(contrib))]
    for u in range(cfg.n_users):
        score = [sum(g[x] * float(sim.theta[x][u] @ sim.z[x][i]) for x in S.TYPES)
                 for i in range(cfg.n_items)]
        top = set(np.argsort(score)[::-1][:sim.counts[u]].tolist())
        assert got[u] == top


def test_choice_noise_changes_positives_and_split_follows_mmrec_rule():
    a = S.simulate(S.SynthConfig(choice_noise=0.0, seed=2, **TINY))
    b = S.simulate(S.SynthConfig(choice_noise=1.0, seed=2, **TINY))
    assert np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.items, b.items)
    for u in range(40):
        lab = b.labels[b.users == u]
        assert tuple(np.bincount(lab, minlength=3)) == split_counts(int(b.counts[u]))


def test_counts_hit_the_target_total():
    cfg = S.SynthConfig(n_users=20000, n_items=300, n_interactions=400000, k=2,
                        min_per_user=5, max_per_user=40)
    counts = S.draw_counts(cfg, np.random.default_rng(0))
    assert counts.min() >= 5 and counts.max() == 40
    assert abs(counts.sum() / 400000 - 1) < 0.02


def test_presets_have_real_sizes_and_widths():
    assert S.SIZES["clothing"]["n_users"] == 39387 and S.SIZES["clothing"]["n_items"] == 23033
    assert S.SIZES["baby"]["n_interactions"] == 160792
    for size in ("baby", "sports", "clothing"):
        assert S.SIZES[size]["image_dim"] == 4096 and S.SIZES[size]["text_dim"] == 384
    with pytest.raises(ConfigError, match="clothing"):
        S.preset("clothes")


def test_bad_parameters_are_named():
    with pytest.raises(ConfigError, match="synergy"):
        S.SynthConfig(gammas={"synergie": 1.0}, **TINY)
    with pytest.raises(ConfigError, match="k = 3"):
        S.SynthConfig(**{**TINY, "k": 3})
    with pytest.raises(ConfigError, match="n_interactions"):
        S.SynthConfig(**{**TINY, "n_interactions": 40 * 30})


def test_ensure_demo_generates_once(tmp_path):
    folder = tmp_path / "demo"
    assert S.ensure_demo(folder) == folder
    inter = read_inter(folder / "demo.inter")
    assert inter.n_users == 1000 and inter.n_items == 500
    assert 18000 <= len(inter) <= 22000
    meta = json.loads((folder / "meta.json").read_text())
    assert min(meta["type_shares"].values()) > 0.15  # every type has a real share
    stamp = (folder / "demo.inter").stat().st_mtime_ns
    S.ensure_demo(folder)
    assert (folder / "demo.inter").stat().st_mtime_ns == stamp
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="junk"):
        S.ensure_demo(tmp_path / "junk")


def test_popularity_skews_item_degrees_and_keeps_types():
    flat = S.simulate(S.SynthConfig(n_users=400, n_items=200, k=4, seed=0))
    skew = S.simulate(S.SynthConfig(n_users=400, n_items=200, k=4, seed=0, popularity=1.5))
    d_flat = np.bincount(flat.items, minlength=200)
    d_skew = np.bincount(skew.items, minlength=200)
    assert d_skew.max() / d_skew.mean() > 1.5 * d_flat.max() / d_flat.mean()
    c = S.pair_contributions(skew.theta, skew.z, skew.config.gammas, skew.users, skew.items)
    assert np.array_equal(np.argmax(c, axis=1), skew.types)


def test_audio_modality_is_a_third_file_and_changes_nothing_else(tmp_path):
    """--audio-dim writes audio_feat.npy = projection of [z_r; (z_t + z_v)/sqrt(2)] + noise,
    declares the three feature_files in the dataset yaml, and leaves every other file as the
    two-modality dataset of the same seed has it."""
    import yaml

    two = S.generate(tmp_path / "a", "d", n_users=60, n_items=40, k=4, seed=2, noise=0.0)
    three = S.generate(tmp_path / "b", "d", n_users=60, n_items=40, k=4, seed=2, noise=0.0, audio_dim=None)
    assert not (three / "audio_feat.npy").exists()
    three = S.generate(tmp_path / "c", "d", n_users=60, n_items=40, k=4, seed=2, noise=0.0, audio_dim=6)
    for f in ("d.inter", "d.types", "image_feat.npy", "text_feat.npy"):
        assert (two / f).read_bytes() == (three / f).read_bytes(), f
    audio = np.load(three / "audio_feat.npy")
    assert audio.shape == (40, 6) and audio.dtype == np.float32
    sim = S.simulate(S.SynthConfig(n_users=60, n_items=40, k=4, seed=2, noise=0.0))
    raw = np.concatenate([sim.z["redundant"], (sim.z["text"] + sim.z["visual"]) / np.sqrt(2.0)], axis=1)
    # audio = raw @ R for a 2k x 6 projection R: recover R by least squares, the fit is exact
    r, *_ = np.linalg.lstsq(raw, audio, rcond=None)
    np.testing.assert_allclose(raw @ r, audio, rtol=1e-4, atol=1e-4)
    keys = yaml.safe_load((three / "d.yaml").read_text())
    assert keys["feature_files"] == {"visual": "image_feat.npy", "text": "text_feat.npy", "audio": "audio_feat.npy"}
