"""14_cautious's pieces: the runs of lionlib.theory.cautious and findings decided against a SESOI."""

import pytest
import torch

from lionlib.companion import cautious_checks as cc
from lionlib.companion.report import Report
from lionlib.theory import cautious
from lionlib.theory.dynamics import Quadratic

QUAD = Quadratic.isotropic((2.0, -3.0))


def test_plain_lion_directions_are_signs_and_cwd_ends_near_c():
    run = cautious.run_lion(QUAD.grad, (-3.0, 4.0), 600, lr=0.01, betas=(0.9, 0.99), lam=1.0)
    u = cautious.applied_direction(run, 0.01, 1.0)
    assert torch.allclose(u.abs(), torch.ones_like(u), atol=1e-9)  # Lion's step is lr sign(.)
    cwd = cautious.run_lion(QUAD.grad, (0.2, 0.3), 1500, lr=0.01, betas=(0.9, 0.99), lam=1.0, cautious_weight_decay=True)
    assert float(cautious.box_distance(cwd.x[-1:], 1.0)) > 1.5  # near c = (2, -3), far outside the box
    assert float((cwd.x[-1] - QUAD.c).abs().max()) < 0.1


def test_distances():
    x = torch.tensor([[0.5, -2.0], [0.1, 0.2]], dtype=torch.float64)
    assert cautious.box_distance(x, 1.0).tolist() == [1.0, 0.0]
    assert cautious.box_distance(x, 1.0, radius=2).tolist() == [0.0, 0.0]
    X = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))[None]
    assert cautious.spectral_distance(X, 0.5).tolist() == pytest.approx([0.5])


@pytest.mark.parametrize("effects, sesoi, test, verdict", [
    ([1.0, 1.01, 0.99, 1.005, 0.995], 0.1, "superiority", "reproduced"),
    ([1.0, 1.1, 0.9, 1.05, 0.95], 0.1, "superiority", "not testable at this scale"),  # MDE > SESOI
    ([0.01, 0.011, 0.009, 0.0105, 0.0095], 0.1, "superiority", "not reproduced"),  # real but below the SESOI
    ([-0.01, -0.011, -0.009, -0.0105, -0.0095], 0.1, "non-inferiority", "reproduced"),
    ([-0.5, -0.51, -0.49, -0.505, -0.495], 0.1, "non-inferiority", "not reproduced"),
    ([1.0, 1.1], 0.1, "superiority", "inconclusive"),  # fewer than 5 seeds
])
def test_findings_are_decided_against_the_sesoi(tmp_path, effects, sesoi, test, verdict):
    report = Report("test", out_dir=tmp_path)
    p = cc.protocol("h", "m", range(len(effects)), "companion", "")
    assert cc.finding(report, "Figure 1", "claim", effects, p, sesoi, test) == verdict


def test_finding_refuses_a_bad_sesoi(tmp_path):
    report = Report("test", out_dir=tmp_path)
    with pytest.raises(ValueError, match="sesoi"):
        report.finding("Figure 1", "c", [1.0] * 5, protocol=cc.protocol("h", "m", range(5), "companion", ""), sesoi=0.0)
