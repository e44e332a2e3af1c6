"""The fused paths (`lionlib.fused`) against an independent reference, step by step.

The C++ kernel runs on CPU tensors. Triton kernels run under TRITON_INTERPRET=1 when there is no
GPU (set in conftest.py), and compiled on CUDA otherwise, so `benchmarks/gpu_check.sh` runs this
same file on a GPU. For l1, half_sq_l2, huber and l1_plus_sq_l2 the fused results are
bit-identical to the reference in every dtype; for K with tanh, sqrt or pow, and for lp norms
(another summation order), they agree to a few fp32 ulp.
"""

import os

import pytest
import torch

from lionlib import fused, kappa
from lionlib.fused import contract
from lionlib.optim import Lion, LionK, lionk_step

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BF16, FP16, FP32, FP64 = torch.bfloat16, torch.float16, torch.float32, torch.float64
EXACT = {"l1", "half_sq_l2", "huber", "l1_plus_sq_l2"}
KAPPAS = [
    ("l1", {}),
    ("half_sq_l2", {}),
    ("huber", {"delta": 0.3}),
    ("relativistic", {"delta": 0.2}),
    ("logcosh", {"delta": 0.5}),
    ("l1_plus_sq_l2", {"a": 0.7}),
    ("lp", {"p": 1.5}),
    ("l2", {}),
]
# (param dtype, momentum dtype): low-precision params with and without fp32 momentum
DTYPES = [(FP32, FP32), (BF16, BF16), (BF16, FP32), (FP16, FP16), (FP16, FP32)]
# not multiples of the block (1024), empty, 1 element, and more than one chunk (SMALL_CHUNK)
SIZES = [(0,), (1,), (7,), (33, 31), (3, 5, 205)]
SMALL_CHUNK = 1024
# inf - inf inside the interpreter's numpy is the intended NaN
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def reference_step(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize):
    """The Lion-K step, one tensor at a time, written from the maths (PyTorch sign convention) in
    the same operation order as eager torch code computes it (add with alpha is one fma)."""
    for p, g, m in zip(params, grads, exp_avgs):
        work = torch.promote_types(p.dtype, FP32)  # fp32 maths for bf16/fp16
        g32 = -g.to(work) if maximize else g.to(work)
        m32, p32 = m.to(work), p.to(work)
        if weight_decay and not implicit_decay:
            p32 = p32 * (1 - lr * weight_decay)
        c = torch.add(m32 * beta1, g32, alpha=1 - beta1)
        p32 = torch.add(p32, kappa.grad(c), alpha=-lr)
        if weight_decay and implicit_decay:
            p32 = p32 / (1 + lr * weight_decay)
        p.copy_(p32)
        m.copy_(torch.add(m32 * beta2, g32, alpha=1 - beta2))


def make_state(seed, sizes, p_dtype, m_dtype, g_dtype=None):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen).to(DEVICE, p_dtype) for s in sizes]
    exp_avgs = [(0.1 * torch.randn(s, generator=gen)).to(DEVICE, m_dtype) for s in sizes]
    return params, exp_avgs


def make_grads(seed, sizes, dtype):
    gen = torch.Generator().manual_seed(1000 + seed)
    return [(0.1 * torch.randn(s, generator=gen)).to(DEVICE, dtype) for s in sizes]


def assert_same(actual, expected, exact, low_precision=False):
    for a, e in zip(actual, expected):
        if exact:
            torch.testing.assert_close(a, e, rtol=0, atol=0, equal_nan=True)
        else:  # a few fp32 ulp, or one ulp of the storage dtype after rounding
            tol = dict(rtol=1.6e-2, atol=1e-5) if low_precision else dict(rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(a, e, equal_nan=True, **tol)


def run_steps(step_fn, name, params_kw, p_dtype, m_dtype, implicit_decay, maximize, sizes=SIZES, steps=2):
    """Run `step_fn` and the reference side by side for a few steps and compare after each."""
    K = kappa.get(name, **params_kw)
    hyper = dict(kappa=K, lr=3e-2, beta1=0.9, beta2=0.99, weight_decay=0.5, implicit_decay=implicit_decay, maximize=maximize)
    params, exp_avgs = make_state(0, sizes, p_dtype, m_dtype)
    ref_params, ref_exp_avgs = [p.clone() for p in params], [m.clone() for m in exp_avgs]
    for step in range(steps):
        grads = make_grads(step, sizes, p_dtype)
        grads_before = [g.clone() for g in grads]
        step_fn(params, grads, exp_avgs, **hyper)
        reference_step(ref_params, grads, ref_exp_avgs, **hyper)
        assert_same(grads, grads_before, exact=True)  # grads are never mutated
        low = p_dtype != FP32 and name not in EXACT
        assert_same(params, ref_params, exact=name in EXACT, low_precision=low)
        assert_same(exp_avgs, ref_exp_avgs, exact=True)


def whole(kernel_step, **options):
    """A kernel step followed by the foreach path on the tensors it hands back, as `lionk_step`
    runs them; `options` (chunk, threads) go to the kernel only."""

    def step(params, grads, exp_avgs, **hyper):
        rest = kernel_step(params, grads, exp_avgs, **options, **hyper)
        if rest[0]:
            lionk_step(*rest, backend="foreach", **hyper)

    return step


triton_step = whole(fused.triton_step, chunk=SMALL_CHUNK)
cpp_step = whole(fused.cpp_step)


needs_triton = pytest.mark.skipif(not fused.triton_available(), reason="Triton is not installed")
cpu_only = pytest.mark.skipif(DEVICE != "cpu", reason="the C++ kernel is the CPU path (CUDA tensors take foreach)")
needs_cpp = pytest.mark.skipif(not fused.cpp_available(), reason="the C++ kernel does not build here (no compiler)")


@needs_triton
@pytest.mark.parametrize("name,params_kw", KAPPAS, ids=[k for k, _ in KAPPAS])
@pytest.mark.parametrize("i_dtype", range(len(DTYPES)), ids=[f"{p}-{m}".replace("torch.", "") for p, m in DTYPES])
def test_triton_matches_reference(name, params_kw, i_dtype):
    p_dtype, m_dtype = DTYPES[i_dtype]
    # every (decay scheme, maximize) pair is covered for every K across the dtype cases
    implicit_decay, maximize = [(False, False), (True, False), (False, True), (True, True), (False, False)][i_dtype]
    run_steps(triton_step, name, params_kw, p_dtype, m_dtype, implicit_decay, maximize)


def edge_state(p_dtype, m_dtype):
    """Zeros, signed zeros, NaN and +-inf in grads and momentum, in every combination."""
    specials = torch.tensor([0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30])
    g = specials.repeat_interleave(len(specials))
    m = specials.repeat(len(specials))
    p = torch.linspace(-1, 1, len(g))
    p[::7] = 0.0
    return [p.to(DEVICE, p_dtype)], [g.to(DEVICE, p_dtype)], [m.to(DEVICE, m_dtype)]


def skip_unless_backend(backend):
    if backend == "triton" and not fused.triton_available():
        pytest.skip("Triton is not installed")
    if backend == "cpp" and DEVICE != "cpu":
        pytest.skip("the C++ kernel is the CPU path")
    if backend == "cpp" and not fused.cpp_available():
        pytest.skip("the C++ kernel does not build here (no compiler)")


@pytest.mark.parametrize("backend", ["triton", "cpp"])
@pytest.mark.parametrize("name,params_kw", KAPPAS, ids=[k for k, _ in KAPPAS])
def test_edge_values(backend, name, params_kw):
    skip_unless_backend(backend)
    K = kappa.get(name, **params_kw)
    for p_dtype, m_dtype in [(FP32, FP32), (BF16, FP32)]:
        params, grads, exp_avgs = edge_state(p_dtype, m_dtype)
        ref_params, ref_exp_avgs = [params[0].clone()], [exp_avgs[0].clone()]
        hyper = dict(kappa=K, lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.1, implicit_decay=False, maximize=False)
        step = triton_step if backend == "triton" else cpp_step
        step(params, grads, exp_avgs, **hyper)
        reference_step(ref_params, grads, ref_exp_avgs, **hyper)
        if name == "l1":  # the sign(0) = 0 and sign(NaN) = 0 conventions of torch.sign
            assert torch.isnan(ref_params[0]).sum() == 0 and torch.isnan(ref_exp_avgs[0]).sum() > 0
        assert torch.equal(torch.isnan(params[0]), torch.isnan(ref_params[0]))
        assert_same(params, ref_params, exact=name in EXACT)
        assert_same(exp_avgs, ref_exp_avgs, exact=True)


@needs_triton
def test_triton_default_chunking_covers_large_tensors():
    """Several programs per tensor with the default chunk size; no element left behind."""
    sizes = [(3 * fused._chunk_size(0, torch.device(DEVICE)) + 5,), (10,)]
    run_steps(whole(fused.triton_step), "l1", {}, FP32, FP32, False, False, sizes=sizes, steps=1)


@pytest.mark.parametrize("backend", ["triton", "cpp"])
def test_non_dense_and_mixed_layouts_take_the_foreach_path(backend):
    skip_unless_backend(backend)
    K = kappa.get("l1")
    hyper = dict(kappa=K, lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1, implicit_decay=False, maximize=False)
    base = torch.randn(40, 30, device=DEVICE)
    params = [base[:, :20], torch.randn(20, 30, device=DEVICE).t(), torch.randn(64, device=DEVICE).double()]
    grads = [torch.randn_like(params[0]), torch.randn(30, 20, device=DEVICE), torch.randn(64, device=DEVICE).double()]
    exp_avgs = [torch.randn_like(p) for p in params]
    ref_params, ref_exp_avgs = [p.clone() for p in params], [m.clone() for m in exp_avgs]
    step = triton_step if backend == "triton" else cpp_step
    step(params, grads, exp_avgs, **hyper)
    reference_step(ref_params, grads, ref_exp_avgs, **hyper)
    assert_same(params, ref_params, exact=True)
    assert_same(exp_avgs, ref_exp_avgs, exact=True)
    torch.testing.assert_close(base[:, 20:], base[:, 20:].clone())  # untouched around the view


@cpu_only
@needs_cpp
@pytest.mark.parametrize("name,params_kw", KAPPAS, ids=[k for k, _ in KAPPAS])
@pytest.mark.parametrize("implicit_decay", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("maximize", [False, True], ids=["min", "max"])
def test_cpp_matches_reference(name, params_kw, implicit_decay, maximize):
    for p_dtype, m_dtype in DTYPES + [(FP64, FP64), (FP32, BF16)]:  # the last one takes foreach (no kernel)
        run_steps(cpp_step, name, params_kw, p_dtype, m_dtype, implicit_decay, maximize)


@cpu_only
@needs_cpp
def test_cpp_kernel_takes_float64_computed_in_float64():
    """fp64 tensors are the kernel's (nothing handed back), in fp64: a step smaller than fp32's
    resolution at 1.0 still moves the parameter, exactly as the for-loop moves it."""
    hyper = dict(kappa=kappa.get("l1"), lr=1e-9, beta1=0.9, beta2=0.99, weight_decay=0.0, implicit_decay=False, maximize=False)
    p, g, m = torch.ones(100, dtype=FP64), torch.ones(100, dtype=FP64), torch.zeros(100, dtype=FP64)
    ref = p.clone()
    assert fused.cpp_step([p], [g], [m], **hyper)[0] == []
    lionk_step([ref], [g], [torch.zeros_like(m)], backend="forloop", **hyper)
    assert torch.equal(p, ref) and (p < 1).all()


@cpu_only
@needs_cpp
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_cpp_thread_ranges_cross_tensor_boundaries(threads):
    """Each thread takes an equal range of all elements in order, starting and ending inside
    tensors (each thread takes at least 2^16 elements); every element is updated exactly once."""
    sizes = [(70001,), (3,), (100000,), (1,), (50007,), (0,), (140000,)]
    step = whole(fused.cpp_step, threads=threads)
    for p_dtype, m_dtype in [(FP32, FP32), (BF16, FP32)]:
        run_steps(step, "l1", {}, p_dtype, m_dtype, False, False, sizes=sizes)


def test_optimizer_fused_equals_forloop():
    """LionK(fused=True) (C++ on CPU, Triton on CUDA) continues bit-exactly like the for-loop path."""
    torch.manual_seed(0)
    models = [torch.nn.Linear(33, 17).to(DEVICE) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [LionK(m.parameters(), "l1", lr=1e-2, weight_decay=0.1, fused=f, foreach=None if f else False) for m, f in zip(models, (True, False))]
    x = torch.randn(8, 33, device=DEVICE)
    for _ in range(3):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("foreach", [None, True], ids=["default", "foreach"])
def test_torch_compile_of_the_step_equals_eager(foreach):
    """torch.compile(opt.step) traces the foreach path and leaves the fused kernels (opaque calls)
    to run eagerly; either way the compiled step continues exactly like the eager one."""
    torch.manual_seed(0)
    models = [torch.nn.Linear(33, 17).to(DEVICE) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [Lion(m.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach) for m in models]
    steps = [opts[0].step, torch.compile(opts[1].step)]
    x = torch.randn(8, 33, device=DEVICE)
    for _ in range(3):
        for model, opt, step in zip(models, opts, steps):
            opt.zero_grad()
            model(x).square().mean().backward()
            step()
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_missing_triton_falls_back_with_a_warning(monkeypatch):
    def no_triton():
        raise ImportError("No module named 'triton'")

    monkeypatch.setattr(fused, "_triton", no_triton)
    K = kappa.get("l1")
    hyper = dict(kappa=K, lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.0, implicit_decay=False, maximize=False)
    params, exp_avgs = make_state(0, [(5,)], FP32, FP32)
    grads = make_grads(0, [(5,)], FP32)
    ref_params, ref_exp_avgs = [p.clone() for p in params], [m.clone() for m in exp_avgs]
    with pytest.warns(RuntimeWarning, match="Triton is not importable"):
        whole(fused.triton_step)(params, grads, exp_avgs, **hyper)
    lionk_step(ref_params, grads, ref_exp_avgs, backend="foreach", **hyper)
    assert_same(params, ref_params, exact=True)


@cpu_only
def test_cpp_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path):
    from lionlib.fused import cpu as fused_cpu

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("LIONLIB_CACHE_DIR", str(tmp_path))
    fused_cpu.library.cache_clear()
    cpp_available_cache = fused.cpp_available.__wrapped__  # under _eager_under_compile
    cpp_available_cache.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="(?s)no C\\+\\+ compiler .* foreach path"):
            run_steps(cpp_step, "l1", {}, FP32, FP32, False, False, steps=2)
        assert list(tmp_path.iterdir()) == []
    finally:
        fused_cpu.library.cache_clear()
        cpp_available_cache.cache_clear()


@cpu_only
@needs_cpp
def test_cpp_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    """A fresh cache gets one library, named by a hash of the source, flags, compiler and CPU;
    a compile error is reported with the compiler's message, an unwritable cache clearly."""
    from lionlib.fused import cpu as fused_cpu

    monkeypatch.setenv("LIONLIB_CACHE_DIR", str(tmp_path))
    fused_cpu.library.cache_clear()
    try:
        fused_cpu.library()
        built = list(tmp_path.iterdir())
        assert len(built) == 1 and built[0].name.startswith("fused_cpu-") and built[0].suffix == ".so"
        broken = tmp_path / "broken.cpp"
        broken.write_text("this is not C++")
        monkeypatch.setattr(fused_cpu, "SOURCE", broken)
        fused_cpu.library.cache_clear()
        with pytest.raises(fused_cpu.FusedCpuUnavailable, match="building broken.cpp failed:\n.*error"):
            fused_cpu.library()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built[0].name, "broken.cpp"])  # no partial file
        monkeypatch.setenv("LIONLIB_CACHE_DIR", str(broken / "cache"))  # under a file: cannot be created
        fused_cpu.library.cache_clear()
        with pytest.raises(fused_cpu.FusedCpuUnavailable, match="cannot write the kernel cache"):
            fused_cpu.library()
    finally:
        fused_cpu.library.cache_clear()


@cpu_only
@needs_cpp
def test_cpp_kernel_refuses_what_it_has_no_code_for():
    """An unknown K code or dtype pair is refused before any memory is touched."""
    from lionlib.fused import cpu as fused_cpu

    p, g, m = torch.ones(5), torch.ones(5), torch.ones(5, dtype=torch.bfloat16)
    hyper = fused._scalars(kappa.get("l1"), 0.1, 0.9, 0.99, 0.0, False)["hyper"]
    code = contract.CODE
    beyond = len(contract.KERNELS)  # a code the contract does not name
    # lp has no elementwise kernel; an unknown code; fp32 p with bf16 m
    for k, m_ in [(code["lp"], m.float()), (beyond, m.float()), (code["l1"], m)]:
        with pytest.raises(ValueError, match="no kernel"):
            fused_cpu.step([p], [g], [m_], code=k, implicit=False, hyper=hyper)
    assert torch.equal(p, torch.ones(5)) and torch.equal(m, torch.ones(5, dtype=torch.bfloat16))


@cpu_only
@needs_cpp
def test_cpp_kernel_has_code_for_every_elementwise_kernel_of_the_contract():
    """Every elementwise entry of `contract.KERNELS` is compiled into the C++ library (its switch
    is generated from the contract header), and each computes its own K: the step on c = 0.5 with
    the K's parameter equals the reference direction."""
    from lionlib.fused import cpu as fused_cpu

    for name in contract.KERNELS:
        if name in contract.WHOLE_TENSOR:
            continue
        K = next(kappa.get(n) for n in kappa.names() if (kappa.get(n).kernel() or ("",))[0] == name)
        p, g, m = torch.zeros(3), torch.tensor([0.5, -2.0, 0.0]), torch.zeros(3)
        s = fused._scalars(K, 1.0, 0.0, 0.0, 0.0, False)  # lr 1, beta1 0: p = -grad K(g)
        fused_cpu.step([p], [g], [m], code=s["code"], implicit=False, hyper=s["hyper"])
        torch.testing.assert_close(p, -K.grad(torch.tensor([0.5, -2.0, 0.0])), rtol=1e-6, atol=0), name


def test_kernel_contract_is_named_once():
    """The kernels read the contract's tables, never bare numbers: the C++ header is generated
    from them, the Triton kernel has one constexpr per code and slot (equal to the table's), and
    neither source compares a kernel code or indexes `hyper` with a literal number."""
    import re
    from pathlib import Path

    header = contract.c_header()
    for name in contract.KERNELS:
        assert f"{name.upper()} = {contract.CODE[name]}" in header
    assert "struct Hyper {\n" + "".join(f"  float {n};\n" for n in contract.SLOTS) + "};" in header
    src = Path(fused.__file__).parent
    tk = (src / "triton_kernel.py").read_text()
    for name in contract.KERNELS:
        assert re.search(rf'^K_{name.upper()}: tl.constexpr = tl.constexpr\(contract.CODE\["{name}"\]\)$', tk, re.M), name
        assert f"K == K_{name.upper()}" in tk, f"Triton's _direction has no branch for {name}"
    for name in contract.SLOTS:
        assert re.search(rf'^S_{name.upper()}: tl.constexpr = tl.constexpr\(contract.SLOT\["{name}"\]\)$', tk, re.M), name
    cpp = (src / "cpu.cpp").read_text()
    for text in (tk, cpp, (src / "__init__.py").read_text()):
        assert not re.search(r"\bK == \d|hyper \+ \d|hyper\[\d|code == \d|DECAY == \d|struct Hyper \{|enum Kappa \{", text)
    for name in contract.KERNELS:
        if name not in contract.WHOLE_TENSOR:
            assert f"K == {name.upper()}" in cpp, f"cpu.cpp's direction has no branch for {name}"
    with pytest.raises(ValueError, match="missing"):
        contract.pack(beta1=0.9)


def test_every_kappa_with_a_kernel_names_a_contract_entry():
    for name in kappa.names():
        kernel = kappa.get(name).kernel()
        assert kernel is None or (kernel[0] in contract.KERNELS and isinstance(kernel[1], float | int)), name
    assert kappa.get("lp", p=1.0).kernel() == ("l1", 0.0) and kappa.get("l2").kernel() == ("lp", 2.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU defaults")
@needs_cpp
def test_cpu_default_backend_is_the_cpp_kernel():
    from lionlib.optim import _resolve_backend

    l1, lp = kappa.get("l1"), kappa.get("lp", p=1.5)
    params = [torch.zeros(10), torch.zeros(3, 4)]
    assert _resolve_backend(params, l1, None, None) == "cpp"
    assert _resolve_backend(params, lp, None, None) == "foreach"  # whole-tensor K: no kernel
    assert _resolve_backend(params, l1, False, None) == "forloop"
    assert _resolve_backend(params, l1, True, None) == "foreach"
    assert _resolve_backend(params, l1, None, False) == "foreach"
    assert _resolve_backend(params, l1, None, True) == "cpp"


AOT_COMPILE = """
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lionlib.fused import contract, triton_kernel as k

def compile(fn, consts):
    ints = {"chunk": "i32"}
    tables = {"p_ptrs", "g_ptrs", "m_ptrs", "c_ptrs", "keys", "sizes", "chunk_tensor", "chunk_start"}
    sig = {n: "constexpr" if n in consts else ints.get(n, "*i64" if n in tables else "*fp32") for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(n),): v for n, v in consts.items()})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4, enable_fp_fusion=False)).asm["ptx"]
    assert "fma.rn.f32" in ptx and "div.full" not in ptx and "div.approx" not in ptx
    assert "ld.global.v4" in ptx or not consts.get("ALIGNED")  # 16-byte loads for aligned tensors

for K in range(len(contract.KERNELS)):
    for dt in (tl.float32, tl.bfloat16):
        stores = range(len(contract.STORES)) if dt == tl.bfloat16 else [contract.STORE["nearest"]]
        for store in stores:
            compile(k.step_kernel, dict(ALIGNED=dt == tl.float32, K=K, DECAY=K % 3, STORE=store, MAXIMIZE=K % 2 == 0,
                                        INTERPRET=False, BLOCK=1024, P_DTYPE=dt, G_DTYPE=dt, M_DTYPE=tl.float32))
for total in (False, True):
    compile(k.norm_kernel, dict(MAXIMIZE=False, INTERPRET=False, SUM=total, BLOCK=1024,
                                P_DTYPE=tl.float16, G_DTYPE=tl.float16, M_DTYPE=tl.float32))
"""


@needs_triton
def test_kernels_compile_for_cuda():
    """Compile every kernel variant to PTX for an sm_90 GPU (no GPU needed), in a process without
    TRITON_INTERPRET: catches what the interpreter does not check (types, constexpr use), and that
    the IEEE fma/division survive (no approximate division), and that aligned tensors get vector loads."""
    import subprocess
    import sys

    try:
        from triton.backends import backends
    except ImportError:
        pytest.skip("this Triton has no backend registry")
    if "nvidia" not in backends:
        pytest.skip("Triton's CUDA backend is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", AOT_COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


@needs_triton
def test_triton_unaligned_dense_tensors():
    """Dense views at an odd offset (not 16-byte aligned) take the kernel's unaligned variant."""
    K = kappa.get("l1")
    hyper = dict(kappa=K, lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1, implicit_decay=False, maximize=False)
    flat = torch.randn(5000, device=DEVICE)
    params = [flat[1:2049], flat[2051:4999].view(4, 737)]
    grads = [torch.randn(2048, device=DEVICE), torch.randn(4, 737, device=DEVICE)[:, :]]
    exp_avgs = [torch.randn_like(p) for p in params]
    assert fused._split("triton", params, grads, exp_avgs)[0].keys() == {(params[0].device, FP32, FP32, FP32, "nearest", False)}
    ref_params, ref_exp_avgs = [p.clone() for p in params], [m.clone() for m in exp_avgs]
    flat_before = flat.clone()
    triton_step(params, grads, exp_avgs, **hyper)
    reference_step(ref_params, grads, ref_exp_avgs, **hyper)
    assert_same(params, ref_params, exact=True)
    assert_same(exp_avgs, ref_exp_avgs, exact=True)
    for i in (0, 2049, 2050, 4999):  # untouched around the views
        assert flat[i] == flat_before[i]


@cpu_only
@needs_cpp
def test_benchmark_baseline_c_pass_does_the_kernels_work():
    """benchmarks/baselines.cpp's plain OpenMP Lion pass, the yardstick of bench_step.py, computes
    exactly what the kernel computes (so "share of the C pass" compares equal work), and the
    triad computes a = b + s c."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bandwidth import Baselines

    base = Baselines(100_003, threads=2)
    base.m.copy_(0.1 * torch.randn(base.n))
    p, g, m = base.p.clone(), base.g.clone(), base.m.clone()
    base.lion_pass()
    from lionlib.fused import cpu as fused_cpu

    fused_cpu.step([p], [g], [m], code=contract.CODE["l1"], implicit=False, hyper=base.h)
    assert torch.equal(p, base.p) and torch.equal(m, base.m)
    expected = base.g + 0.5 * base.m
    base.triad(nontemporal=True)
    assert torch.equal(base.p, expected)


@cpu_only
@needs_cpp
def test_a_contract_entry_without_arithmetic_fails_the_cpp_build(monkeypatch, tmp_path):
    """Adding a K is one table entry plus its arithmetic: an entry whose arithmetic is missing
    stops the C++ build with a message saying where to add it (the switch and the header are
    generated from the table, so nothing else needs editing)."""
    from lionlib.fused import cpu as fused_cpu

    monkeypatch.setenv("LIONLIB_CACHE_DIR", str(tmp_path))
    kernels = (*contract.KERNELS, "softsign")
    monkeypatch.setattr(contract, "KERNELS", kernels)
    monkeypatch.setattr(contract, "CODE", {name: code for code, name in enumerate(kernels)})
    header = contract.c_header()
    assert f"SOFTSIGN = {len(kernels) - 1}" in header and "X(SOFTSIGN)" in header
    with pytest.raises(fused_cpu.FusedCpuUnavailable, match="no arithmetic for this kernel code"):
        fused_cpu.build(fused_cpu.SOURCE, headers={fused_cpu.HEADER: header}, prefix="softsign")
