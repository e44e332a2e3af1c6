#!/usr/bin/env bash
# The GPU check of issue 5, for a session that is lent a GPU: one short script, run once.
#   1. tests/test_fused.py on CUDA (the Triton kernels compiled, not interpreted);
#   2. benchmarks/bench_step.py on CUDA from 1M to 256M parameters.
# Writes everything into $OUT (default benchmarks/results): the pytest log, the environment, and
# the benchmark JSON that notebooks/09_fused_update.py plots (commit it under benchmarks/results/).
#
#   OUT=/tmp/out bash benchmarks/gpu_check.sh          # PYTHON=... to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset TRITON_INTERPRET

$PY - <<'EOF' 2>&1 | tee "$OUT/gpu_env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for mod in ("triton", "lion_pytorch", "pytorch_optimizer"):
    try:
        print(mod, __import__(mod).__version__)
    except Exception as e:  # noqa: BLE001
        print(mod, "missing:", e)
EOF

# Tests first (about a minute): the benchmark is only meaningful if the kernel is right.
timeout 300 $PY -m pytest tests/test_fused.py -q -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/test_fused_cuda.txt"
test_rc=${PIPESTATUS[0]}

timeout 420 $PY benchmarks/bench_step.py --device cuda --sizes 1 4 16 64 256 --warmup 3 --repeats 4 \
    --out "$OUT/$($PY -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-"))')-cuda.json" \
    2>&1 | tee "$OUT/bench_cuda.txt"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$test_rc bench rc=$bench_rc"
exit $(( test_rc != 0 || bench_rc != 0 ))
