"""bf16 parameters without lost updates: Kahan summation and stochastic rounding, on every path.

The case of issue 19: 4,096 bf16 parameters at 1.0, gradient +1, `Lion(lr=1e-3, weight_decay=0)`,
500 steps. Each step (1e-3) is below half an ulp of bf16 at 1.0 (2^-8), so rounding to nearest
loses every one and the parameters stay at 1.0; fp32 ends at 0.5. Kahan ends within 0.01 of fp32
on every element, stochastic rounding within 0.02 in the mean, on the for-loop, foreach, C++ and
Triton paths (Triton under TRITON_INTERPRET=1 on CPU, set in conftest.py), each path storing the
same bits as the for-loop.
"""

import io

import pytest
import torch

from lionlib import Lion, LionK, fused

BF16 = torch.bfloat16
PATHS = [dict(foreach=False), dict(foreach=True), dict(fused=True, backend="cpp"), dict(fused=True, backend="triton")]
PATH_IDS = ["forloop", "foreach", "cpp", "triton"]


def skip_unless(path):
    if path.get("backend") == "cpp" and not fused.cpp_available():
        pytest.skip("the C++ kernel does not build here")
    if path.get("backend") == "triton" and not fused.triton_available():
        pytest.skip("Triton is not installed")


def run_case(path, steps=500, dtype=BF16, seed=0, **store):
    """The issue's case; returns the parameters after `steps` steps."""
    torch.manual_seed(seed)
    p = torch.nn.Parameter(torch.ones(4096, dtype=dtype))
    flags = {k: v for k, v in path.items() if k != "backend"}
    if path.get("backend") == "triton":
        flags = dict(foreach=True)  # the Triton kernel is CUDA's fused path; on CPU it is called directly below
    opt = Lion([p], lr=1e-3, weight_decay=0.0, **flags, **store)
    if path.get("backend") == "triton":
        opt._backend = lambda group, params: "triton"  # what fused=True is on CUDA, here in the interpreter
    for _ in range(steps):
        p.grad = torch.ones_like(p)
        opt.step()
    return p.detach().float(), opt


def test_rounding_to_nearest_loses_every_update_and_fp32_does_not():
    """The failure both options fix (and that this file's checks would miss without them)."""
    nearest, _ = run_case(dict(foreach=False), kahan_sum=False)
    fp32, _ = run_case(dict(foreach=False), dtype=torch.float32)
    assert torch.equal(nearest, torch.ones_like(nearest))
    torch.testing.assert_close(fp32, torch.full_like(fp32, 0.5), rtol=0, atol=1e-3)


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_kahan_sum_keeps_the_updates_on_every_path(path):
    skip_unless(path)
    p, opt = run_case(path)  # kahan_sum=None: on for bf16 parameters
    assert (p - 0.5).abs().max() <= 0.01, (p.min(), p.max())
    assert all("kahan_comp" in s and s["kahan_comp"].dtype == BF16 for s in opt.state.values())
    ref, _ = run_case(dict(foreach=False))
    assert torch.equal(p, ref)  # the same bits as the for-loop


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_stochastic_rounding_keeps_the_updates_in_the_mean_on_every_path(path):
    skip_unless(path)
    p, opt = run_case(path, stochastic_rounding=True)
    assert abs(p.mean().item() - 0.5) <= 0.02, p.mean()
    assert not any("kahan_comp" in s for s in opt.state.values())  # no extra buffer
    ref, _ = run_case(dict(foreach=False), stochastic_rounding=True)
    assert torch.equal(p, ref)


def test_stochastic_rounding_is_deterministic_under_a_seed_and_varies_with_it():
    a, _ = run_case(dict(foreach=False), steps=50, stochastic_rounding=True, seed=1)
    b, _ = run_case(dict(foreach=False), steps=50, stochastic_rounding=True, seed=1)
    c, _ = run_case(dict(foreach=False), steps=50, stochastic_rounding=True, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stochastic_rounding_is_unbiased_per_element():
    """One step of 1e-3 from 1.0: rounded down to 1 - 2^-8 with probability 1e-3 / 2^-8 (0.256)."""
    p, _ = run_case(dict(foreach=False), steps=1, stochastic_rounding=True)
    moved = (p < 1).float().mean().item()
    assert abs(moved - 1e-3 / 2**-8) < 0.03, moved  # 4,096 draws: 4.5 standard errors
    assert set(p.unique().tolist()) <= {1.0, 1 - 2**-8}


@pytest.mark.parametrize("store", [dict(), dict(stochastic_rounding=True)], ids=["kahan", "stochastic"])
def test_state_dict_round_trip_continues_bit_exactly(store):
    """The buffer, the key and the step counter are state: a reloaded optimizer continues the same."""
    p, opt = run_case(dict(foreach=False), steps=20, **store)
    q = torch.nn.Parameter(p.to(BF16).clone())
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    twin = Lion([q], lr=1e-3, weight_decay=0.0, foreach=False, **store)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    param = opt.param_groups[0]["params"][0]
    for _ in range(30):
        for x, o in ((param, opt), (q, twin)):
            x.grad = torch.ones_like(x)
            o.step()
    assert torch.equal(param, q)


def test_kahan_and_stochastic_rounding_leave_fp32_parameters_as_they_were():
    """fp32 parameters are stored exactly: neither option changes a bit of the default fp32 path."""
    runs = [run_case(dict(foreach=False), steps=30, dtype=torch.float32, **s)[0]
            for s in (dict(kahan_sum=False), dict(kahan_sum=True), dict(stochastic_rounding=True))]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_both_options_at_once_are_refused():
    with pytest.raises(ValueError, match="cannot both be set"):
        LionK([torch.zeros(3, requires_grad=True)], kahan_sum=True, stochastic_rounding=True)
    with pytest.raises(ValueError, match="Invalid kahan_sum"):
        LionK([torch.zeros(3, requires_grad=True)], kahan_sum="yes")


def test_a_short_bf16_training_run_tracks_fp32_with_kahan_and_not_without():
    """A small bf16 regression with weights near 3, where half an ulp (2^-7) is above Lion's step
    (1e-3): rounding to nearest never moves a weight, Kahan follows fp32 to the optimum."""
    torch.manual_seed(0)
    x = torch.randn(256, 32)
    w_true = 3 + 0.2 * torch.randn(32, 1)
    y = x @ w_true
    losses = {}
    for name, dtype, store in (("fp32", torch.float32, {}), ("nearest", BF16, dict(kahan_sum=False)), ("kahan", BF16, {})):
        w = torch.nn.Parameter((w_true + 0.2).to(dtype))
        opt = Lion([w], lr=1e-3, weight_decay=0.0, **store)
        for _ in range(300):
            loss = ((x.to(dtype) @ w).float() - y).square().mean()
            w.grad = None
            loss.backward()
            opt.step()
        losses[name] = ((x @ w.detach().float()) - y).square().mean().item()
    initial = (x @ torch.full((32, 1), 0.2)).square().mean().item()
    assert losses["nearest"] > 0.9 * initial, (losses, initial)  # stalled
    assert losses["fp32"] < 0.1 * initial and abs(losses["kahan"] - losses["fp32"]) < 0.02 * initial, (losses, initial)
