"""The cautious options against a plain implementation, step by step.

`cautious=True` is C-Lion (Liang et al., "Cautious Optimizers"): the direction u = grad K(c) is
kept only where it agrees in sign with the gradient, and the kept entries are rescaled by
numel / (number kept). `cautious_weight_decay=True` decays only where u and the parameter agree
in sign. The plain implementation below is written from those two sentences, in float64, with
no code shared with lionlib; a deliberately broken mask must make the comparison fail.
"""

import pytest
import torch

from lionlib import Lion, LionK, fused, kappa

K_CASES = [("l1", {}), ("huber", {"delta": 0.3}), ("l2", {})]


def plain_step(x, m, g, *, K, lr, beta1, beta2, wd, implicit, maximize, cautious, cwd, broken=False):
    """One step of cautious Lion-K on float64 tensors (returns new x, m)."""
    g = -g if maximize else g
    c = beta1 * m + (1 - beta1) * g
    u = K.grad(c)
    if cautious:
        agree = (u * g > 0) if not broken else (u * g < 0)
        kept = int(agree.sum())
        u = torch.where(agree, u, torch.zeros_like(u)) * (u.numel() / max(kept, 1))
    decay = torch.ones_like(x) * (lr * wd)
    if cwd:
        decay = torch.where(u * x > 0, decay, torch.zeros_like(decay))
    if implicit:
        x = (x - lr * u) / (1 + decay)
    else:
        x = x - decay * x - lr * u
    return x, beta2 * m + (1 - beta2) * g


def compare(name, kw, *, foreach, wd, implicit, maximize, cautious, cwd, broken=False, steps=6):
    K = kappa.get(name, **kw)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(7, 5, generator=gen, dtype=torch.float64) for _ in range(steps)]
    p = torch.nn.Parameter(x0.clone())
    opt = LionK([p], K, lr=0.05, betas=(0.9, 0.99), weight_decay=wd, implicit_decay=implicit, maximize=maximize,
                foreach=foreach, cautious=cautious, cautious_weight_decay=cwd)
    x, m = x0.clone(), torch.zeros_like(x0)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        x, m = plain_step(x, m, g, K=K, lr=0.05, beta1=0.9, beta2=0.99, wd=wd, implicit=implicit, maximize=maximize,
                          cautious=cautious, cwd=cwd, broken=broken)
        torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["exp_avg"], m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,kw", K_CASES, ids=[k for k, _ in K_CASES])
@pytest.mark.parametrize("foreach", [False, True], ids=["forloop", "foreach"])
@pytest.mark.parametrize("cautious,cwd", [(True, False), (False, True), (True, True)], ids=["cautious", "cwd", "both"])
@pytest.mark.parametrize("implicit,maximize", [(False, False), (True, True)], ids=["explicit", "implicit-max"])
def test_matches_the_plain_implementation_step_by_step(name, kw, foreach, cautious, cwd, implicit, maximize):
    compare(name, kw, foreach=foreach, wd=0.5, implicit=implicit, maximize=maximize, cautious=cautious, cwd=cwd)


@pytest.mark.parametrize("cautious,cwd", [(True, False), (False, True)], ids=["cautious", "cwd"])
def test_a_broken_mask_fails_the_comparison(cautious, cwd, monkeypatch):
    """The comparison can fail: against a plain step with the mask inverted (cautious), or with
    lionlib's decay mask inverted (cautious weight decay), it does."""
    if cautious:
        with pytest.raises(AssertionError):
            compare("l1", {}, foreach=False, wd=0.5, implicit=False, maximize=False, cautious=True, cwd=False, broken=True)
        return
    from lionlib.fused import eager

    original = eager.cautious_update

    def inverted(p, u, g, lr, wd, implicit, c, cwd_flag):  # decays where u and p disagree instead
        keep = (u * p) <= 0
        p.mul_(torch.where(keep, 1 - lr * wd, 1.0))
        p.add_(u, alpha=-lr)

    monkeypatch.setattr(eager, "cautious_update", inverted)
    with pytest.raises(AssertionError):
        compare("l1", {}, foreach=False, wd=0.5, implicit=False, maximize=False, cautious=False, cwd=True)
    monkeypatch.setattr(eager, "cautious_update", original)


def test_cautious_equals_lion_when_every_coordinate_agrees():
    """With a constant gradient from zero momentum, sign(c) = sign(g) everywhere: nothing is
    masked and the rescale is 1, so C-Lion is Lion."""
    runs = []
    for cautious in (False, True):
        p = torch.nn.Parameter(torch.randn(10, generator=torch.Generator().manual_seed(3)))
        opt = Lion([p], lr=0.1, foreach=False, cautious=cautious)
        g = torch.randn(10, generator=torch.Generator().manual_seed(4))
        for _ in range(3):
            p.grad = g.clone()
            opt.step()
        runs.append(p.detach().clone())
    assert torch.equal(runs[0], runs[1])


def test_cautious_weight_decay_leaves_coordinates_the_step_moves_away_from_zero():
    p = torch.nn.Parameter(torch.tensor([2.0, -2.0, 2.0, -2.0]))
    opt = Lion([p], lr=0.1, weight_decay=1.0, foreach=False, cautious_weight_decay=True)
    p.grad = torch.tensor([1.0, -1.0, -1.0, 1.0])  # u = sign(g): agrees with p on entries 0, 1
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 * 0.9 - 0.1, -2.0 * 0.9 + 0.1, 2.1, -2.1]))


@pytest.mark.skipif(not fused.cpp_available(), reason="the C++ kernel does not build here")
def test_kernels_refuse_with_the_reason_and_the_default_falls_back_to_foreach():
    import lionlib.optim as optim

    K = kappa.get("l1")
    w = torch.zeros(4)
    for flag in ("cautious", "cautious_weight_decay"):
        reason = fused.supports("cpp", K, w, **{flag: True})
        assert reason and flag in reason, reason
        assert optim._resolve_backend([w], K, None, None, **{flag: True}) == "foreach"
        with pytest.raises(RuntimeError, match=flag):
            Lion([torch.zeros(4, requires_grad=True)], fused=True, **{flag: True})
    assert fused.supports("cpp", K, w) is None
    # the functional step asked for a kernel with a cautious option takes foreach: the same result
    runs = []
    for backend in ("cpp", "foreach"):
        ps, gs, ms = [torch.randn(6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
        optim.lionk([ps], [gs], [ms], kappa=K, lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.1, backend=backend,
                    cautious=True, cautious_weight_decay=True)
        runs.append(ps)
    assert torch.equal(*runs)


def test_options_are_saved_and_validated():
    p = torch.nn.Parameter(torch.randn(3))
    opt = Lion([p], cautious=True, cautious_weight_decay=True)
    groups = opt.state_dict()["param_groups"]
    assert groups[0]["cautious"] is True and groups[0]["cautious_weight_decay"] is True
    with pytest.raises(ValueError, match="Invalid cautious"):
        Lion([torch.nn.Parameter(torch.randn(3))], cautious="yes")
