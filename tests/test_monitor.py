"""ConstraintMonitor on a small network: the phase-1 bound holds and every tensor enters its set."""

import math

import pytest
import torch

from lionlib import Lion, LionK, kappa
from lionlib.monitor import ConstraintMonitor


def train(opt_factory, steps=200, seed=0, blow_up=20.0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        net[0].weight.mul_(blow_up)  # start far outside the box
    opt = opt_factory(net.parameters())
    monitor = ConstraintMonitor(opt, net.named_parameters())
    x, y = torch.randn(64, 10), torch.randn(64, 3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        monitor.record()
    return monitor


@pytest.mark.parametrize("implicit", [False, True])
def test_lion_tensors_obey_phase1_bound_and_enter_the_box(implicit):
    # lr * lambda = 0.1: the excess shrinks by 0.9 per step, below 1e-6 within 200 steps.
    monitor = train(lambda ps: Lion(ps, lr=0.05, weight_decay=2.0, implicit_decay=implicit))
    df = monitor.frame()
    assert set(df["name"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # float32 parameters: rounding at the fixed point is amplified by 1/(lr lambda) = 10.
    assert (df["constraint"] <= df["bound"] + 1e-5).all()
    first = df[df["name"] == "0.weight"].iloc[0]
    assert first["constraint"] > 5, "the test must start outside the box"
    summary = monitor.summary()
    assert summary["inside"].all(), summary
    # The bound is tight to the contraction factor: (1 - lr lambda)^t, not just "eventually".
    steps = df[df["name"] == "0.weight"]
    factor = (1 / (1 + 0.1)) if implicit else (1 - 0.1)
    expected = 1 + factor ** steps["step"].iloc[9] * (monitor._start[0] - 1)
    assert steps["bound"].iloc[9] == pytest.approx(expected)


def test_lp_uses_the_dual_norm_and_kkt_score_is_finite():
    K = kappa.get("lp", p=1.5)
    monitor = train(lambda ps: LionK(ps, K, lr=0.05, weight_decay=2.0))
    last = monitor.summary()
    p0 = monitor.optimizer.param_groups[0]["params"][0].detach().double()
    row = last[last["name"] == "0.weight"].iloc[0]
    assert row["constraint"] == pytest.approx(2.0 * float(torch.linalg.vector_norm(p0, ord=3.0)))
    assert last["inside"].all() and math.isfinite(row["kkt"]) and 0 <= row["kkt_rel"] <= 2


def test_other_optimizers_get_the_box_geometry_without_bound():
    monitor = train(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1), steps=5)
    df = monitor.frame()
    assert df["bound"].isna().all() and df["constraint"].notna().all()


def test_every_and_validation():
    opt = Lion([torch.nn.Parameter(torch.ones(3))], weight_decay=1.0)
    with pytest.raises(ValueError, match="every must be >= 1, got 0"):
        ConstraintMonitor(opt, every=0)
    monitor = ConstraintMonitor(opt, every=3)
    for _ in range(7):
        monitor.record()
    assert monitor.frame()["step"].tolist() == [1, 3, 6]


def test_state_dict_resumes_the_bound_and_history():
    def make():
        torch.manual_seed(0)
        p = torch.nn.Parameter(5 * torch.ones(4))
        return p, Lion([p], lr=0.05, weight_decay=2.0)

    def steps(p, opt, mon, n):
        for _ in range(n):
            p.grad = torch.randn(4)
            opt.step()
            mon.record()

    p, opt = make()
    straight = ConstraintMonitor(opt)
    torch.manual_seed(1)
    steps(p, opt, straight, 10)

    p, opt = make()
    first = ConstraintMonitor(opt)
    torch.manual_seed(1)
    steps(p, opt, first, 4)
    resumed = ConstraintMonitor(opt)  # built from the current (mid-run) weights
    resumed.load_state_dict(first.state_dict())
    steps(p, opt, resumed, 6)
    assert resumed.frame().equals(straight.frame())
    with pytest.raises(ValueError, match="1 tensors, this optimizer 0"):
        ConstraintMonitor(Lion([torch.nn.Parameter(torch.ones(2))])).load_state_dict(first.state_dict())


def test_describe_names_each_groups_constraint():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = LionK([dict(params=[a], weight_decay=0.5, name="box"), dict(params=[b], kappa=kappa.get("lp", p=1.5))],
                weight_decay=0.0)
    lines = ConstraintMonitor(opt).describe().splitlines()
    assert lines[0].startswith("box: K = l1") and "1/lambda = 2" in lines[0], lines
    assert lines[1].startswith("group 1: K = lp") and "no decay, no constraint" in lines[1], lines
    adamw = ConstraintMonitor(torch.optim.AdamW([a], weight_decay=0.1)).describe()
    assert "K = l1" in adamw and "1/lambda = 10" in adamw  # the default geometry, as the rows use
