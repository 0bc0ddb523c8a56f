"""The CPU fast paths of a BR-MRS training step (the kernel choices in mmrec_plugin.sparse and
the in-place pieces of the propagation) give the same losses and gradients, bit for bit, as
the plain reference path they replace; and a step plus an evaluation run on CUDA."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_plugin import sparse
from mmrec_plugin.method.config import BRMRSConfig
from mmrec_plugin.method.model import BRMRSNet


def _net(device="cpu", seed=0, **over):
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 50
    dense = (rng.random((n_users, n_items)) < 0.15).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    feats = {"text": torch.from_numpy(rng.normal(size=(n_items, 6)).astype(np.float32)),
             "visual": torch.from_numpy(rng.normal(size=(n_items, 11)).astype(np.float32))}
    over = {"embedding_size": 32, **over}  # 2 x 32 columns: MKL's path (a width it agrees on)
    cfg = BRMRSConfig().replace(uu_knn_k=5, ii_knn_k=4,
                                modality_weights={"text": 0.5, "visual": 0.5}, **over)
    torch.manual_seed(seed)
    net = BRMRSNet(cfg, sp.csr_matrix(dense), feats, device=device)
    coo = sp.coo_matrix(dense)
    pick = rng.permutation(coo.nnz)[:24]
    batch = [torch.as_tensor(a[pick], dtype=torch.long, device=device)
             for a in (coo.row, coo.col, (coo.col + 7) % n_items)]
    return net, batch


def _steps(net, batch, n=3):
    """Losses (per term) and parameter gradients of ``n`` Adam steps (pools seeded)."""
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    out = []
    torch.manual_seed(1)
    for _ in range(n):
        net.train()
        net.start_epoch()
        opt.zero_grad()
        terms = net.loss_terms(*batch)
        sum(terms.values()).backward()
        out.append(({k: v.detach().clone() for k, v in terms.items()},
                    {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}))
        opt.step()
    return out


def _reference_kernels(monkeypatch):
    """The plain path: torch's reduction kernel for every CSR product."""
    monkeypatch.setattr(sparse, "_has_mkl_csr_out", lambda: False)


def _assert_same(a, b):
    for (ta, ga), (tb, gb) in zip(a, b):
        assert list(ta) == list(tb) and list(ga) == list(gb)
        for k in ta:
            assert torch.equal(ta[k], tb[k]), k
        for k in ga:
            assert torch.equal(ga[k], gb[k]), k


@pytest.mark.parametrize("over", [{}, {"reg_weight": 0.0, "edge_dropout": 0.0, "n_uu_layers": 2},
                                  {"fusion": "gate", "n_ui_layers": 1}, {"embedding_size": 8}])
def test_training_steps_equal_the_reference_path_bit_for_bit(monkeypatch, over):
    torch.set_num_threads(1)
    net, batch = _net(**over)
    fast = _steps(net, batch)
    with monkeypatch.context() as m:
        _reference_kernels(m)
        net, batch = _net(**over)
        ref = _steps(net, batch)
    _assert_same(fast, ref)


def test_evaluation_scores_equal_the_reference_path(monkeypatch):
    net, _ = _net()
    net.eval()
    users = torch.arange(40)
    with torch.no_grad():
        fast = net.full_sort_predict(users)
    with monkeypatch.context() as m:
        _reference_kernels(m)
        net.drop_eval_cache()
        with torch.no_grad():
            ref = net.full_sort_predict(users)
    assert torch.equal(fast, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_step_and_evaluation_on_cuda_match_cpu():
    # without CHNS no pool is drawn (pools come from each device's own generator)
    default_net, default_batch = _net(device="cuda")
    (terms, grads), = _steps(default_net, default_batch, n=1)
    assert all(bool(torch.isfinite(v)) for v in terms.values()) and grads
    cpu_net, cpu_batch = _net(chns_weight=0.0)
    gpu_net, gpu_batch = _net(device="cuda", chns_weight=0.0)
    cpu, gpu = _steps(cpu_net, cpu_batch, n=1), _steps(gpu_net, gpu_batch, n=1)
    for k in cpu[0][0]:
        torch.testing.assert_close(gpu[0][0][k].cpu(), cpu[0][0][k], rtol=1e-4, atol=1e-5)
    for k in cpu[0][1]:
        torch.testing.assert_close(gpu[0][1][k].cpu(), cpu[0][1][k], rtol=1e-3, atol=1e-5)
    for net in (cpu_net, gpu_net):
        net.eval()
    with torch.no_grad():
        s_gpu = gpu_net.full_sort_predict(torch.arange(40, device="cuda"))
        s_cpu = cpu_net.full_sort_predict(torch.arange(40))
    assert s_gpu.is_cuda and bool(torch.isfinite(s_gpu).all())
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("width", [64, 16])
def test_column_blocks_propagate_to_the_bits_of_one_matrix(width):
    """LightGCN (with the rows' L2), smoothing and row smoothing of M column blocks, each on
    its own: values and gradients equal to those of the one ``[N, M d]`` matrix."""
    from mmrec_plugin.method.propagation import smooth, smooth_rows

    net, (users, pos, neg) = _net()
    adj, adj_uu = net.adj_ui, net.adj_uu
    g = torch.Generator().manual_seed(0)
    whole = torch.randn(adj.shape[0], 2 * width, generator=g)
    w_out = torch.randn(users.numel() + net.n_items, 2 * width, generator=g)
    rows = torch.cat([users, net.n_users + pos])

    def run(blocks):
        xs = [b.clone().requires_grad_() for b in blocks]
        x = xs[0] if len(xs) == 1 else xs
        out, l2 = sparse.lightgcn_l2(adj, x, 3, rows, symmetric=True)
        outs = [out] if len(xs) == 1 else out
        p = [o[:net.n_users] for o in outs]
        q = [o[net.n_users:] for o in outs]
        p = smooth_rows(adj_uu, p[0] if len(xs) == 1 else p, 1, users, symmetric=True)
        q = smooth(net.adj_ii, q[0] if len(xs) == 1 else q, 1, symmetric=True)
        res = torch.cat([torch.cat(p, 1) if isinstance(p, list) else p,
                         torch.cat(q, 1) if isinstance(q, list) else q])
        ((res * w_out).sum() + 0.5 * l2).backward()
        return res.detach(), l2.detach(), torch.cat([x.grad for x in xs], 1)

    one = run([whole])
    split = run(list(whole.split(width, 1)))
    for a, b in zip(one, split):
        assert torch.equal(a, b)
