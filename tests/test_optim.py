"""Lion / LionK / Muon against independent references, step by step, and torch.optim conventions."""

import io
import math

import lion_pytorch
import pytest
import torch

from lionlib import Lion, LionK, Muon, kappa
from lionlib.optim import lionk_step

SHAPES = [(7, 5), (13,), (1,), (3, 2, 4)]
STEPS = 25


def reference_lionk(x, m, g, *, grad_k, lr, b1, b2, wd, implicit):
    """PAPER.md eq. (2) in the paper's own convention (m = EMA of -grad), float64, no shared code."""
    m_tilde = b1 * m - (1 - b1) * g
    if implicit:
        x_new = (x + lr * grad_k(m_tilde)) / (1 + lr * wd)
    else:
        x_new = x + lr * (grad_k(m_tilde) - wd * x)
    return x_new, b2 * m - (1 - b2) * g


def make_params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dtype) for s in SHAPES]


def grad_sequence(steps=STEPS, seed=1, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [[scale * torch.randn(s, generator=gen) for s in SHAPES] for _ in range(steps)]


def run(opt_factory, params, grads):
    params = [p.clone().requires_grad_() for p in params]
    opt = opt_factory(params)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.to(p.dtype).clone()
        opt.step()
    return [p.detach() for p in params], opt


def two_groups(ps):
    """Two param groups with their own lr and weight decay (the defaults fill the rest)."""
    return [dict(params=ps[:2]), dict(params=ps[2:], lr=1e-2, weight_decay=1.0)]


@pytest.mark.parametrize("wd", [0.0, 0.3])
@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.95, 0.98)])
@pytest.mark.parametrize("grouped", [False, True])
def test_lion_equals_lion_pytorch_and_lionk_l1_bit_exactly(wd, betas, grouped):
    params, grads = make_params(), grad_sequence()
    hyper = dict(lr=3e-3, betas=betas, weight_decay=wd)
    split = two_groups if grouped else (lambda ps: ps)
    ref, _ = run(lambda ps: lion_pytorch.Lion(split(ps), **hyper), params, grads)
    for factory in (
        lambda ps: Lion(split(ps), **hyper, foreach=False),
        lambda ps: Lion(split(ps), **hyper, foreach=True),
        lambda ps: LionK(split(ps), "l1", **hyper),
    ):
        out, _ = run(factory, params, grads)
        for a, b in zip(out, ref):
            assert torch.equal(a, b)
    # And the independent float64 reference of eq. (2), in the paper's sign convention.
    xs, ms = [p.double() for p in params], [torch.zeros_like(p, dtype=torch.float64) for p in params]
    lrs = [3e-3] * 4 if not grouped else [3e-3, 3e-3, 1e-2, 1e-2]
    wds = [wd] * 4 if not grouped else [wd, wd, 1.0, 1.0]
    for gs in grads:
        for i, g in enumerate(gs):
            xs[i], ms[i] = reference_lionk(xs[i], ms[i], g.double(), grad_k=torch.sign, lr=lrs[i], b1=betas[0],
                                           b2=betas[1], wd=wds[i], implicit=False)
    for a, b in zip(ref, xs):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("name", ["l1", "lp", "l2", "logcosh", "huber", "relativistic", "relativistic_norm",
                                  "l1_plus_sq_l2", "half_sq_l2", "linf", "logsumexp"])
@pytest.mark.parametrize("foreach", [False, True], ids=["forloop", "foreach"])
def test_lionk_matches_paper_reference(name, implicit, foreach):
    """float64 LionK against eq. (2) written in the paper's convention (m negated), on the
    for-loop path directly as well as on foreach (float64 is never fused)."""
    K = kappa.get(name, **({"p": 1.5} if name == "lp" else {}))
    lr, b1, b2, wd = 1e-2, 0.9, 0.99, 0.7
    params, grads = make_params(torch.float64), grad_sequence()
    out, _ = run(lambda ps: LionK(ps, K, lr=lr, betas=(b1, b2), weight_decay=wd, implicit_decay=implicit,
                                  foreach=foreach), params, grads)
    xs, ms = [p.clone() for p in params], [torch.zeros_like(p) for p in params]
    for gs in grads:
        for i, g in enumerate(gs):
            xs[i], ms[i] = reference_lionk(xs[i], ms[i], g.double(), grad_k=K.grad, lr=lr, b1=b1, b2=b2, wd=wd, implicit=implicit)
    for a, b in zip(out, xs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["l1", "lp", "logcosh", "logsumexp", "nuclear"])
@pytest.mark.parametrize("dtype,momentum_dtype", [(torch.float32, None), (torch.bfloat16, None),
                                                  (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])
@pytest.mark.parametrize("implicit", [False, True])
def test_foreach_equals_forloop(name, dtype, momentum_dtype, implicit):
    K = kappa.get(name, **({"p": 1.25} if name == "lp" else {}))
    shapes_ok = name != "nuclear"
    params = make_params(dtype) if shapes_ok else [torch.randn(6, 4).to(dtype), torch.randn(3, 5).to(dtype)]
    grads = grad_sequence(10) if shapes_ok else [[torch.randn(6, 4), torch.randn(3, 5)] for _ in range(10)]
    hyper = dict(lr=1e-2, weight_decay=0.5, implicit_decay=implicit, momentum_dtype=momentum_dtype)
    a, opt_a = run(lambda ps: LionK(ps, K, **hyper, foreach=False), params, grads)
    b, opt_b = run(lambda ps: LionK(ps, K, **hyper, foreach=True), params, grads)
    for x, y in zip(a, b):
        assert x.dtype == dtype and torch.equal(x, y)
    for p in opt_a.state:
        assert opt_a.state[p]["exp_avg"].dtype == (momentum_dtype or dtype)


def test_low_precision_params_are_updated_in_fp32():
    """A bf16 step equals the fp32 step rounded once (not a chain of bf16 roundings)."""
    # bf16-representable starts and gradients: the only rounding left is the final one.
    start = [p.bfloat16().float() for p in make_params()]
    grads = [[g.bfloat16().float() for g in gs] for gs in grad_sequence(1)]
    low, _ = run(lambda ps: LionK(ps, "logcosh", lr=1e-2, weight_decay=0.1), [p.bfloat16() for p in start], grads)
    exact, _ = run(lambda ps: LionK(ps, "logcosh", lr=1e-2, weight_decay=0.1), start, grads)
    for a, b in zip(low, exact):
        assert torch.equal(a, b.bfloat16())


def test_param_groups_with_different_k_and_hyperparameters():
    params = make_params(torch.float64)
    grads = grad_sequence()
    groups = lambda ps: [
        dict(params=ps[:2], kappa="l1", lr=1e-2, weight_decay=0.5),
        dict(params=ps[2:3], kappa=kappa.get("lp", p=1.5), betas=(0.8, 0.95)),
        dict(params=ps[3:], kappa="logcosh", implicit_decay=True, weight_decay=1.0),
    ]
    out, opt = run(lambda ps: LionK(groups(ps), lr=3e-3), params, grads)
    assert [g["kappa"].name for g in opt.param_groups] == ["l1", "lp", "logcosh"]
    # Each group equals a single-group optimizer with the same settings.
    for gi, sl in enumerate([slice(0, 2), slice(2, 3), slice(3, 4)]):
        settings = {k: v for k, v in opt.param_groups[gi].items() if k != "params"}
        alone, _ = run(lambda ps: LionK(ps, **settings), params[sl], [gs[sl] for gs in grads])
        for a, b in zip(out[sl], alone):
            assert torch.equal(a, b)


@pytest.mark.parametrize("momentum_dtype,dtype", [(None, torch.float32), (torch.float32, torch.bfloat16)])
def test_state_dict_round_trip_continues_bit_exactly(momentum_dtype, dtype):
    params, grads = make_params(dtype), grad_sequence(20)
    factory = lambda ps: LionK([dict(params=ps[:2]), dict(params=ps[2:], kappa=kappa.get("lp", p=1.5))],
                               lr=1e-2, weight_decay=0.2, momentum_dtype=momentum_dtype)
    straight, _ = run(factory, params, grads)

    half, opt = run(factory, params, grads[:10])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain data only: kappa is stored as a spec
    resumed = [p.clone().requires_grad_() for p in half]
    opt2 = factory(resumed)
    opt2.load_state_dict(saved)
    assert all(opt2.state[p]["exp_avg"].dtype == (momentum_dtype or dtype) for p in resumed)
    assert opt2.param_groups[1]["kappa"] == kappa.get("lp", p=1.5)
    for gs in grads[10:]:
        for p, g in zip(resumed, gs):
            p.grad = g.to(dtype)
        opt2.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b.detach())


def test_closure_maximize_and_grad_untouched():
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    target = torch.randn(5)
    opt = Lion([w], lr=1e-2, maximize=True)

    def closure():
        opt.zero_grad()
        loss = -((w - target) ** 2).sum()  # maximize -|w - t|^2 == minimize |w - t|^2
        loss.backward()
        return loss

    first = float(closure().detach())
    for _ in range(300):
        loss = opt.step(closure)
        assert loss is not None and loss.requires_grad  # the closure's own loss is returned
    assert float(closure().detach()) > first and float((w.detach() - target).abs().max()) < 0.1

    # maximize with g equals minimize with -g, and p.grad is never written.
    params, grads = make_params(), grad_sequence(5)
    up, _ = run(lambda ps: LionK(ps, "logcosh", lr=1e-2, maximize=True), params, grads)
    down, _ = run(lambda ps: LionK(ps, "logcosh", lr=1e-2), params, [[-g for g in gs] for gs in grads])
    assert all(torch.equal(a, b) for a, b in zip(up, down))
    p = torch.randn(4, requires_grad=True)
    p.grad = torch.randn(4)
    snapshot = p.grad.clone()
    for foreach in (False, True):
        LionK([p], "l1", lr=0.1, weight_decay=0.1, maximize=True, foreach=foreach).step()
        assert torch.equal(p.grad, snapshot)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lr=-1.0), "lr=-1.0"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(betas=(1.5, 0.99)), "beta1: 1.5"),
        (dict(betas=(0.9, -0.1)), "beta2: -0.1"),
        (dict(betas=(0.9,)), "betas"),
        (dict(weight_decay=-0.1), "weight_decay: -0.1"),
        (dict(kappa="l7"), "unknown kappa 'l7'"),
        (dict(momentum_dtype=torch.int32), "momentum_dtype"),
        (dict(fused=True, foreach=True), "fused=True and foreach=True"),
    ],
)
def test_validation_names_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LionK([torch.zeros(3, requires_grad=True)], **kwargs)


def test_bad_param_group_is_rejected_and_optimizer_unchanged():
    opt = Lion([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="weight_decay: -1"):
        opt.add_param_group(dict(params=[torch.zeros(2, requires_grad=True)], weight_decay=-1))
    assert len(opt.param_groups) == 1
    with pytest.raises(RuntimeError, match="does not support complex"):  # torch.optim's type and wording
        Lion([torch.zeros(3, dtype=torch.complex64, requires_grad=True)])
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        Lion([torch.zeros(3, requires_grad=True)], lr=torch.tensor([1e-3, 1e-3]))
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="momentum: 1.5"):
        Muon([torch.zeros(3, 3, requires_grad=True)], momentum=1.5)


def test_sparse_gradient_rejected_before_anything_changes():
    a = torch.randn(4, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    a.grad = torch.randn(4)
    b.grad = torch.randn(4).to_sparse()
    before = a.detach().clone()
    opt = LionK([dict(params=[a]), dict(params=[b])], "l1", lr=0.1)
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert torch.equal(a.detach(), before) and len(opt.state) == 0


@pytest.mark.parametrize("foreach", [False, True])
def test_nan_and_inf_gradients(foreach):
    """Documented behaviour (torch.sign(NaN) = 0): a NaN gradient gives no step but a NaN momentum,
    which freezes that coordinate afterwards; inf gives an lr-sized step; a K whose grad maps NaN
    to NaN (tanh) writes NaN into the parameter."""
    nan, inf = float("nan"), float("inf")
    p = torch.zeros(4, requires_grad=True)
    p.grad = torch.tensor([nan, inf, -inf, 0.0])
    opt = Lion([p], lr=0.1, foreach=foreach)
    opt.step()
    x, m = p.detach(), opt.state[p]["exp_avg"]
    assert x.tolist() == pytest.approx([0.0, -0.1, 0.1, 0.0])
    assert math.isnan(m[0]) and m[1] == inf and m[2] == -inf and m[3] == 0.0
    p.grad = torch.ones(4)
    opt.step()
    assert x[0] == 0.0, "a NaN momentum freezes the coordinate"
    q = torch.zeros(2, requires_grad=True)
    q.grad = torch.tensor([nan, 1.0])
    LionK([q], "logcosh", lr=0.1, foreach=foreach).step()
    assert math.isnan(q.detach()[0]) and not math.isnan(q.detach()[1])


def test_muon_is_lionk_with_nuclear_norm():
    """Muon (B <- mu B + g, Nesterov input g + mu B, exact msign) equals Muon(exact_svd=True)."""
    torch.manual_seed(0)
    mu, lr, wd = 0.95, 0.02, 0.5
    w0 = torch.randn(6, 4, dtype=torch.float64)
    grads = [torch.randn(6, 4, dtype=torch.float64) for _ in range(15)]

    def msign(x):
        u, _, vh = torch.linalg.svd(x, full_matrices=False)
        return u @ vh

    w, buf = w0.clone(), torch.zeros_like(w0)
    for g in grads:
        buf = mu * buf + g
        w = w * (1 - lr * wd) - lr * msign(g + mu * buf)
    p = w0.clone().requires_grad_()
    opt = Muon([p], lr=lr, momentum=mu, weight_decay=wd, exact_svd=True)
    for g in grads:
        p.grad = g
        opt.step()
    torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-10)


def test_polyak_nesterov_parameterisation_maps_to_eq2():
    """PAPER.md 2.4: the (beta_polyak, beta_nesterov) form equals eq. (2) with b1 = bn*bp, b2 = bp."""
    bp, bn, lr, wd = 0.95, 0.9, 1e-2, 0.3
    K = kappa.get("logcosh")
    x0 = torch.randn(10, dtype=torch.float64)
    grads = [torch.randn(10, dtype=torch.float64) for _ in range(20)]
    x, M = x0.clone(), torch.zeros(10, dtype=torch.float64)
    for g in grads:
        M = bp * M - (1 - bp) * g
        x = x + lr * (K.grad(bn * M - (1 - bn) * g) - wd * x)
    p = x0.clone().requires_grad_()
    opt = LionK([p], K, lr=lr, betas=(bn * bp, bp), weight_decay=wd)
    for g in grads:
        p.grad = g
        opt.step()
    torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-12)


def test_functional_step_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'cuda-magic'"):
        lionk_step([], [], [], backend="cuda-magic")


@pytest.mark.parametrize("foreach", [None, False], ids=["default", "forloop"])
def test_grad_scaler_unscales_and_skips_non_finite_steps(foreach):
    """AMP's GradScaler drives Lion like any torch optimizer: it unscales the gradients first (a
    power-of-two scale, so the step equals the unscaled one exactly), and skips the step whole,
    momentum included, when a gradient is not finite."""
    torch.manual_seed(0)
    model, ref = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    ref.load_state_dict(model.state_dict())
    opt = Lion(model.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    ref_opt = Lion(ref.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    x = torch.randn(4, 6)
    for _ in range(2):
        scaler.scale(model(x).square().mean()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        ref(x).square().mean().backward()
        ref_opt.step()
        ref_opt.zero_grad()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # sign() alone would not see a scale
        torch.testing.assert_close(opt.state[a]["exp_avg"], ref_opt.state[b]["exp_avg"], rtol=0, atol=0)
    before = [p.clone() for p in model.parameters()]
    momentum = [opt.state[p]["exp_avg"].clone() for p in model.parameters()]
    scaler.scale(model(x * float("inf")).square().mean()).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**11  # backed off
    for p, p0, m0 in zip(model.parameters(), before, momentum):
        assert torch.equal(p, p0) and torch.equal(opt.state[p]["exp_avg"], m0)
