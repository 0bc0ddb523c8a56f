"""FREEDOM and MMGCN (host reference models) against dense, hand-worked references."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.dataloader import TrainDataLoader
from mmrec_plugin.host.dataset import RecDataset
from mmrec_plugin.host.models import FREEDOM, MMGCN
from mmrec_plugin.host.models.freedom import knn_item_graph, normalized_edge_graph
from mmrec_plugin.neighbours import prune_edges
from mmrec_plugin.host.models.mmgcn import mean_bipartite_adjacency

# user 3 has only valid/test interactions: zero degree in the training graph
ROWS = [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 2, 0), (1, 4, 0), (2, 0, 0), (2, 3, 0),
        (0, 2, 1), (1, 0, 1), (3, 1, 1), (0, 3, 2), (2, 1, 2), (3, 4, 2)]
TRAIN = [(0, 0), (0, 1), (1, 1), (1, 2), (1, 4), (2, 0), (2, 3)]
N_U, N_I = 4, 5

# 5 items, 2-d features: cosine neighbourhoods are easy to read off by hand
V_FEAT = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [1, 1]], dtype=np.float32)
T_FEAT = np.array([[0, 1, 0], [1, 0, 0], [1, 0.2, 0], [0, 0, 1], [0, 1, 0.1]], dtype=np.float32)


def _setup(tmp_path, h, **kw):
    h.write_inter(tmp_path, "g", ROWS)
    np.save(os.path.join(str(tmp_path), "g", "image_feat.npy"), V_FEAT)
    np.save(os.path.join(str(tmp_path), "g", "text_feat.npy"), T_FEAT)
    opts = dict(is_multimodal_model=True, embedding_size=4)
    opts.update(kw)
    cfg = h.make_config(tmp_path, "g", **opts)
    train = RecDataset(cfg).split()[0]
    return cfg, TrainDataLoader(cfg, train, 4)


def dense_R():
    R = np.zeros((N_U, N_I))
    for u, i in TRAIN:
        R[u, i] = 1
    return R


def dense_bipartite(R):
    A = np.zeros((N_U + N_I, N_U + N_I))
    A[:N_U, N_U:] = R
    A[N_U:, :N_U] = R.T
    return A


def sym_norm(A):
    d = A.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    return inv[:, None] * A * inv[None, :]


# --- FREEDOM graphs ---------------------------------------------------------------------

def test_knn_item_graph_hand_worked():
    # visual, k=2: 0 -> {0, 1}, 1 -> {1, 0}, 2 -> {2, 3}, 3 -> {3, 2}, 4 -> {4, and 1 or 3}:
    # cos(4, 1) = 1.1/(sqrt2 sqrt1.01) = 0.774 = cos(4, 3): a tie; use k=2 on rows 0..3 only
    S = knn_item_graph(V_FEAT, 2).toarray()
    want = np.zeros((5, 5))
    for r, cols in {0: [0, 1], 1: [1, 0], 2: [2, 3], 3: [3, 2]}.items():
        want[r, cols] = 0.5  # D = 2 I: D^-1/2 K D^-1/2 = K / 2
    assert np.allclose(S[:4], want[:4])
    assert S[4, 4] == 0.5 and S[4].sum() == pytest.approx(1.0) and S[4, [1, 3]].sum() == 0.5
    # k=1: every item is its own nearest neighbour
    assert np.allclose(knn_item_graph(T_FEAT, 1).toarray(), np.eye(5))


def test_knn_item_graph_blocks_match_dense():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = u @ u.T
    want = np.zeros((37, 37))
    for r in range(37):
        want[r, np.argsort(-sim[r])[:4]] = 0.25
    assert np.allclose(knn_item_graph(x, 4, block_size=5).toarray(), want)


def test_normalized_edge_graph_matches_dense():
    R = dense_R()
    users = torch.tensor([u for u, _ in TRAIN])
    items = torch.tensor([i for _, i in TRAIN])
    got = normalized_edge_graph(users, items, N_U, N_I).to_dense().numpy()
    assert np.allclose(got, sym_norm(dense_bipartite(R)), atol=1e-6)
    # a subgraph is normalised with its own degrees
    keep = torch.tensor([0, 3, 4])
    R2 = np.zeros_like(R)
    for k in keep.tolist():
        R2[TRAIN[k]] = 1
    got2 = normalized_edge_graph(users[keep], items[keep], N_U, N_I).to_dense().numpy()
    assert np.allclose(got2, sym_norm(dense_bipartite(R2)), atol=1e-6)


def test_prune_edges_count_distinct_and_degree_sensitive():
    w = torch.tensor([1.0, 3.0, 1.0, 1.0, 2.0])
    kept = prune_edges(w, 0.6)  # floor(0.4 * 5) = 2
    assert kept.numel() == 2 and kept.unique().numel() == 2
    assert torch.equal(prune_edges(w, 0.0), torch.arange(5))
    # keep 1 of 2: P(edge 1) = 3 / (1 + 3)
    g = torch.Generator().manual_seed(0)
    hits = sum(int(prune_edges(torch.tensor([1.0, 3.0]), 0.5, g)[0]) for _ in range(4000))
    assert abs(hits / 4000 - 0.75) < 0.03


def test_freedom_edge_weights_and_pruned_graph(tmp_path, h):
    cfg, loader = _setup(tmp_path, h, dropout=0.5)
    torch.manual_seed(0)
    model = FREEDOM(cfg, loader)
    R = dense_R()
    d_u, d_i = R.sum(1), R.sum(0)
    got = {(int(u), int(i)): float(w) for u, i, w in zip(model.edge_users, model.edge_items, model.edge_weights)}
    assert got == pytest.approx({(u, i): 1 / np.sqrt(d_u[u] * d_i[i]) for u, i in TRAIN})
    model.train()
    model.pre_epoch_processing()
    A = model.masked_adj.to_dense().numpy()
    kept = (A[:N_U, N_U:] > 0)
    assert kept.sum() == 3 and np.all(R[kept] == 1)  # floor(0.5 * 7) training edges
    assert np.allclose(A, sym_norm(dense_bipartite(kept.astype(float))), atol=1e-6)


def test_freedom_forward_and_loss_match_dense(tmp_path, h):
    cfg, loader = _setup(tmp_path, h, knn_k=2, mm_image_weight=0.25, n_mm_layers=1, n_ui_layers=2,
                         dropout=0.0, reg_weight=0.5)
    torch.manual_seed(0)
    model = FREEDOM(cfg, loader)
    E_u = model.user_embedding.weight.detach().double().numpy()
    E_i = model.item_id_embedding.weight.detach().double().numpy()
    S = 0.25 * knn_item_graph(V_FEAT, 2).toarray() + 0.75 * knn_item_graph(T_FEAT, 2).toarray()
    G = sym_norm(dense_bipartite(dense_R()))
    e0 = np.vstack([E_u, E_i])
    mean = (e0 + G @ e0 + G @ G @ e0) / 3
    want_u, want_i = mean[:N_U], mean[N_U:] + S @ E_i
    u, i = model.forward()
    assert np.allclose(u.detach().numpy(), want_u, atol=1e-5)
    assert np.allclose(i.detach().numpy(), want_i, atol=1e-5)
    scores = model.full_sort_predict([torch.tensor([2, 0])]).detach().numpy()
    assert np.allclose(scores, want_u[[2, 0]] @ want_i.T, atol=1e-5)

    batch = torch.tensor([[0, 1, 2], [1, 4, 3], [3, 0, 4]])
    model.train()
    model.pre_epoch_processing()  # dropout 0: the whole graph
    loss = float(model.calculate_loss(batch).detach())

    def bpr(pos, neg):
        return np.mean(np.log1p(np.exp(-(pos - neg))))

    us, ps, ns = batch.numpy()
    want = bpr((want_u[us] * want_i[ps]).sum(1), (want_u[us] * want_i[ns]).sum(1))
    for lin, x in ((model.projections["visual"], V_FEAT), (model.projections["text"], T_FEAT)):
        p = x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        want += 0.5 * bpr((want_u[us] * p[ps]).sum(1), (want_u[us] * p[ns]).sum(1))
    assert loss == pytest.approx(want, rel=1e-5)


def test_freedom_config_errors(tmp_path, h):
    cfg, loader = _setup(tmp_path, h, feat_embed_dim=8)
    with pytest.raises(ConfigError, match="feat_embed_dim"):
        FREEDOM(cfg, loader)
    cfg, loader = _setup(tmp_path, h, dropout=1.0)
    with pytest.raises(ConfigError, match="dropout"):
        FREEDOM(cfg, loader)
    cfg, loader = _setup(tmp_path, h, is_multimodal_model=False)
    with pytest.raises(ConfigError, match="item features"):
        FREEDOM(cfg, loader)


# --- MMGCN ------------------------------------------------------------------------------

def test_mean_bipartite_adjacency_matches_dense():
    import scipy.sparse as sp

    A = dense_bipartite(dense_R())
    d = A.sum(1)
    want = np.where(d[:, None] > 0, A / np.maximum(d, 1)[:, None], 0.0)
    got = mean_bipartite_adjacency(sp.coo_matrix(dense_R())).toarray()
    assert np.allclose(got, want)
    assert np.allclose(got[3], 0.0)  # user 3: no training edges


def _total(loss):
    """The trainer's rule: a tuple of terms is summed."""
    return sum(loss) if isinstance(loss, tuple) else loss


def _lrelu(x):
    return np.where(x > 0, x, 0.01 * x)


def test_mmgcn_forward_and_loss_match_dense(tmp_path, h):
    cfg, loader = _setup(tmp_path, h, dim_latent=3, n_layers=2, reg_weight=0.1)
    torch.manual_seed(0)
    model = MMGCN(cfg, loader)
    A = dense_bipartite(dense_R())
    P = A / np.maximum(A.sum(1), 1)[:, None]
    e_id = model.id_embedding.detach().double().numpy()

    def lin(layer, x):
        return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()

    reps = {}
    for m, f in (("visual", V_FEAT), ("text", T_FEAT)):
        g = model.gcn[m]
        x = np.vstack([g.preference.detach().double().numpy(), _lrelu(lin(g.proj, f))])
        for agg, comb in zip(g.agg, g.comb):
            x = _lrelu(_lrelu(lin(agg, P @ x)) + _lrelu(lin(comb, x)) + e_id)
        reps[m] = x
    got = model.modality_representations()
    for m in ("visual", "text"):
        assert np.allclose(torch.cat(got[m]).detach().numpy(), reps[m], atol=1e-5)
    fused = reps["visual"] + reps["text"]
    fu, fi = fused[:N_U], fused[N_U:]
    scores = model.full_sort_predict([torch.tensor([1, 3])]).detach().numpy()
    assert np.allclose(scores, fu[[1, 3]] @ fi.T, atol=1e-5)

    batch = torch.tensor([[0, 1, 2], [1, 4, 3], [3, 0, 4]])
    us, ps, ns = batch.numpy()
    want = np.mean(np.log1p(np.exp(-((fu[us] * fi[ps]).sum(1) - (fu[us] * fi[ns]).sum(1)))))
    norms = [np.linalg.norm(model.gcn[m].preference.detach().double().numpy()[us]) for m in ("visual", "text")]
    norms += [np.linalg.norm(e_id[us]), np.linalg.norm(e_id[N_U + ps]), np.linalg.norm(e_id[N_U + ns])]
    want += 0.1 * sum(norms) / 3
    assert float(_total(model.calculate_loss(batch)).detach()) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", ["FREEDOM", "MMGCN"])
def test_registered_and_trains(tmp_path, h, name):
    from mmrec_plugin.host.trainer import Trainer
    from mmrec_plugin.registry import get_model

    cls = get_model(name.lower())
    assert cls is {"FREEDOM": FREEDOM, "MMGCN": MMGCN}[name]
    cfg, loader = _setup(tmp_path, h, dropout=0.5, learning_rate=0.05)
    torch.manual_seed(0)
    model = cls(cfg, loader)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = torch.tensor([[0, 1, 2, 0], [1, 4, 3, 0], [3, 0, 4, 4]])
    model.train()
    losses = []
    for _ in range(30):
        model.pre_epoch_processing()
        loss = _total(model.calculate_loss(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


# --- the BR-MRS objective: sibling models FREEDOM_BR, MMGCN_BR (src/models) ---------------

def _softplus(x):
    return float(np.log1p(np.exp(x)))


def _sibling(name):
    from mmrec_plugin.registry import get_model

    return get_model(name)


def test_freedom_br_matches_naive_reference(tmp_path, h):
    """CHNS negatives from a seeded pool, each modality's chosen by the OTHER modality's
    scores; syn and fused BPR on FREEDOM's fused score; row by row in numpy."""
    cfg, loader = _setup(tmp_path, h, dropout=0.0, reg_weight=0.5, pool_size=2,
                         chns_weight=0.7, syn_weight=0.4, syn_margin=0.2, bpr_weight=0.3,
                         chns_hardness="argmax")  # the reference below spells out argmax
    torch.manual_seed(0)
    model = _sibling("freedom_br")(cfg, loader)
    assert isinstance(model, FREEDOM)
    model.train()
    model.pre_epoch_processing()
    batch = torch.tensor([[0, 1, 2], [1, 4, 3], [3, 0, 4]])
    users = batch[0]
    torch.manual_seed(7)
    pool = model.br.candidate_pool(users).numpy()
    torch.manual_seed(7)
    loss = model.calculate_loss(batch)
    # chns, syn, bpr; FREEDOM's lambda-weighted modality BPR is replaced, not added
    assert tuple(model.last_loss_terms) == ("chns", "syn", "bpr")
    terms = list(model.last_loss_terms.values())
    torch.testing.assert_close(loss.detach(), sum(terms))

    with torch.no_grad():
        U, I = (t.double().numpy() for t in model.forward())
        P = {m: p.double().numpy() for m, p in model.modality_items().items()}
    R = dense_R()
    chns = syn = bpr = 0.0
    for b, (u, i, j) in enumerate(batch.t().tolist()):
        assert R[u, pool[b]].sum() == 0  # pools avoid training items
        s = {m: (lambda k, m=m: float(U[u] @ P[m][k])) for m in ("text", "visual")}
        other = {"text": "visual", "visual": "text"}
        for m in ("text", "visual"):
            hard = pool[b][int(np.argmax([s[other[m]](k) for k in pool[b]]))]
            chns += _softplus(-(s[m](i) - s[m](hard)))
        d_f = float(U[u] @ I[i] - U[u] @ I[j])
        d_max = max(s[m](i) - s[m](j) for m in ("text", "visual"))
        syn += _softplus(-(d_f - d_max - 0.2))
        bpr += _softplus(-d_f)
    want = [0.7 * chns / 3, 0.4 * syn / 3, 0.3 * bpr / 3]
    assert [float(t.detach()) for t in terms] == pytest.approx(want, rel=1e-5)


def test_mmgcn_br_uses_each_modality_network(tmp_path, h):
    cfg, loader = _setup(tmp_path, h, dim_latent=3, reg_weight=0.1, pool_size=3,
                         chns_hardness="argmax")  # the reference below spells out argmax
    torch.manual_seed(0)
    model = _sibling("mmgcn_br")(cfg, loader)
    batch = torch.tensor([[0, 1, 2], [1, 4, 3], [3, 0, 4]])
    users, pos, neg = batch
    torch.manual_seed(3)
    loss = model.calculate_loss(batch)
    assert tuple(model.last_loss_terms) == ("chns", "syn", "bpr", "reg")
    *obj_terms, reg = model.last_loss_terms.values()
    torch.testing.assert_close(loss.detach(), sum(model.last_loss_terms.values()))
    with torch.no_grad():
        reps = model.modality_representations()
        U = {m: reps[m][0].double().numpy() for m in reps}
        I = {m: reps[m][1].double().numpy() for m in reps}
    torch.manual_seed(3)
    pool = model.br.candidate_pool(users).numpy()
    fu, fi = U["text"] + U["visual"], I["text"] + I["visual"]
    chns = syn = bpr = 0.0
    for b, (u, i, j) in enumerate(batch.t().tolist()):
        s = {m: (lambda k, m=m: float(U[m][u] @ I[m][k])) for m in ("text", "visual")}
        for m, o in (("text", "visual"), ("visual", "text")):
            hard = pool[b][int(np.argmax([s[o](k) for k in pool[b]]))]
            chns += _softplus(-(s[m](i) - s[m](hard)))
        d_f = float(fu[u] @ fi[i] - fu[u] @ fi[j])
        syn += _softplus(-(d_f - max(s[m](i) - s[m](j) for m in ("text", "visual")) - 0.1))
        bpr += _softplus(-d_f)
    assert [float(t.detach()) for t in obj_terms] == pytest.approx([chns / 3, syn / 3, bpr / 3], rel=1e-5)
    assert float(reg.detach()) == pytest.approx(float(model.regularizer(users, pos, neg).detach()), rel=1e-6)


@pytest.mark.parametrize("name", ["freedom_br", "mmgcn_br"])
def test_sibling_counts_epochs_for_the_chns_warmup_and_decay(tmp_path, h, name):
    """pre_epoch_processing (the trainer calls it every epoch) counts the objective's epochs:
    with chns_warmup 1 epoch 0 has no CHNS term, epoch 1 has it at chns_weight, epoch 2 at
    chns_weight * chns_decay."""
    cfg, loader = _setup(tmp_path, h, dropout=0.0, pool_size=2, chns_weight=0.8, chns_warmup=1,
                         chns_decay=0.5)
    torch.manual_seed(0)
    model = _sibling(name)(cfg, loader)
    model.train()
    batch = torch.tensor([[0, 1, 2], [1, 4, 3], [3, 0, 4]])
    seen = []
    for _ in range(3):
        model.pre_epoch_processing()
        model.calculate_loss(batch)
        seen.append(("chns" in model.last_loss_terms, model.br.chns_weight_now()))
    assert seen == [(False, 0.8), (True, 0.8), (True, 0.4)]


#: the objective's documented defaults (docs/METHOD.md), shared with BRMRS
OBJECTIVE_DEFAULTS = {"pool_size": 32, "neg_strategy": "cross", "chns_hardness": "topk",
                      "chns_temperature": 1.0, "chns_topk": 4, "chns_warmup": 0, "chns_decay": 1.0,
                      "chns_guard": False, "branch_bpr_weight": 0.0, "chns_weight": 1.0,
                      "syn_weight": 1.0, "syn_margin": 0.1, "syn_detach": False, "bpr_weight": 1.0,
                      "pool_softmax_weight": 0.0, "pool_softmax_temperature": 1.0}


@pytest.mark.parametrize("name", ["FREEDOM", "MMGCN"])
def test_sibling_config_is_the_model_config_plus_the_objective_defaults(name, tmp_path):
    """A _BR sibling's resolved config: its parent's keys and values, plus the objective's
    documented defaults (which its yaml does not repeat)."""
    import yaml

    from mmrec_plugin.host.config import Config

    base = Config(name, "demo", config_dict={"data_path": str(tmp_path)})
    sib = Config(name + "_BR", "demo", config_dict={"data_path": str(tmp_path)})
    assert {k: sib[k] for k in OBJECTIVE_DEFAULTS} == OBJECTIVE_DEFAULTS
    with open(base.model_yaml) as fh:
        own = set(yaml.safe_load(fh)) - {"hyper_parameters"}
    for key in own - {"reg_weight"}:  # FREEDOM_BR does not search FREEDOM's reg_weight
        assert sib[key] == base[key], key


@pytest.mark.parametrize("name", ["FREEDOM", "MMGCN"])
def test_eval_cache_follows_parameter_changes(tmp_path, h, name):
    """Eval propagates once per evaluation but sees an optimiser step (fused Adam too) and
    restored weights; evaluation never uses the pruned training graph."""
    cls = {"FREEDOM": FREEDOM, "MMGCN": MMGCN}[name]
    cfg, loader = _setup(tmp_path, h, dropout=0.5)
    torch.manual_seed(0)
    model = cls(cfg, loader)
    users = [torch.tensor([0, 3])]

    def fresh():
        u, i = model.forward()
        return (u[users[0]] @ i.t()).detach()

    model.train()
    model.pre_epoch_processing()
    model.eval()
    first = model.full_sort_predict(users)
    assert torch.allclose(first, fresh()) and torch.equal(model.full_sort_predict(users), first)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    loss = model.calculate_loss(torch.tensor([[0, 1], [1, 4], [3, 0]]))
    (sum(loss) if isinstance(loss, tuple) else loss).backward()
    opt.step()
    model.eval()
    second = model.full_sort_predict(users)
    assert not torch.allclose(second, first) and torch.allclose(second, fresh())
    model.load_state_dict({k: v + 0.5 for k, v in model.state_dict().items()})
    assert torch.allclose(model.full_sort_predict(users), fresh())


def test_freedom_scores_an_item_without_training_interactions_from_its_neighbours(tmp_path, h):
    """Item 4 appears only in valid/test: its id vector never enters a score (it would be an
    untrained vector); its representation is the kNN-graph mean of the other items' vectors."""
    rows = [r if r != (1, 4, 0) else (1, 4, 1) for r in ROWS]
    h.write_inter(tmp_path, "c", rows)
    for name, feat in (("image_feat.npy", V_FEAT), ("text_feat.npy", T_FEAT)):
        np.save(os.path.join(str(tmp_path), "c", name), feat)
    cfg = h.make_config(tmp_path, "c", is_multimodal_model=True, embedding_size=4, knn_k=2,
                        mm_image_weight=0.25, n_mm_layers=1, n_ui_layers=2, dropout=0.0, reg_weight=0.0)
    torch.manual_seed(0)
    model = FREEDOM(cfg, TrainDataLoader(cfg, RecDataset(cfg).split()[0], 4))
    assert model.untrained_items.tolist() == [4]
    E_i = model.item_id_embedding.weight.detach().double().numpy().copy()
    E_i[4] = 0.0
    S = 0.25 * knn_item_graph(V_FEAT, 2).toarray() + 0.75 * knn_item_graph(T_FEAT, 2).toarray()
    model.eval()
    _, items = model.forward()
    # no training edge: the user-item part of item 4 is its (zeroed) layer 0
    assert np.allclose(items[4].detach().numpy(), (S @ E_i)[4], atol=1e-6)
    before = model.full_sort_predict([torch.arange(N_U)]).detach().clone()
    with torch.no_grad():
        model.item_id_embedding.weight[4] += 5.0
    assert torch.equal(model.full_sort_predict([torch.arange(N_U)]), before)
    model.train()
    model.pre_epoch_processing()
    model.calculate_loss(torch.tensor([[0, 1, 2], [1, 2, 3], [4, 4, 4]])).backward()
    assert model.item_id_embedding.weight.grad[4].abs().max() == 0
    assert model.item_id_embedding.weight.grad[:4].abs().max() > 0
