"""The fused Lion-K update on CPU: a small C++ kernel (`cpu.cpp`), built on first use.

Why C++ and not `torch.compile`: the update is memory bound, so it must read p, g, m once and
write p, m once, over every tensor of a group in one call, with eager torch's rounding (eager
fuses `add_(b, alpha=s)` into one fma; inductor cannot express an fma, and emulating it costs
bandwidth). The kernel is plain C++ with a C ABI and no torch headers, so building it takes a
few seconds with the system compiler (`$CXX`, default `c++`), once per machine: the library is
cached under `$LIONLIB_CACHE_DIR` (default `~/.cache/lionlib`), keyed by the source, the
generated contract header (`contract.c_header()`: kernel codes and scalar slots), the compiler,
its flags and the CPU. It is called through ctypes, which releases the GIL.

Threads come from OpenMP. torch's CPU wheels load `libgomp.so.1` first, and the dynamic loader
reuses a loaded library of the same soname, so the kernel runs on torch's own warm thread pool:
no thread start-up per step, and no competition with torch's workers still spinning after the
backward pass (separate threads measured up to 9x slower at 1M parameters on 2 cores).

Without a working compiler `library()` raises `FusedCpuUnavailable` with the compiler's message;
`lionlib.fused.cpp_available` then warns once, and `cpp_step` takes the foreach path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from lionlib.fused import contract

__all__ = ["FusedCpuUnavailable", "library", "build", "DTYPE_CODES", "DTYPE_PAIRS", "step"]

SOURCE = Path(__file__).with_name("cpu.cpp")
# -march=native: vector fma for this CPU (the cache key includes the CPU). -ffp-contract=off:
# only the explicit std::fma calls fuse, as in eager torch. -fno-math-errno: lets sqrt vectorise.
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC", "-fopenmp")
DTYPE_CODES = {getattr(torch, name): code for code, name in enumerate(contract.DTYPES)}
HEADER = "lionk_contract.h"
# (param, momentum) storage dtypes the kernel has code for (its `pick`); grads have the param's dtype.
DTYPE_PAIRS = {
    (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32),
    (torch.float16, torch.float16), (torch.float16, torch.float32), (torch.float64, torch.float64),
}
_I64P = ctypes.POINTER(ctypes.c_int64)


class FusedCpuUnavailable(RuntimeError):
    """The C++ kernel could not be built or loaded (no compiler, or it failed)."""


def cache_dir() -> Path:
    if "LIONLIB_CACHE_DIR" in os.environ:
        return Path(os.environ["LIONLIB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lionlib"


def _cpu_id() -> str:
    """What -march=native depends on: the CPU model and feature flags (Linux), else the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))


def _compiler_id(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FusedCpuUnavailable(f"no C++ compiler {compiler!r} ({e}); set $CXX to one") from e
    return out.stdout


def _build(compiler: str, source: Path, headers: dict[str, str], flags: tuple[str, ...], path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target, then rename: concurrent processes never load a partial file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise FusedCpuUnavailable(f"cannot write the kernel cache {path.parent} ({e}); set $LIONLIB_CACHE_DIR") from e
    try:
        with tempfile.TemporaryDirectory() as include:  # the generated headers, for this build only
            for name, text in headers.items():
                Path(include, name).write_text(text)
            cmd = [compiler, *flags, f"-I{include}", str(source), "-o", tmp]
            out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise FusedCpuUnavailable(f"building {source.name} failed:\n{out.stderr.strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build(source: Path, *, headers: dict[str, str] | None = None, flags: tuple[str, ...] = FLAGS,
          prefix: str = "fused_cpu") -> ctypes.CDLL:
    """`source` built (once, into the cache) as a shared library with `flags` and the generated
    `headers` ({file name: text}), and loaded. Also builds the benchmarks' C baselines, so they are
    compiled exactly like the kernel."""
    compiler = os.environ.get("CXX", "c++")
    headers = headers or {}
    parts = [source.read_bytes(), " ".join(flags).encode(), _compiler_id(compiler).encode(), _cpu_id().encode()]
    parts += [f"{name}\0{text}".encode() for name, text in sorted(headers.items())]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    path = cache_dir() / f"{prefix}-{key}.so"
    if not path.exists():
        _build(compiler, source, headers, flags, path)
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        raise FusedCpuUnavailable(f"loading {path} failed: {e}") from e


@functools.cache
def library() -> ctypes.CDLL:
    """The built kernel library, compiling it into the cache on first use."""
    lib = build(SOURCE, headers={HEADER: contract.c_header()})
    lib.lionk_step.argtypes = [ctypes.c_int64, _I64P, _I64P, _I64P, _I64P, _I64P, _I64P, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_int]
    lib.lionk_step.restype = ctypes.c_int
    return lib


def step(p_list, g_list, m_list, *, code: int, implicit: bool, hyper, threads: int | None = None,
         comps=None, keys=None) -> None:
    """One step over dense CPU tensors that share (param dtype, momentum dtype); grads have the
    param's dtype. `hyper` is `lionlib.fused._scalars(...)["hyper"]` (fp32-rounded; for fp64
    tensors `["hyper64"]`, unrounded) with maximize folded in. `comps` (Kahan buffers, the
    params' dtype) or `keys` (stochastic rounding: one 32-bit key per tensor) choose the store."""
    n = len(p_list)
    store = contract.STORE["kahan" if comps is not None else "stochastic" if keys is not None else "nearest"]
    comp_ptrs = [t.data_ptr() for t in comps] if comps is not None else [0] * n
    table = torch.tensor([t.data_ptr() for t in (*p_list, *g_list, *m_list)] + comp_ptrs + list(keys or [0] * n)
                         + [t.numel() for t in p_list], dtype=torch.int64)
    base = table.data_ptr()
    ptr = lambda i: ctypes.cast(base + 8 * i * n, _I64P)  # noqa: E731  (row i of the table)
    if len(hyper) != len(contract.SLOTS):
        raise ValueError(f"fused_cpu: hyper has {len(hyper)} values, the contract {len(contract.SLOTS)} slots")
    hyper_arr = (ctypes.c_double * len(hyper))(*hyper)
    status = library().lionk_step(
        n, ptr(0), ptr(1), ptr(2), ptr(3), ptr(4), ptr(5), DTYPE_CODES[p_list[0].dtype], DTYPE_CODES[m_list[0].dtype],
        store, code, int(implicit), hyper_arr, threads or torch.get_num_threads(),
    )
    if status != 0:
        raise ValueError(f"fused_cpu: no kernel for K code {code} with dtypes {p_list[0].dtype}/{m_list[0].dtype}, "
                         f"store {contract.STORES[store]}")
