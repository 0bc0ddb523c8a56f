"""Fusion shapes, the gate range, and config errors."""
import pytest
import torch

from mmrec_plugin.method.fusion import Fusion


@pytest.mark.parametrize("kind", ["mean", "gate", "mlp"])
def test_shapes(kind):
    f = Fusion(kind, 8)
    a, b = torch.randn(5, 3, 8), torch.randn(5, 3, 8)
    out = f(a, b)
    assert out.shape == (5, 3, 8)
    out.sum().backward() if out.requires_grad else None


def test_concat_scores_are_the_sum_of_branch_scores():
    f = Fusion("concat", 6)
    pt, pv, qt, qv = (torch.randn(4, 6) for _ in range(4))
    assert f(pt, pv).shape == (4, 12)
    s_f = (f(pt, pv) * f(qt, qv)).sum(-1)
    torch.testing.assert_close(s_f, (pt * qt).sum(-1) + (pv * qv).sum(-1))


def test_mean_is_mean():
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(Fusion("mean", 6)(a, b), (a + b) / 2)


def test_gate_in_unit_interval_and_convex():
    f = Fusion("gate", 6)
    with torch.no_grad():
        f.gate.weight.mul_(50.0)  # push the gate towards saturation
    a, b = torch.randn(100, 6) * 10, torch.randn(100, 6) * 10
    g = f.gate_values(a, b)
    assert g.min() >= 0 and g.max() <= 1
    torch.testing.assert_close(f(a, b), g * a + (1 - g) * b)
    out = f(a, b)
    assert ((out >= torch.minimum(a, b) - 1e-5) & (out <= torch.maximum(a, b) + 1e-5)).all()


def test_reset_parameters_reinitialises():
    f = Fusion("mlp", 4)
    with torch.no_grad():
        for p in f.parameters():
            p.fill_(7.0)
    f.reset_parameters()
    assert all(not torch.all(p == 7.0) for p in f.parameters())


def test_unknown_kind():
    with pytest.raises(ValueError) as e:
        Fusion("gated", 4)
    assert "mean, gate, mlp, concat" in str(e.value)


@pytest.mark.parametrize("kind", ["mean", "gate", "mlp", "concat"])
def test_three_modalities(kind):
    f = Fusion(kind, 5, n_modalities=3)
    xs = [torch.randn(4, 5) for _ in range(3)]
    out = f(*xs)
    assert out.shape == (4, f.out_dim) and f.out_dim == (15 if kind == "concat" else 5)
    if kind == "mean":
        torch.testing.assert_close(out, (xs[0] + xs[1] + xs[2]) / 3)
    if kind == "gate":  # softmax weights over the modalities: a convex combination
        g = f.gate_values(*xs)
        torch.testing.assert_close(g.sum(-2), torch.ones(4, 5))
        torch.testing.assert_close(out, g[:, 0] * xs[0] + g[:, 1] * xs[1] + g[:, 2] * xs[2])
    if kind == "concat":
        qs = [torch.randn(4, 5) for _ in range(3)]
        torch.testing.assert_close((out * f(*qs)).sum(-1), sum((x * q).sum(-1) for x, q in zip(xs, qs)))
