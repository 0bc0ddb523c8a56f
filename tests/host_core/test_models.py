import os

import numpy as np
import pytest
import torch

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.host.dataloader import EvalDataLoader, TrainDataLoader
from mmrec_plugin.host.dataset import RecDataset
from mmrec_plugin.host.models import BPR, LightGCN
from mmrec_plugin.sparse import bipartite_csr as normalized_bipartite_adjacency
from mmrec_plugin.host.trainer import Trainer

# user 3 has only valid/test interactions: zero degree in the training graph
ROWS = [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 2, 0), (1, 4, 0), (2, 0, 0), (2, 3, 0),
        (0, 2, 1), (1, 0, 1), (3, 1, 1), (0, 3, 2), (2, 1, 2), (3, 4, 2)]


def _tiny(tmp_path, h, **kw):
    h.write_inter(tmp_path, "g", ROWS)
    opts = dict(is_multimodal_model=False, embedding_size=3, n_layers=2, reg_weight=0.0)
    opts.update(kw)
    cfg = h.make_config(tmp_path, "g", **opts)
    train = RecDataset(cfg).split()[0]
    return cfg, train, TrainDataLoader(cfg, train, 4)


def dense_reference(R, e0, n_layers):
    n_u, n_i = R.shape
    A = np.zeros((n_u + n_i, n_u + n_i))
    A[:n_u, n_u:] = R
    A[n_u:, :n_u] = R.T
    d = A.sum(1)
    with np.errstate(divide="ignore"):
        dinv = np.where(d > 0, 1 / np.sqrt(d), 0.0)
    Ah = dinv[:, None] * A * dinv[None, :]
    layers = [e0]
    for _ in range(n_layers):
        layers.append(Ah @ layers[-1])
    return np.mean(layers, axis=0), Ah


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
def test_lightgcn_propagation_matches_dense(tmp_path, h, n_layers):
    cfg, train, loader = _tiny(tmp_path, h, n_layers=n_layers)
    torch.manual_seed(0)
    model = LightGCN(cfg, loader)
    R = train.inter_matrix("csr").toarray()
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double().numpy()
    want, Ah = dense_reference(R, e0, n_layers)
    assert np.allclose(normalized_bipartite_adjacency(train.inter_matrix("coo")).toarray(), Ah, atol=1e-6)
    u, i = model.forward()
    got = torch.cat([u, i]).detach().double().numpy()
    assert np.allclose(got, want, atol=1e-5)
    scores = model.full_sort_predict([torch.tensor([2, 0])]).detach().double().numpy()
    assert np.allclose(scores, want[[2, 0], :4] @ want[4:].T, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "fused_adam", "load_state_dict"])
def test_lightgcn_eval_cache_follows_parameter_changes(tmp_path, h, optimizer):
    """In eval mode the propagation is reused across batches, but any change of the
    parameters (an optimiser step, fused or not, or a restored state) is seen."""
    cfg, train, loader = _tiny(tmp_path, h, n_layers=2)
    torch.manual_seed(0)
    model = LightGCN(cfg, loader)
    users = [torch.tensor([0, 3])]

    def fresh():
        u, i = model.forward()
        return (u[users[0]] @ i.t()).detach()

    model.eval()
    first = model.full_sort_predict(users)
    assert torch.equal(first, fresh())
    assert torch.equal(model.full_sort_predict(users), first)
    if optimizer == "load_state_dict":
        state = {k: v + 0.5 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.1, **({"fused": True} if optimizer == "fused_adam" else {}))
        model.calculate_loss(torch.tensor([[0, 1], [1, 2], [3, 0]])).backward()
        opt.step()
    after = model.full_sort_predict(users)
    assert not torch.equal(after, first)
    assert torch.allclose(after, fresh())


def test_lightgcn_loss_hand_computed(tmp_path, h):
    cfg, train, loader = _tiny(tmp_path, h, reg_weight=0.1, n_layers=1)
    torch.manual_seed(0)
    model = LightGCN(cfg, loader)
    batch = torch.tensor([[0, 1], [1, 2], [3, 0]])
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double().numpy()
    E, _ = dense_reference(train.inter_matrix("csr").toarray(), e0, 1)
    U, I = E[:4], E[4:]
    x = (U[[0, 1]] * I[[1, 2]]).sum(1) - (U[[0, 1]] * I[[3, 0]]).sum(1)
    bpr = np.mean(np.log1p(np.exp(-x)))
    eu, ei = e0[:4], e0[4:]
    reg = (np.linalg.norm(eu[[0, 1]]) + np.linalg.norm(ei[[1, 2]]) + np.linalg.norm(ei[[3, 0]])) / 2
    assert float(model.calculate_loss(batch).detach()) == pytest.approx(bpr + 0.1 * reg, rel=1e-5)


def test_bpr_loss_and_scores(tmp_path, h):
    cfg, train, loader = _tiny(tmp_path, h, reg_weight=0.01)
    torch.manual_seed(0)
    model = BPR(cfg, loader)
    U = model.user_embedding.weight.detach().double().numpy()
    I = model.item_embedding.weight.detach().double().numpy()
    batch = torch.tensor([[2, 1, 0], [3, 4, 1], [1, 0, 3]])
    x = (U[[2, 1, 0]] * I[[3, 4, 1]]).sum(1) - (U[[2, 1, 0]] * I[[1, 0, 3]]).sum(1)
    want = np.mean(np.log1p(np.exp(-x))) + 0.01 * (
        np.linalg.norm(U[[2, 1, 0]]) + np.linalg.norm(I[[3, 4, 1]]) + np.linalg.norm(I[[1, 0, 3]])) / 3
    assert float(model.calculate_loss(batch).detach()) == pytest.approx(want, rel=1e-5)
    assert np.allclose(model.full_sort_predict([torch.tensor([1])]).detach().numpy(), U[[1]] @ I.T, atol=1e-6)


def test_grid_list_is_config_error(tmp_path, h):
    cfg, train, loader = _tiny(tmp_path, h)
    with pytest.raises(ConfigError, match="LightGCN: config key 'reg_weight'.*a list is a grid"):
        LightGCN(dict(cfg, reg_weight=[1e-4, 1e-3]), loader)


@pytest.mark.parametrize("cls", [LightGCN, BPR])
def test_training_lowers_loss(tmp_path, h, cls):
    rows = h.random_rows(n_users=40, n_items=30, per_user=(5, 10), seed=2)
    h.write_inter(tmp_path, "r", rows)
    cfg = h.make_config(tmp_path, "r", is_multimodal_model=False, embedding_size=16, n_layers=2,
                        reg_weight=1e-4, learning_rate=0.01, epochs=8, metrics=["Recall"], topk=[5],
                        valid_metric="Recall@5", stopping_step=100)
    torch.manual_seed(0)
    train, valid, test = RecDataset(cfg).split()
    tr = TrainDataLoader(cfg, train, 32)
    model = cls(cfg, tr)
    trainer = Trainer(cfg, model)
    trainer.fit(tr, EvalDataLoader(cfg, valid, train, 16), EvalDataLoader(cfg, test, train, 16))
    losses = [r["loss"] for r in trainer.history]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]


#: the host models' documented defaults (their docstrings; MMRec's values), written out by hand
HOST_MODEL_DEFAULTS = {
    "LightGCN": {"embedding_size": 64, "n_layers": 2, "reg_weight": [1e-4]},
    "BPR": {"embedding_size": 64, "reg_weight": [1e-4]},
    "MMGCN": {"embedding_size": 64, "dim_latent": 64, "n_layers": 2, "reg_weight": [1e-4]},
    "FREEDOM": {"embedding_size": 64, "feat_embed_dim": None, "knn_k": 10, "mm_image_weight": 0.1,
                "n_mm_layers": 1, "n_ui_layers": 2, "dropout": [0.8], "reg_weight": [0.0]},
}


@pytest.mark.parametrize("model", sorted(HOST_MODEL_DEFAULTS))
def test_host_models_resolve_to_their_documented_defaults(model, tmp_path):
    """Defaults from the model's schema, grids from its yaml; a bad value names the key."""
    from mmrec_plugin.host.config import Config

    config = Config(model, "demo", config_dict={"data_path": str(tmp_path)})
    for key, want in HOST_MODEL_DEFAULTS[model].items():
        assert config[key] == want, key
    grid = [k for k, v in HOST_MODEL_DEFAULTS[model].items() if isinstance(v, list)]
    assert config["hyper_parameters"] == ["seed"] + grid
    with pytest.raises(ConfigError, match="'embedding_size'.*>= 1"):
        Config(model, "demo", config_dict={"data_path": str(tmp_path), "embedding_size": 0})


def test_normalised_adjacency_exactly_symmetric_and_gradient_matches_dense(tmp_path, h):
    from mmrec_plugin.sparse import sparse_mm, to_torch_csr

    def symmetric_spmm(a, x):
        return sparse_mm(a, x, symmetric=True)

    rows = h.random_rows(n_users=12, n_items=9, seed=4)
    h.write_inter(tmp_path, "s", rows)
    train = RecDataset(h.make_config(tmp_path, "s")).split()[0]
    M = normalized_bipartite_adjacency(train.inter_matrix("coo"))
    assert (M != M.T).nnz == 0
    A = to_torch_csr(M)
    x = torch.randn(M.shape[0], 4, dtype=torch.float32, requires_grad=True)
    w = torch.randn(M.shape[0], 4)
    (symmetric_spmm(A, symmetric_spmm(A, x)) * w).sum().backward()
    D = torch.from_numpy(M.toarray())
    x2 = x.detach().clone().requires_grad_(True)
    (D @ (D @ x2) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
