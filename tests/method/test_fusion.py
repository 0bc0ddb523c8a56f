"""Fusion shapes, the gate range, and config errors."""
import pytest
import torch

from mmrec_plugin.errors import ConfigError
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
    with pytest.raises(ConfigError) as e:
        Fusion("gated", 4)
    msg = str(e.value)
    assert "fusion" in msg and "mean, gate, mlp, concat" in msg and "gate" in msg
