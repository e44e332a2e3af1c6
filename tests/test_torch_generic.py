"""torch's generic optimizer checks on `Lion` and `LionK(kappa="l2")`, with torch's AdamW as the control.

PyTorch's `test/test_optim.py` (`TestOptimRenewed`) is not shipped in the wheel, but its
infrastructure is: `OptimizerInfo`, `OptimizerInput`, the error inputs every optimizer must
reject (`get_error_inputs_for_all_optims`), the `@optims` parametriser and the device-type test
classes. Each lionlib optimizer gets an `OptimizerInfo` here, and the tests below exercise what
the generic tests of `TestOptimRenewed` exercise, through the same infrastructure: error
messages and types, descent (and ascent under maximize), tensor learning rates, complex
parameters, no-op steps, printing, deterministic and weights-only state dicts, older state
dicts, deepcopy, foreach/fused against the for-loop (fp64, fp32, bf16, fp16), mixed dtypes,
hooks, deferred (meta) initialisation, and param groups. AdamW runs every test too, so a check
that AdamW fails would be a broken check, not a lionlib bug.

lionlib's foreach path runs on CPU (torch's foreach kernels are CUDA-only, so torch's own helper
`_get_optim_inputs_including_global_cliquey_kwargs` drops foreach there); `impl_inputs` below
adds every implementation a device runs. torch's internal test utilities import `expecttest`,
which the `test` extra installs.
"""

import copy
import io
import warnings

import pytest
import torch

pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest (the test extra installs it)")
from torch.nn import Parameter
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_optimizers import (
    ErrorOptimizerInput,
    OptimizerErrorEnum,
    OptimizerInfo,
    OptimizerInput,
    get_error_inputs_for_all_optims,
    optim_db,
    optims,
)
from torch.testing._internal.common_utils import TestCase

from lionlib import fused
from lionlib.optim import Lion, LionK


class LionKL2(LionK):
    """LionK with K = ||.||_2 (a whole-tensor K: no C++ kernel, Triton's on CUDA)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, kappa="l2", **kwargs)


def lion_inputs(device, dtype=None):
    return [
        OptimizerInput(params=None, kwargs={}, desc="default"),
        OptimizerInput(params=None, kwargs={"lr": 0.01}, desc="non-default lr"),
        OptimizerInput(params=None, kwargs={"lr": torch.tensor(0.001)}, desc="tensor lr"),
        OptimizerInput(params=None, kwargs={"weight_decay": 0.1}, desc="weight decay"),
        OptimizerInput(params=None, kwargs={"betas": (0.95, 0.98)}, desc="betas"),
        OptimizerInput(params=None, kwargs={"weight_decay": 0.1, "maximize": True}, desc="maximize"),
        OptimizerInput(params=None, kwargs={"weight_decay": 0.1, "implicit_decay": True}, desc="implicit decay"),
        OptimizerInput(params=None, kwargs={"momentum_dtype": torch.float32}, desc="fp32 momentum"),
    ]


def lion_error_inputs(device, dtype):
    sample = Parameter(torch.randn(1, 1, device=device, dtype=dtype))
    own = [
        (dict(lr=-1.0), ValueError, "Invalid learning rate"),
        (dict(betas=(1.5, 0.99)), ValueError, "Invalid beta1"),
        (dict(weight_decay=-0.5), ValueError, "Invalid weight_decay"),
        (dict(fused=True, foreach=True), ValueError, "fused=True and foreach=True cannot both be set"),
    ]
    errors = [ErrorOptimizerInput(OptimizerInput(params=[sample], kwargs=kw, desc=rx), error_type=t, error_regex=rx)
              for kw, t, rx in own]
    complex_param = Parameter(torch.randn(2, 2, device=device, dtype=torch.complex64))
    errors.append(ErrorOptimizerInput(OptimizerInput(params=[complex_param], kwargs={}, desc="complex"),
                                      error_type=RuntimeError, error_regex="does not support complex"))
    return get_error_inputs_for_all_optims(device, dtype) + errors


CPP = ("cpu",) if fused.cpp_available() else ()
LION_INFOS = [
    OptimizerInfo(Lion, optim_inputs_func=lion_inputs, optim_error_inputs_func=lion_error_inputs,
                  supported_impls=("foreach", "fused"), supports_fused_on=CPP + ("cuda",), supports_complex=False),
    OptimizerInfo(LionKL2, optim_inputs_func=lion_inputs, optim_error_inputs_func=lion_error_inputs,
                  supported_impls=("foreach", "fused"), supports_fused_on=("cuda",), supports_complex=False),
]
ADAMW = next(info for info in optim_db if info.optim_cls is torch.optim.AdamW)
INFOS = LION_INFOS + [ADAMW]
FUSED_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def impl_inputs(optim_info, device):
    """Every config of `optim_info` on every implementation this device runs: the for-loop
    (foreach=False, fused=False), foreach, and fused where the optimizer has a kernel here."""
    out = []
    for inp in optim_info.optim_inputs_func(device):
        base = {**inp.kwargs, "foreach": False}
        if "fused" in optim_info.supported_impls:
            base["fused"] = False
        out.append(OptimizerInput(params=None, kwargs=base, desc=inp.desc))
        out.append(OptimizerInput(params=None, kwargs={**base, "foreach": True}, desc=f"{inp.desc} & foreach"))
        if "fused" in optim_info.supported_impls and device.split(":")[0] in optim_info.supports_fused_on:
            out.append(OptimizerInput(params=None, kwargs={**base, "fused": True}, desc=f"{inp.desc} & fused"))
    return out


def usable(optim_info, kwargs):
    """AdamW's inputs include CUDA-only ones (capturable); keep what this CPU run can take."""
    return not kwargs.get("capturable") and not kwargs.get("differentiable")


def model_and_input(device, dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(device, dtype)
    return model, torch.randn(3, 5, device=device, dtype=dtype)


def loss_of(model, x):
    return model(x).square().sum()


class TestLionGeneric(TestCase):
    @optims(INFOS, dtypes=[torch.float32])
    def test_optim_infos_do_not_specify_global_cliquey_kwargs(self, device, dtype, optim_info):
        for inp in optim_info.optim_inputs_func(device):
            self.assertFalse(any(k in inp.kwargs for k in ("foreach", "fused", "differentiable")))

    @optims(INFOS, dtypes=[torch.float32])
    def test_errors(self, device, dtype, optim_info):
        for err in optim_info.optim_error_inputs_func(device, dtype):
            inp, cls = err.optimizer_error_input, optim_info.optim_cls
            params = inp.params if inp.params is not None else [Parameter(torch.randn(1, 1, device=device, dtype=dtype))]
            if err.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
                if issubclass(err.error_type, Warning):
                    with self.assertWarnsRegex(err.error_type, err.error_regex):
                        cls(params, **inp.kwargs)
                else:
                    with self.assertRaisesRegex(err.error_type, err.error_regex):
                        cls(params, **inp.kwargs)
            else:
                opt = cls(params, **inp.kwargs)
                with self.assertRaisesRegex(err.error_type, err.error_regex):
                    opt.step()

    @optims(INFOS, dtypes=[torch.float32])
    def test_forloop_goes_right_direction(self, device, dtype, optim_info):
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            model, x = model_and_input(device, dtype)
            opt = optim_info.optim_cls(model.parameters(), **{**inp.kwargs, "lr": 1e-2})
            maximize = inp.kwargs.get("maximize", False)

            def closure():
                opt.zero_grad()
                loss = loss_of(model, x)
                loss.backward()
                return loss

            initial = closure().item()
            for _ in range(5):
                opt.step(closure)
            final = closure().item()
            self.assertTrue(final > initial if maximize else final < initial, (inp.desc, initial, final))

    @optims(INFOS, dtypes=[torch.float32])
    def test_param_groups_weight_decay_and_lr(self, device, dtype, optim_info):
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs) or inp.kwargs.get("maximize"):
                continue
            model, x = model_and_input(device, dtype)
            kwargs = {k: v for k, v in inp.kwargs.items() if k not in ("lr", "weight_decay")}
            groups = [{"params": model[0].parameters(), "weight_decay": 0.1, "lr": 3e-2},
                      {"params": model[2].parameters(), "weight_decay": 0.0}]
            opt = optim_info.optim_cls(groups, lr=1e-2, **kwargs)
            initial = loss_of(model, x).item()
            for _ in range(5):
                opt.zero_grad()
                loss_of(model, x).backward()
                opt.step()
            self.assertLess(loss_of(model, x).item(), initial, inp.desc)

    @optims(INFOS, dtypes=[torch.float32])
    def test_tensor_lr(self, device, dtype, optim_info):
        """A 1-element tensor lr (also 0-dim of another dtype) steps as the same float lr."""
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs) or isinstance(inp.kwargs.get("lr"), torch.Tensor):
                continue
            if inp.kwargs.get("foreach") and optim_info.optim_cls is torch.optim.AdamW:
                continue  # torch: "lr as a Tensor is not supported for capturable=False and foreach=True"
            runs = []
            for lr in (0.01, torch.tensor(0.01), torch.tensor([0.01], dtype=torch.float64)):
                model, x = model_and_input(device, dtype)
                opt = optim_info.optim_cls(model.parameters(), **{**inp.kwargs, "lr": lr})
                for _ in range(3):
                    opt.zero_grad()
                    loss_of(model, x).backward()
                    opt.step()
                runs.append([p.detach().clone() for p in model.parameters()])
            for run in runs[1:]:
                self.assertEqual(run, runs[0], msg=inp.desc)

    @optims(INFOS, dtypes=[torch.float32])
    def test_complex(self, device, dtype, optim_info):
        """Complex parameters: stepped as their real view where supported, else refused in torch's words."""
        z = torch.randn(3, 2, dtype=torch.complex64, device=device, requires_grad=True)
        if not optim_info.supports_complex:
            with self.assertRaisesRegex(RuntimeError, "does not support complex"):
                optim_info.optim_cls([z])
            return
        r = torch.view_as_real(z).detach().clone().requires_grad_()
        opts = [optim_info.optim_cls([z], foreach=False), optim_info.optim_cls([r], foreach=False)]
        for _ in range(3):
            z.grad = torch.randn_like(z)
            r.grad = torch.view_as_real(z.grad).clone()
            for opt in opts:
                opt.step()
        self.assertEqual(torch.view_as_real(z), r)

    @optims(INFOS, dtypes=[torch.float32])
    def test_step_is_noop_when_params_have_no_grad(self, device, dtype, optim_info):
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            params = [torch.randn(2, 3, device=device, dtype=dtype, requires_grad=True) for _ in range(2)]
            before = [p.detach().clone() for p in params]
            opt = optim_info.optim_cls(params, **inp.kwargs)
            opt.step()
            self.assertEqual(params, before, atol=0, rtol=0)
            self.assertEqual(len(opt.state), 0)

    @optims(INFOS, dtypes=[torch.float32])
    def test_step_is_noop_for_zero_grads(self, device, dtype, optim_info):
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs) or inp.kwargs.get("weight_decay", 0):
                continue  # weight decay moves parameters without a gradient
            kwargs = {**inp.kwargs, "weight_decay": 0.0}
            params = [torch.randn(2, 3, device=device, dtype=dtype, requires_grad=True) for _ in range(2)]
            before = [p.detach().clone() for p in params]
            opt = optim_info.optim_cls(params, **kwargs)
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
            self.assertEqual(params, before, atol=0, rtol=0, msg=inp.desc)

    @optims(INFOS, dtypes=[torch.float32])
    def test_optimizer_can_be_printed(self, device, dtype, optim_info):
        opt = optim_info.optim_cls([Parameter(torch.randn(2, 3, device=device))])
        self.assertIn(type(opt).__name__, repr(opt))

    def _stepped(self, optim_info, kwargs, device, dtype, steps=3, model=None):
        model, x = model if model is not None else model_and_input(device, dtype)
        opt = optim_info.optim_cls(model.parameters(), **kwargs)
        for _ in range(steps):
            opt.zero_grad()
            loss_of(model, x).backward()
            opt.step()
        return model, x, opt

    @optims(INFOS, dtypes=[torch.float32])
    def test_state_dict_deterministic(self, device, dtype, optim_info):
        """Equal (not identical) parameters give equal state dicts; a loaded copy continues identically."""
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            model, x, opt = self._stepped(optim_info, inp.kwargs, device, dtype)
            twin, _ = model_and_input(device, dtype)
            twin.load_state_dict(model.state_dict())
            twin_opt = optim_info.optim_cls(twin.parameters(), **inp.kwargs)
            saved = copy.deepcopy(opt.state_dict())
            twin_opt.load_state_dict(copy.deepcopy(saved))
            self.assertEqual(opt.state_dict(), twin_opt.state_dict())
            for _ in range(2):
                for m, o in ((model, opt), (twin, twin_opt)):
                    o.zero_grad()
                    loss_of(m, x).backward()
                    o.step()
            self.assertEqual(list(model.parameters()), list(twin.parameters()), atol=0, rtol=0, msg=inp.desc)
            self.assertEqual(saved, copy.deepcopy(saved))  # loading did not modify the saved dict

    @optims(INFOS, dtypes=[torch.float32])
    def test_can_load_older_state_dict(self, device, dtype, optim_info):
        """A state dict without the flags added after the first release (foreach, maximize, ...) loads and steps."""
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            model, x, opt = self._stepped(optim_info, inp.kwargs, device, dtype)
            old = copy.deepcopy(opt.state_dict())
            for group in old["param_groups"]:
                for flag in optim_info.not_og_supported_flags:
                    group.pop(flag, None)
            new_opt = optim_info.optim_cls(model.parameters(), **inp.kwargs)
            new_opt.load_state_dict(old)
            new_opt.zero_grad()
            loss_of(model, x).backward()
            new_opt.step()

    @optims(INFOS, dtypes=[torch.float32])
    def test_save_load_equality_with_weights_only(self, device, dtype, optim_info):
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            _, _, opt = self._stepped(optim_info, inp.kwargs, device, dtype)
            buffer = io.BytesIO()
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            loaded = torch.load(buffer, weights_only=True)
            self.assertEqual(loaded, opt.state_dict())
            opt.load_state_dict(loaded)

    @optims(INFOS, dtypes=[torch.float32])
    def test_deepcopy_copies_all_public_attrs(self, device, dtype, optim_info):
        _, _, opt = self._stepped(optim_info, {}, device, dtype, steps=1)
        public = lambda o: {k for k in o.__dict__ if not k.startswith("_")}  # noqa: E731
        self.assertEqual(public(opt), public(copy.deepcopy(opt)))

    @optims(INFOS, dtypes=[torch.float32])
    def test_non_empty_state(self, device, dtype, optim_info):
        _, _, opt = self._stepped(optim_info, {}, device, dtype, steps=1)
        self.assertTrue(all(len(s) > 0 for s in opt.state.values()) and len(opt.state) > 0)

    def _compare_impl(self, device, dtype, optim_info, flag):
        if optim_info.optim_cls is torch.optim.AdamW and dtype == torch.float16:
            return  # AdamW's for-loop reaches inf in fp16 on this model (eps**2 underflows), so nothing to compare
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs) or not inp.kwargs.get(flag):
                continue
            if flag == "fused" and optim_info.optim_cls is torch.optim.AdamW and isinstance(inp.kwargs.get("lr"), torch.Tensor):
                continue
            if flag == "fused" and dtype == torch.float64 and inp.kwargs.get("momentum_dtype") == torch.float32:
                continue  # an fp32 momentum for fp64 parameters has no kernel (fused=True says so)
            ref_kwargs = {**inp.kwargs, flag: False}
            runs = []
            for kwargs in (ref_kwargs, inp.kwargs):
                model, x = model_and_input(device, dtype)
                _, _, opt = self._stepped(optim_info, kwargs, device, dtype, steps=4, model=(model, x))
                runs.append(([p.detach().clone() for p in model.parameters()],
                             [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]))
            exact = {"atol": 0, "rtol": 0} if optim_info.optim_cls is Lion else {}  # lionlib: the same bits
            if optim_info.optim_cls is torch.optim.AdamW and dtype in (torch.bfloat16, torch.float16):
                exact = {"atol": 2e-2, "rtol": 2e-2}  # torch's fused AdamW rounds differently in 16 bits
            self.assertEqual(runs[1][0], runs[0][0], msg=f"{inp.desc} params", **exact)
            self.assertEqual(runs[1][1], runs[0][1], msg=f"{inp.desc} state", **exact)

    @optims(INFOS, dtypes=FUSED_DTYPES)
    def test_foreach_matches_forloop(self, device, dtype, optim_info):
        self._compare_impl(device, dtype, optim_info, "foreach")

    @optims(INFOS, dtypes=FUSED_DTYPES)
    def test_fused_matches_forloop(self, device, dtype, optim_info):
        self._compare_impl(device, dtype, optim_info, "fused")

    @optims(INFOS, dtypes=[torch.float32])
    def test_mixed_device_dtype(self, device, dtype, optim_info):
        """One group holding fp64, fp32 and bf16 parameters: every implementation equals the for-loop."""
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs) or inp.kwargs.get("momentum_dtype"):
                continue
            runs = []
            for kwargs in ({**inp.kwargs, "foreach": False, **({"fused": False} if "fused" in inp.kwargs else {})}, inp.kwargs):
                torch.manual_seed(1)
                params = [torch.randn(3, 4, device=device, dtype=d, requires_grad=True)
                          for d in (torch.float64, torch.float32, torch.bfloat16)]
                opt = optim_info.optim_cls(params, **kwargs)
                for _ in range(3):
                    for p in params:
                        p.grad = torch.randn_like(p)
                    opt.step()
                runs.append([p.detach().clone() for p in params])
            self.assertEqual(runs[1], runs[0], msg=inp.desc)

    @optims(INFOS, dtypes=[torch.float32])
    def test_step_and_state_dict_hooks(self, device, dtype, optim_info):
        seen = []
        model, x = model_and_input(device, dtype)
        opt = optim_info.optim_cls(model.parameters())
        opt.register_step_pre_hook(lambda o, a, k: seen.append("pre"))
        opt.register_step_post_hook(lambda o, a, k: seen.append("post"))
        opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
        opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("load") or None)
        loss_of(model, x).backward()
        opt.step()
        state = opt.state_dict()
        self.assertEqual(state["extra"], 1)
        opt.load_state_dict({k: v for k, v in state.items() if k != "extra"})
        self.assertEqual(seen, ["pre", "post", "load"])

    @optims(INFOS, dtypes=[torch.float32])
    def test_set_default_dtype_works_with_foreach(self, device, dtype, optim_info):
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model, x = model_and_input(device, torch.float64)
            opt = optim_info.optim_cls(model.parameters(), foreach=True)
            loss_of(model, x).backward()
            opt.step()
        finally:
            torch.set_default_dtype(old)

    @optims(INFOS, dtypes=[torch.float32])
    def test_meta_parameters_then_to_empty(self, device, dtype, optim_info):
        """Deferred init (FSDP2's pattern): built on meta with every implementation, `to_empty()`, then stepped."""
        for inp in impl_inputs(optim_info, device):
            if not usable(optim_info, inp.kwargs):
                continue
            with torch.device("meta"):
                model = torch.nn.Linear(5, 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = optim_info.optim_cls(model.parameters(), **inp.kwargs)
            swap = torch.__future__.get_swap_module_params_on_conversion()
            torch.__future__.set_swap_module_params_on_conversion(True)
            try:
                model.to_empty(device=device)
            finally:
                torch.__future__.set_swap_module_params_on_conversion(swap)
            torch.nn.init.ones_(model.weight), torch.nn.init.zeros_(model.bias)
            model(torch.ones(3, 5, device=device)).sum().backward()
            before = model.weight.detach().clone()
            opt.step()
            self.assertFalse(torch.equal(model.weight, before), inp.desc)


instantiate_device_type_tests(TestLionGeneric, globals(), only_for=("cpu", "cuda"))
