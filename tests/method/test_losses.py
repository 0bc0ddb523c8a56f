"""Losses against hand-computed values on tiny cases (SPEC section 3)."""
import math

import pytest
import torch

from mmrec_plugin.method.losses import (
    bpr_loss,
    chns_loss,
    info_nce,
    orthogonality,
    pool_softmax_loss,
    synergy_bpr_loss,
)


def sp(x):  # softplus by hand
    return math.log1p(math.exp(x))


def test_bpr_hand_value():
    got = bpr_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert got.item() == pytest.approx((sp(-1.0) + math.log(2.0)) / 2, rel=1e-6)


def test_bpr_is_stable_for_large_margins():
    got = bpr_loss(torch.tensor([-1000.0]), torch.tensor([0.0]))
    assert got.item() == pytest.approx(1000.0)
    assert bpr_loss(torch.tensor([1000.0]), torch.tensor([0.0])).item() == pytest.approx(0.0, abs=1e-12)


def test_chns_hand_value():
    # two branches (text: pos [2, 0] vs its negative [1, 0]; visual: pos [0, 1] vs [1, 3])
    got = chns_loss([torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])],
                    [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 3.0])])
    want = ((sp(-1.0) + sp(1.0)) + (sp(0.0) + sp(2.0))) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)
    # a third branch adds its own term per row
    got3 = chns_loss([torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])],
                     [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])])
    assert got3.item() == pytest.approx(want + (sp(-1.0) + sp(1.0)) / 2, rel=1e-6)


def test_pool_softmax_hand_value():
    # row 0: positive 1 against pool [0, 2]; row 1: positive 0 against pool [0, 0]; tau 0.5
    got = pool_softmax_loss(torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 2.0], [0.0, 0.0]]), 0.5)
    row0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0) + math.exp(4.0)))
    row1 = math.log(3.0)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # stable far from zero: a positive 1000 above every pool item costs nothing
    assert pool_softmax_loss(torch.tensor([1000.0]), torch.tensor([[0.0, -5.0]]), 1.0).item() == \
        pytest.approx(0.0, abs=1e-12)


def test_synergy_hand_value():
    d_f = torch.tensor([1.0, -0.2])
    d_t = torch.tensor([0.3, 0.4])
    d_v = torch.tensor([0.5, -1.0])
    got = synergy_bpr_loss(d_f, [d_t, d_v], margin=0.1, detach=False)
    want = (sp(-(1.0 - 0.5 - 0.1)) + sp(-(-0.2 - 0.4 - 0.1))) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)
    # the max runs over every branch: a third margin of 0.9 in row 0 replaces 0.5
    d_a = torch.tensor([0.9, -5.0])
    want3 = (sp(-(1.0 - 0.9 - 0.1)) + sp(-(-0.2 - 0.4 - 0.1))) / 2
    assert synergy_bpr_loss(d_f, [d_t, d_v, d_a], 0.1, False).item() == pytest.approx(want3, rel=1e-6)
    assert synergy_bpr_loss(d_f, [d_t, d_v], 0.1, True).item() == pytest.approx(want, rel=1e-6)


def test_synergy_detach_blocks_gradient_through_max():
    def grads(detach):
        d_f = torch.tensor([1.0], requires_grad=True)
        d_t = torch.tensor([0.3], requires_grad=True)
        d_v = torch.tensor([0.5], requires_grad=True)
        synergy_bpr_loss(d_f, [d_t, d_v], 0.1, detach).backward()
        return d_f.grad, d_t.grad, d_v.grad

    # d/dx softplus(-x) = -sigmoid(-x), x = d_f - max - margin = 0.4
    s = 1.0 / (1.0 + math.exp(0.4))
    g_f, g_t, g_v = grads(detach=False)
    assert g_f.item() == pytest.approx(-s, rel=1e-6)
    assert g_v.item() == pytest.approx(s, rel=1e-6)  # the max picks d_v
    assert g_t.item() == pytest.approx(0.0)
    g_f, g_t, g_v = grads(detach=True)
    assert g_f.item() == pytest.approx(-s, rel=1e-6)
    assert g_t is None and g_v is None  # no path from L_syn through the max


def test_synergy_detach_on_branch_parameters():
    """With detach, the unimodal parameters get gradient only through the fused margin."""
    w_t = torch.tensor([0.7], requires_grad=True)
    w_v = torch.tensor([-0.3], requires_grad=True)
    x_t, x_v = torch.tensor([2.0]), torch.tensor([5.0])
    d_t, d_v = w_t * x_t, w_v * x_v  # unimodal margins
    d_f = torch.tensor([0.9], requires_grad=True)  # fused margin from its own parameters
    synergy_bpr_loss(d_f, [d_t, d_v], 0.2, detach=True).backward()
    assert w_t.grad is None and w_v.grad is None


def test_info_nce_hand_values():
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # norms do not matter (cosine)
    b = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
    # a.b^T (normalised) = [[1, 1], [0, 0]] -> each row: log 2
    assert info_nce(a, b, 1.0, symmetric=False).item() == pytest.approx(math.log(2.0), rel=1e-6)
    # b.a^T = [[1, 0], [1, 0]] -> rows: sp(-1), sp(1)
    ba = (sp(-1.0) + sp(1.0)) / 2
    assert info_nce(b, a, 1.0, symmetric=False).item() == pytest.approx(ba, rel=1e-6)
    assert info_nce(a, b, 1.0).item() == pytest.approx(0.5 * (math.log(2.0) + ba), rel=1e-6)
    # temperature 0.5 doubles the logits: row 0 of b.a^T: -log(e^2 / (e^2 + e^0)) = sp(-2)
    want = (sp(-2.0) + sp(2.0)) / 2
    assert info_nce(b, a, 0.5, symmetric=False).item() == pytest.approx(want, rel=1e-6)


def test_orthogonality_hand_value():
    h_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    h_v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert orthogonality(h_t, h_v).item() == pytest.approx((1 + 4 + 9 + 16) / 2)
    assert orthogonality(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.0)
