"""BRMRS model glue: config validation, hard negatives, caching of eval representations,
and a short end-to-end training run with the host's loaders and trainer."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml

from mmrec_plugin.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


def _load_brmrs():
    spec = importlib.util.spec_from_file_location("brmrs_under_test", ROOT / "src" / "models" / "brmrs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


brmrs = _load_brmrs()


class FakeDataset:
    def __init__(self, inter):
        self.inter = inter

    def get_user_num(self):
        return self.inter.shape[0]

    def get_item_num(self):
        return self.inter.shape[1]


class FakeLoader:
    """MMRec's training loader as the model sees it: ``.dataset`` counts and ``inter_matrix``."""

    def __init__(self, inter):
        self.dataset = FakeDataset(inter)
        self.inter = inter

    def inter_matrix(self, form="coo"):
        return self.inter.tocoo() if form == "coo" else self.inter.tocsr()


def _tiny(tmp_path, n_users=20, n_items=30, seed=0, write=("image_feat.npy", "text_feat.npy")):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    folder = tmp_path / "tiny"
    folder.mkdir(exist_ok=True)
    if "image_feat.npy" in write:
        np.save(folder / "image_feat.npy", rng.normal(size=(n_items, 7)).astype(np.float32))
    if "text_feat.npy" in write:
        np.save(folder / "text_feat.npy", rng.normal(size=(n_items, 5)).astype(np.float32))
    return sp.csr_matrix(dense)


def _config(tmp_path, **over):
    cfg = {
        "data_path": str(tmp_path), "dataset": "tiny", "device": torch.device("cpu"),
        "is_multimodal_model": True, "end2end": False, "train_batch_size": 64,
        "vision_feature_file": "image_feat.npy", "text_feature_file": "text_feat.npy",
        "USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID",
    }
    cfg.update(brmrs.DEFAULTS)
    cfg.update({"embedding_size": 8, "uu_knn_k": 5, "ii_knn_k": 4})
    cfg.update(over)
    return cfg


def _model(tmp_path, **over):
    inter = _tiny(tmp_path)
    torch.manual_seed(0)
    return brmrs.BRMRS(_config(tmp_path, **over), FakeLoader(inter)), inter


def test_yaml_declares_every_key_with_the_model_defaults():
    with open(ROOT / "src" / "configs" / "model" / "BRMRS.yaml") as fh:
        y = yaml.safe_load(fh)
    grid = y.pop("hyper_parameters")
    assert set(y) == set(brmrs.DEFAULTS)
    for key in ("chns_weight", "syn_weight", "syn_margin", "reg_weight", "pool_size"):
        assert key in grid and isinstance(y[key], list)
    for key, value in y.items():
        if key in grid:
            assert brmrs.DEFAULTS[key] in value, key
        else:
            assert value == brmrs.DEFAULTS[key], key
    # every combination of the shipped grid is a valid config
    import itertools
    for combo in itertools.product(*(y[k] for k in grid)):
        brmrs.read_config({**brmrs.DEFAULTS, **dict(zip(grid, combo))})


@pytest.mark.parametrize("key,value,needle", [
    ("syn_margin", 0.0, "syn_margin"),
    ("syn_margin", -0.5, "syn_margin"),
    ("fusion", "gated", "fusion"),
    ("neg_strategy", "hard", "neg_strategy"),
    ("pool_size", 0, "pool_size"),
    ("ii_knn_k", 0, "ii_knn_k"),
    ("modality_weights", [1.0], "modality_weights"),
    ("syn_detach", "yes", "syn_detach"),
    ("proj_bf16", 1, "proj_bf16"),
    ("reg_weight", [0.1, 0.2], "reg_weight"),
    ("reg_weight", float("nan"), "reg_weight: expected a finite number"),
    ("syn_weight", float("inf"), "syn_weight: expected a finite number"),
    ("syn_margin", float("nan"), "syn_margin"),
])
def test_config_errors_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        brmrs.read_config({**brmrs.DEFAULTS, key: value})


def test_missing_keys_take_defaults_like_mmrec_none():
    class MMRecLike(dict):
        def __getitem__(self, k):
            return self.get(k)  # MMRec: None for a missing key
    cfg = brmrs.read_config(MMRecLike(pool_size=[8]))
    assert cfg["pool_size"] == 8 and cfg["fusion"] == brmrs.DEFAULTS["fusion"]
    assert brmrs.read_config({})["neg_strategy"] == "cross"


def test_missing_modality_file_is_a_config_error(tmp_path):
    inter = _tiny(tmp_path, write=("text_feat.npy",))
    with pytest.raises(ConfigError, match="vision_feature_file"):
        brmrs.BRMRS(_config(tmp_path), FakeLoader(inter))


def test_bad_config_fails_before_loading(tmp_path):
    inter = _tiny(tmp_path)
    with pytest.raises(ConfigError, match="syn_margin"):
        brmrs.BRMRS(_config(tmp_path, syn_margin=-1.0), FakeLoader(inter))


@pytest.mark.parametrize("fusion", ["mean", "gate", "mlp", "concat"])
@pytest.mark.parametrize("strategy", ["cross", "same", "fused", "uniform"])
def test_loss_is_finite_scalar_with_gradients(tmp_path, fusion, strategy):
    model, inter = _model(tmp_path, fusion=fusion, neg_strategy=strategy, nce_weight=0.1,
                          orth_weight=0.01, bpr_weight=0.5, feat_dropout=0.1)
    coo = inter.tocoo()
    batch = torch.tensor(np.stack([coo.row[:16], coo.col[:16], (coo.col[:16] + 1) % 30]), dtype=torch.long)
    model.train()
    loss = model.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name in ("user_emb_t.weight", "user_emb_v.weight", "proj_t.weight", "proj_v.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name


@pytest.mark.parametrize("strategy", ["cross", "same", "fused"])
@pytest.mark.parametrize("pool_size", [32, 8])  # 32 > n_items: clamped to the 30 items
def test_hard_negatives_follow_the_strategy(tmp_path, strategy, pool_size):
    model, inter = _model(tmp_path, neg_strategy=strategy, fusion="gate", pool_size=pool_size)
    users = torch.tensor([0, 1, 2, 3, 5, 8])
    with torch.no_grad():
        p, q, _ = model.forward()
    d = model.dim
    pu_t, pu_v = p[users, :d], p[users, d:]
    torch.manual_seed(7)
    neg_t, neg_v = model.hard_negatives(users, pu_t, pu_v, q)
    torch.manual_seed(7)
    pool = model.candidate_pool(users)
    dense = inter.toarray() > 0
    for row, u in enumerate(users.tolist()):
        cand = pool[row].tolist()
        assert not dense[u, cand].any()
        s_t = [float(pu_t[row] @ q[j, :d]) for j in cand]
        s_v = [float(pu_v[row] @ q[j, d:]) for j in cand]
        with torch.no_grad():
            pf = model.fusion(pu_t[row], pu_v[row])
            qf = model.fusion(q[:, :d], q[:, d:])
        s_f = [float(pf @ qf[j]) for j in cand]
        best = lambda s: cand[int(np.argmax(s))]
        want = {"cross": (best(s_v), best(s_t)), "same": (best(s_t), best(s_v)),
                "fused": (best(s_f), best(s_f))}[strategy]
        assert (neg_t[row].item(), neg_v[row].item()) == want


def test_pool_size_above_the_item_count_is_clamped_with_a_warning(tmp_path, caplog):
    """The pool is drawn with replacement: pool_size 100000 on 30 items would cost B x 100000
    per step and only repeat items, so it is clamped to n_items (30) with a warning."""
    caplog.set_level("WARNING")
    model, inter = _model(tmp_path, pool_size=100000)
    assert model.pool_size == 30 == inter.shape[1]
    assert "pool_size 100000 exceeds the 30 items" in caplog.text
    pool = model.candidate_pool(torch.tensor([0, 1, 2]))
    assert pool.shape == (3, 30)
    dense = inter.toarray() > 0
    for row, u in enumerate([0, 1, 2]):
        assert not dense[u, pool[row].numpy()].any()
    caplog.clear()
    model, _ = _model(tmp_path, pool_size=30)  # at the limit: kept, no warning
    assert model.pool_size == 30 and "pool_size" not in caplog.text


def test_pool_scores_sampled_product_equals_gathered_rows(tmp_path, monkeypatch):
    """The CPU sampled_addmm path and the gather path give the same pool scores, repeated
    items in a pool row included, and both equal the per-pair dot products."""
    model, _ = _model(tmp_path)
    users = torch.tensor([0, 4, 4, 19])
    with torch.no_grad():
        p, q, _ = model.forward()
    d = model.dim
    pu_t, pu_v = p[users, :d], p[users, d:]
    pool = torch.tensor([[3, 3, 0, 29, 7], [1, 2, 3, 4, 5], [5, 5, 5, 5, 5], [29, 0, 11, 11, 28]])
    want_t = torch.stack([torch.stack([pu_t[r] @ q[j, :d] for j in row]) for r, row in enumerate(pool)])
    want_v = torch.stack([torch.stack([pu_v[r] @ q[j, d:] for j in row]) for r, row in enumerate(pool)])
    for sddmm in (True, False):
        monkeypatch.setattr(brmrs, "_HAS_CPU_SDDMM", sddmm)
        s_t, s_v, s_f = model._pool_scores(pu_t, pu_v, q, pool)
        torch.testing.assert_close(s_t, want_t)
        torch.testing.assert_close(s_v, want_v)
        assert s_f is None
    assert brmrs._cpu_sddmm_works()  # torch >= 1.13 has the CPU kernel: the fast path is taken


@pytest.mark.parametrize("fusion", ["concat", "mean"])
def test_loss_without_chns_equals_hand_computed_objective(tmp_path, fusion):
    """bpr_weight * BPR(f) + syn_weight * Syn + reg_weight * ||x0 rows||^2 / B from explicit
    fused vectors (concat: [p_t; p_v]), against calculate_loss (which adds s_t + s_v for
    concat instead of building the vectors)."""
    import torch.nn.functional as F

    model, _ = _model(tmp_path, fusion=fusion, chns_weight=0.0, syn_weight=0.7, bpr_weight=0.4,
                      reg_weight=0.01, syn_margin=0.2)
    batch = torch.tensor([[0, 3, 3, 19], [1, 2, 5, 7], [4, 6, 8, 9]])
    u, i, j = batch
    loss = model.calculate_loss(batch)
    with torch.no_grad():
        p, q, x0 = model.forward()
    d = model.dim
    fuse = (lambda a, b: torch.cat([a, b], -1)) if fusion == "concat" else (lambda a, b: 0.5 * (a + b))
    pf, qf = fuse(p[:, :d], p[:, d:]), fuse(q[:, :d], q[:, d:])
    s = lambda pp, qq, rows: (pp[u] * qq[rows]).sum(-1)
    d_f = s(pf, qf, i) - s(pf, qf, j)
    d_t = s(p[:, :d], q[:, :d], i) - s(p[:, :d], q[:, :d], j)
    d_v = s(p[:, d:], q[:, d:], i) - s(p[:, d:], q[:, d:], j)
    bpr = F.softplus(-d_f).mean()
    syn = F.softplus(-(d_f - torch.maximum(d_t, d_v) - 0.2)).mean()
    rows = torch.cat([u, model.n_users + i, model.n_users + j])
    reg = x0[rows].pow(2).sum() / 4
    want = 0.4 * bpr + 0.7 * syn + 0.01 * reg
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)


def test_proj_bf16_layer0_close_to_float32_and_trains(tmp_path):
    """proj_bf16 keeps the features in bfloat16 and projects under autocast: the layer-0
    embeddings stay float32 and within bfloat16 rounding of the float32 model's, and the
    projection weights get float32 gradients."""
    ref, _ = _model(tmp_path)
    low, _ = _model(tmp_path, proj_bf16=True)
    low.load_state_dict(ref.state_dict())
    assert low.feat_t.dtype == torch.bfloat16 and low.feat_v.dtype == torch.bfloat16
    with torch.no_grad():
        x_ref, x_low = ref.layer0(), low.layer0()
    assert x_low.dtype == torch.float32
    torch.testing.assert_close(x_low, x_ref, rtol=2e-2, atol=2e-2)
    assert not torch.equal(x_low, x_ref)  # the bfloat16 path was taken
    loss = low.calculate_loss(torch.tensor([[0, 3, 7], [1, 2, 5], [4, 6, 8]]))
    loss.backward()
    assert low.proj_v.weight.grad.dtype == torch.float32
    assert torch.isfinite(low.proj_v.weight.grad).all() and low.proj_v.weight.grad.abs().sum() > 0


def test_chns_gradient_uses_other_branch_negative(tmp_path):
    """Under cross, the text branch's loss term is computed on j_v: the gradient on the text
    item input of j_v is non-zero while j_t (if different) only gets visual gradient."""
    model, inter = _model(tmp_path, syn_weight=0.0, reg_weight=0.0, n_ii_layers=0, n_uu_layers=0,
                          n_ui_layers=0, item_id_in_channels=True)
    users, pos = torch.tensor([3]), torch.tensor([int(inter[3].indices[0])])
    torch.manual_seed(11)
    model.train()
    with torch.no_grad():
        p, q, _ = model.forward()
    torch.manual_seed(11)
    neg_t, neg_v = model.hard_negatives(users, p[users, :8], p[users, 8:], q)
    torch.manual_seed(11)
    loss = model.calculate_loss(torch.stack([users, pos, pos]))
    loss.backward()
    g_t = model.item_emb_t.weight.grad
    g_v = model.item_emb_v.weight.grad
    j_v, j_t = neg_t.item(), neg_v.item()  # text trained on j_v, visual on j_t
    assert g_t[j_v].abs().sum() > 0 and g_v[j_t].abs().sum() > 0
    if j_v != j_t and j_t != pos.item():
        assert g_t[j_t].abs().sum() == 0
    if j_v != j_t and j_v != pos.item():
        assert g_v[j_v].abs().sum() == 0


def test_eval_cache_and_branch_scores(tmp_path):
    model, _ = _model(tmp_path, fusion="mlp")
    model.eval()
    users = torch.tensor([0, 4, 9])
    s1 = model.full_sort_predict([users])
    assert s1.shape == (3, 30)
    s1[0, 0] = -1e10  # the trainer writes into it: must not touch the cache
    s2 = model.full_sort_predict([users])
    assert s2[0, 0] > -1e9
    scores = model.branch_scores(users)
    assert set(scores) == {"t", "v", "f"} and all(v.shape == (3, 30) for v in scores.values())
    torch.testing.assert_close(scores["f"], s2)
    p, q, _ = model.forward()
    torch.testing.assert_close(scores["t"], p[users, :8] @ q[:, :8].t())
    # a parameter change while in eval mode (e.g. loading the best state) invalidates the cache
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["user_emb_t.weight"] += 1.0
    model.load_state_dict(state)
    s3 = model.full_sort_predict([users])
    assert not torch.allclose(s3, s2)


def test_graph_cache_is_used_on_rebuild(tmp_path, caplog):
    import logging
    caplog.set_level(logging.INFO)
    _model(tmp_path)
    assert (tmp_path / "tiny" / ".cache").is_dir()
    caplog.clear()
    _model(tmp_path, syn_weight=0.5)  # loss weights do not change the graphs
    assert "cache hit" in caplog.text and "cache miss" not in caplog.text
    caplog.clear()
    _model(tmp_path, ii_knn_k=3)
    assert "item" in caplog.text and "cache miss" in caplog.text


def test_short_training_run_with_host_lowers_loss_and_beats_random(tmp_path):
    import mmrec_plugin.host.trainer as host
    from mmrec_plugin.data.synthetic import generate
    from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
    from mmrec_plugin.host.dataset import RecDataset

    generate(tmp_path, "synth", n_users=150, n_items=120, n_interactions=2400, k=8, seed=3)
    cfg = _config(tmp_path, dataset="synth", inter_file_name="synth.inter", field_separator="\t",
                  embedding_size=16, epochs=8, eval_step=8, stopping_step=5, learner="adam",
                  learning_rate=0.01, learning_rate_scheduler=[1.0, 50], weight_decay=0.0,
                  metrics=["Recall", "NDCG"], topk=[10, 20], valid_metric="Recall@20", seed=1,
                  train_batch_size=256, eval_batch_size=512, uu_knn_k=10, ii_knn_k=5)
    torch.manual_seed(1)
    data = RecDataset(cfg)
    train, valid, test = data.split()
    train_loader = TrainDataLoader(cfg, train, batch_size=256, shuffle=True)
    model = brmrs.BRMRS(cfg, train_loader)
    trainer = host.Trainer(cfg, model)
    _, _, test_result = trainer.fit(train_loader, EvalDataLoader(cfg, valid, train, 512),
                                    EvalDataLoader(cfg, test, train, 512), verbose=False)
    losses = [h["loss"] for h in trainer.history]
    assert losses[-1] < 0.8 * losses[0]
    # random ranking: expected Recall@20 = 20 / (items left after masking) per user
    tr = train.inter_matrix(form="csr")
    left = 120 - np.diff(tr.indptr)
    te = test.inter_matrix(form="csr")
    users = np.flatnonzero(np.diff(te.indptr))
    random_recall = float(np.mean(np.minimum(1.0, 20.0 / left[users])))
    assert test_result["recall@20"] > 1.5 * random_recall, (test_result, random_recall)


def test_guard_ranks_items_above_the_positive_last():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [2.0, 3.0, 4.0, 5.0]])
    pos = torch.tensor([0.6, 1.0])  # row 0: 0.9 is above; row 1: all above
    g = brmrs._guard(scores, pos)
    assert g[0].argsort(descending=True).tolist() == [2, 3, 1, 0]  # 0.5 > 0.3 > 0.1, then 0.9
    assert g[1].argmax().item() == 0  # all above: the lowest-scored item first


def test_guard_keeps_chns_from_choosing_an_item_scored_above_the_positive(tmp_path):
    model, _ = _model(tmp_path, chns_guard=True, pool_size=16)
    users = torch.arange(20)
    pos = torch.zeros(20, dtype=torch.long)
    with torch.no_grad():
        p, q, _ = model.forward()
    d = model.dim
    torch.manual_seed(3)
    neg_t, neg_v = model.hard_negatives(users, p[users, :d], p[users, d:], q, pos)
    s_v_all = p[users, d:] @ q[:, d:].t()
    s_v_pos = s_v_all[users, pos]
    # the text branch's negative is chosen by s_v: it is never above s_v(u, pos) when the
    # user's pool holds an item below it (here every pool holds one: scores are continuous)
    chosen = s_v_all[users, neg_t]
    torch.manual_seed(3)
    pool = model.candidate_pool(users)
    has_below = (s_v_all.gather(1, pool) <= s_v_pos.unsqueeze(1)).any(1)
    assert bool(has_below.any())
    assert bool((chosen[has_below] <= s_v_pos[has_below] + 1e-6).all())


def test_chns_warmup_and_branch_bpr(tmp_path):
    inter = _tiny(tmp_path)
    batch = (torch.arange(8), torch.tensor(inter[np.arange(8)].argmax(axis=1)).view(-1),
             torch.arange(8) + 10)

    def loss(**over):
        torch.manual_seed(0)
        m = brmrs.BRMRS(_config(tmp_path, **over), FakeLoader(inter))
        out = []
        for _ in range(3):  # epochs 0, 1, 2
            m.pre_epoch_processing()
            torch.manual_seed(5)
            out.append(float(m.calculate_loss(batch).detach()))
        return m, out

    _, warm = loss(chns_warmup=2)
    _, off = loss(chns_weight=0.0)
    _, on = loss()
    assert warm[:2] == off[:2] and warm[2] == on[2] and on[2] != off[2]
    # decay: the CHNS term of epoch e weighs chns_weight * decay ** e: at epoch 2, 0.25 of it
    _, dec = loss(chns_decay=0.5)
    assert dec[2] == pytest.approx(off[2] + 0.25 * (on[2] - off[2]), rel=1e-5)
    # branch BPR adds softplus(-(s_m(u,i+) - s_m(u,i-))) of each unimodal branch
    m, with_b = loss(chns_weight=0.0, branch_bpr_weight=0.5)
    with torch.no_grad():
        m.eval()
        p, q, _ = m.forward()
    d = m.dim
    u, i, j = batch
    extra = 0.0
    for sl in (slice(0, d), slice(d, 2 * d)):
        diff = (p[u, sl] * q[i, sl]).sum(-1) - (p[u, sl] * q[j, sl]).sum(-1)
        extra += float(torch.nn.functional.softplus(-diff).mean())
    assert with_b[0] == pytest.approx(off[0] + 0.5 * extra, rel=1e-5)


def test_modality_weights_auto_uses_the_probe_choice(tmp_path):
    from mmrec_plugin.method.probe import choose_graph_weights, weight_candidates
    model, inter = _model(tmp_path, modality_weights="auto")
    gw = model.graph_weights
    t = np.load(tmp_path / "tiny" / "text_feat.npy")
    v = np.load(tmp_path / "tiny" / "image_feat.npy")
    (alpha, (bt, bv)), _ = choose_graph_weights(inter, [t, v], 4, weight_candidates(2))
    assert gw["ii_co_weight"] == alpha and gw["modality_weights"] == [bv, bt]
    assert model.adj_ii.shape == (30, 30)
    with pytest.raises(ConfigError, match="modality_weights"):
        _model(tmp_path, modality_weights="autos")
