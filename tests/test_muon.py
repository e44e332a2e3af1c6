"""lionlib.Muon against torch.optim.Muon and plain references; N-D weights; muon_groups; the radius
s/lambda of shape-scaled Muon; cautious Muon."""

import pytest
import torch
import torch.nn.functional as F

from lionlib import LionK, Muon, kappa, muon_groups
from lionlib.kappa.matrix import shape_scale
from lionlib.monitor import ConstraintMonitor
from lionlib.muon import radius

SHAPES = [(16, 16), (32, 16), (16, 32)]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def msign(x):
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    return u @ vh


def run_pair(shape, make_ours, make_torch, steps=20):
    torch.manual_seed(0)
    w0 = torch.randn(*shape)
    grads = [torch.randn(*shape) for _ in range(steps)]
    a, b = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    ours, theirs = make_ours([a]), make_torch([b])
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert rel(b.detach(), w0) > 0.03  # both moved
    return rel(a.detach(), b.detach())


# ----------------------------------------------------------------------------------------------
# 1. torch.optim.Muon parity


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("adjust", [None, "original", "match_rms_adamw"])
def test_follows_torch_muon_step_for_step(shape, adjust):
    """torch's settings (Nesterov, bf16 Newton-Schulz, its adjust_lr_fn; torch's None is
    "original"): within bf16 rounding after 20 steps (measured ~6e-7: the same fused bf16 ops)."""
    err = run_pair(shape, lambda ps: Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, adjust_lr_fn=adjust or "original",
                                          ns_dtype=torch.bfloat16),
                   lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, adjust_lr_fn=adjust))
    assert err <= 3e-3, err


def test_parity_check_can_fail():
    """Without the shape factor (lionlib's default None: s = 1) a 32x16 matrix leaves the tolerance,
    and so does Muon without Nesterov."""
    err = run_pair((32, 16), lambda ps: Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, ns_dtype=torch.bfloat16),
                   lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1))
    assert err > 3e-3, err
    err = run_pair((16, 16), lambda ps: Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, nesterov=False,
                                             ns_dtype=torch.bfloat16),
                   lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1))
    assert err > 3e-3, err


def test_a_torch_muon_checkpoint_resumes_in_lionlib():
    """torch.optim.Muon's momentum_buffer is exp_avg and its None is "original": 10 steps in torch,
    then 10 more in each, within bf16 rounding (and more than that apart if the buffer were dropped)."""
    torch.manual_seed(5)
    w0 = torch.randn(32, 16)
    grads = [torch.randn(32, 16) for _ in range(20)]
    a = w0.clone().requires_grad_()
    theirs = torch.optim.Muon([a], lr=0.02, weight_decay=0.1)
    for g in grads[:10]:
        a.grad = g.clone()
        theirs.step()
    b = a.detach().clone().requires_grad_()
    ours = Muon([b], lr=0.5, weight_decay=0.0, ns_dtype=torch.bfloat16)  # lr, decay, scale: from the checkpoint
    ours.load_state_dict(theirs.state_dict())
    assert ours.param_groups[0]["adjust_lr_fn"] == "original" and ours.param_groups[0]["lr"] == 0.02
    fresh = Muon([b.detach().clone().requires_grad_()], lr=0.02, weight_decay=0.1, adjust_lr_fn="original",
                 ns_dtype=torch.bfloat16)
    for g in grads[10:]:
        a.grad, b.grad, fresh.param_groups[0]["params"][0].grad = g.clone(), g.clone(), g.clone()
        theirs.step()
        ours.step()
        fresh.step()
    assert rel(b.detach(), a.detach()) <= 3e-3
    assert rel(fresh.param_groups[0]["params"][0].detach(), a.detach()) > 3e-3


@pytest.mark.parametrize("nesterov", [True, False])
def test_nesterov_is_lionk_with_mu_squared(nesterov):
    """torch's EMA form, exact msign, float64: B <- lerp(B, g, 1 - mu), u = lerp(g, B, mu) or B,
    equals Lion-K (nuclear, exact) with betas (mu^2, mu) with Nesterov and (mu, mu) without."""
    torch.manual_seed(1)
    mu, lr, wd = 0.9, 0.03, 0.4
    w0 = torch.randn(6, 4, dtype=torch.float64)
    grads = [torch.randn(6, 4, dtype=torch.float64) for _ in range(15)]
    w, buf = w0.clone(), torch.zeros_like(w0)
    for g in grads:
        buf = buf + (1 - mu) * (g - buf)
        u = g + mu * (buf - g) if nesterov else buf
        w = w * (1 - lr * wd) - lr * msign(u)
    p, q = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    muon = Muon([p], lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov, exact_svd=True)
    lionk = LionK([q], kappa.get("nuclear"), lr=lr, betas=(mu * mu if nesterov else mu, mu), weight_decay=wd, foreach=False)
    for g in grads:
        p.grad, q.grad = g.clone(), g.clone()
        muon.step()
        lionk.step()
    torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(q.detach(), w, rtol=1e-10, atol=1e-10)
    assert muon.param_groups[0]["betas"] == ((mu * mu, mu) if nesterov else (mu, mu))


def test_grad_untouched_settings_validated_and_state_dict_round_trips(tmp_path):
    p = torch.randn(8, 4, requires_grad=True)
    p.grad = torch.randn(8, 4)
    g = p.grad.clone()
    opt = Muon([p], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.bfloat16, maximize=True)
    opt.step()
    assert torch.equal(p.grad, g)
    torch.save(opt.state_dict(), tmp_path / "m.pt")
    q = p.detach().clone().requires_grad_()
    again = Muon([q], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.bfloat16, maximize=True)
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    p.grad = q.grad = torch.randn(8, 4)
    opt.step()
    again.step()
    assert torch.equal(p.detach(), q.detach())
    for bad, match in [(dict(adjust_lr_fn="sqrt"), "adjust_lr_fn"), (dict(ns_steps=0), "ns_steps"),
                       (dict(ns_coefficients=(1.0, 2.0)), "ns_coefficients"), (dict(eps=0.0), "eps"),
                       (dict(ns_dtype=torch.int8), "ns_dtype"), (dict(nesterov=1), "nesterov"),
                       (dict(momentum=1.5), "momentum: 1.5"), (dict(fused=True), "one path")]:
        with pytest.raises(ValueError, match=match):
            Muon([torch.zeros(3, 3, requires_grad=True)], **bad)
    with pytest.raises(ValueError, match="derives 'kappa' and 'betas'"):
        Muon([dict(params=[torch.zeros(3, 3, requires_grad=True)], betas=(0.9, 0.9))])
    opt.param_groups[0]["momentum"] = 2.0  # a bad value set between steps fails before anything changes
    before = p.detach().clone()
    with pytest.raises(ValueError, match="momentum"):
        opt.step()
    assert torch.equal(p.detach(), before)


# ----------------------------------------------------------------------------------------------
# 2. N-D weights


def test_conv_weight_is_the_out_by_rest_matrix():
    """A 4-D conv kernel steps exactly as its (out, in*kh*kw) matrix; the monitor reports
    lambda * sigma_max of that matrix."""
    torch.manual_seed(2)
    w0 = torch.randn(8, 3, 3, 3, dtype=torch.float64)
    grads = [torch.randn(8, 3, 3, 3, dtype=torch.float64) for _ in range(5)]
    conv, flat = w0.clone().requires_grad_(), w0.reshape(8, -1).clone().requires_grad_()
    a = Muon([conv], lr=0.05, weight_decay=0.5, adjust_lr_fn="match_rms_adamw")
    b = Muon([flat], lr=0.05, weight_decay=0.5, adjust_lr_fn="match_rms_adamw")
    lionk = LionK([w0.clone().requires_grad_()], kappa.get("nuclear", method="newton_schulz", scale="match_rms_adamw"),
                  lr=0.05, betas=(0.95**2, 0.95), weight_decay=0.5)
    monitor = ConstraintMonitor(a)
    for g in grads:
        conv.grad, flat.grad, lionk.param_groups[0]["params"][0].grad = g.clone(), g.reshape(8, -1).clone(), g.clone()
        a.step()
        b.step()
        lionk.step()
        monitor.record()
    torch.testing.assert_close(conv.detach().reshape(8, -1), flat.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lionk.param_groups[0]["params"][0].detach(), conv.detach(), rtol=1e-12, atol=1e-12)
    sigma = float(torch.linalg.matrix_norm(conv.detach().reshape(8, -1), ord=2))
    s = shape_scale((8, 27), "match_rms_adamw")
    assert monitor.frame()["constraint"].iloc[-1] == pytest.approx(0.5 * sigma / s, rel=1e-12)
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.zeros(3, requires_grad=True)])


# ----------------------------------------------------------------------------------------------
# 3. muon_groups: one LionK for a whole model


def test_muon_groups_train_a_tiny_transformer():
    from lionlib.experiments.gpt_model import GPT, GPTConfig

    torch.manual_seed(0)
    net = GPT(GPTConfig(block_size=16, vocab_size=16, n_layer=1, n_head=2, n_embd=16))
    groups = muon_groups(net, lr=0.02, weight_decay=0.1, adjust_lr_fn="original", lion_lr=3e-3, lion_weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    ids = {n: id(p) for n, p in net.named_parameters()}
    named = {g["name"]: {n for n, i in ids.items() if i in {id(p) for p in g["params"]}} for g in groups}
    assert "transformer.wte.weight" in named["embeddings and head"]  # tied to lm_head: counted once
    assert "transformer.h.0.attn.c_attn.weight" in named["matrices"]
    assert all(n.endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight")) for n in named["biases and gains"])
    assert sum(len(g["params"]) for g in groups) == len(set(ids.values()))
    opt = LionK(groups)
    assert by_name["matrices"]["kappa"].name == "nuclear" and opt.param_groups[1]["kappa"].name == "l1"
    monitor = ConstraintMonitor(opt, net.named_parameters())
    text = monitor.describe()
    assert "matrices" in text and "||X||_op <= s/lambda" in text and "embeddings and head" in text, text
    data = torch.randint(0, 16, (8, 17), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(40):
        logits, _ = net(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 16), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.record()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert monitor.summary()["constraint"].notna().all()


# ----------------------------------------------------------------------------------------------
# 4. The radius s / lambda


def radius_gap(adjust, claimed, steps=500, lr=0.05, lam=1.0, shape=(32, 8)):
    """max over the last 100 steps of |sigma_max(W) / radius(claimed) - 1| for Muon (exact msign,
    float64) with `adjust_lr_fn=adjust` on f(W) = ||W - A||^2 / 2, sigma_max(A) = 3 radius, from a
    random start at 5 radius (phase 1 first, then the bound binds: the optimum lies outside)."""
    torch.manual_seed(3)
    r = radius(shape, lam, claimed)
    A = torch.randn(*shape, dtype=torch.float64)
    A = A * 3 * r / torch.linalg.matrix_norm(A, ord=2)
    w = torch.randn(*shape, dtype=torch.float64)
    w = (w * 5 * radius(shape, lam, adjust) / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    opt = Muon([w], lr=lr, momentum=0.95, weight_decay=lam, adjust_lr_fn=adjust, exact_svd=True)
    gaps = []
    for t in range(steps):
        w.grad = w.detach() - A
        opt.step()
        if t >= steps - 100:
            gaps.append(abs(float(torch.linalg.matrix_norm(w.detach(), ord=2)) / r - 1))
    return max(gaps)


@pytest.mark.parametrize("adjust", [None, "original", "match_rms_adamw"])
def test_sigma_max_goes_to_s_over_lambda(adjust):
    """On the boundary the top singular value follows sigma <- (1 - lr lambda) sigma + lr s, whose
    fixed point is s/lambda, reached geometrically at rate 1 - lr lambda = 0.95: after 400 steps the
    gap left is 0.95^400 * 4 ~ 5e-9 (times the momentum's alignment transient), so 1e-6 is slack for
    that transient and float64 rounding, and far below the scalings' differences (s = 1, 2, 1.13)."""
    assert radius_gap(adjust, adjust) <= 1e-6


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_radius_check_fails_when_the_scaling_is_broken(adjust):
    """A step that is not scaled (adjust_lr_fn=None) does not reach the radius s/lambda claimed."""
    assert radius_gap(None, adjust) > 0.1


def test_radius_names_bad_input():
    assert radius((32, 8), 0.5, "original") == pytest.approx(4.0)
    with pytest.raises(ValueError, match="weight_decay > 0"):
        radius((4, 4), 0.0)


# ----------------------------------------------------------------------------------------------
# 6. Cautious Muon


def cautious_reference(w0, grads, *, lr, mu, wd, cautious, cwd, implicit=False):
    """Plain tensors: torch's EMA form, exact msign, then the two masks as the C-Optim and CWD papers."""
    w, buf, path = w0.clone(), torch.zeros_like(w0), []
    for g in grads:
        buf_new = mu * buf + (1 - mu) * g
        u = msign(mu * buf_new + (1 - mu) * g)
        if cautious:
            mask = (u * g > 0).double()
            u = u * mask * (mask.numel() / max(float(mask.sum()), 1.0))
        decay = (u * w >= 0).double() if cwd else torch.ones_like(w)
        if implicit:  # decay at the new iterate, where the mask (taken at the old one) allows
            w = torch.where(decay > 0, (w - lr * u) / (1 + lr * wd), w - lr * u)
        else:
            w = w - lr * (u + wd * decay * w)
        buf = buf_new
        path.append(w)
    return path


@pytest.mark.parametrize("cautious,cwd,implicit", [(True, False, False), (False, True, False), (True, True, False),
                                                   (False, True, True)])
def test_cautious_options_follow_the_reference(cautious, cwd, implicit):
    torch.manual_seed(4)
    lr, mu, wd = 0.05, 0.9, 0.8
    w0 = torch.randn(6, 5, dtype=torch.float64)
    grads = [torch.randn(6, 5, dtype=torch.float64) for _ in range(12)]
    expected = cautious_reference(w0, grads, lr=lr, mu=mu, wd=wd, cautious=cautious, cwd=cwd, implicit=implicit)
    plain = cautious_reference(w0, grads, lr=lr, mu=mu, wd=wd, cautious=False, cwd=False, implicit=implicit)
    assert rel(expected[-1], plain[-1]) > 1e-2  # the options change the path: the comparison can fail
    p = w0.clone().requires_grad_()
    opt = Muon([p], lr=lr, momentum=mu, weight_decay=wd, exact_svd=True, cautious=cautious, cautious_weight_decay=cwd,
               implicit_decay=implicit)
    for g, w in zip(grads, expected):
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-10)


def test_cautious_mask_that_keeps_nothing_takes_no_step():
    """Momentum along +I, gradient along -I: u g < 0 on the diagonal and u = 0 off it, so nothing is
    kept: the second step is the decay alone (and no division by zero)."""
    p = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
    opt = Muon([p], lr=0.1, weight_decay=0.5, exact_svd=True, cautious=True)
    p.grad = torch.eye(2, dtype=torch.float64)
    opt.step()
    after_one = p.detach().clone()
    p.grad = -0.01 * torch.eye(2, dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), after_one * (1 - 0.05), rtol=1e-14, atol=0)
