"""The experiment engine (`lionlib.experiments.engine`, `store`, `specs`): batch norm in evaluation,
run records, bit-identical re-runs, the validation split, resume, and the paper path at a tiny size."""

import pytest
import torch
import torch.nn.functional as F

from lionlib.experiments import nets


def _trained(arch: str) -> torch.nn.Module:
    """A net after a few training steps on random images: its running statistics are its own."""
    torch.manual_seed(0)
    model = nets.build(arch, **({"widths": (4, 8, 8)} if arch == "resnet" else {"dim": 16, "depth": 1, "heads": 2}))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        x, y = torch.randn(32, 3, 32, 32) * 2 + 0.5, torch.randint(0, 10, (32,))
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    return model


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_test_accuracy_does_not_depend_on_order_or_batching(arch):
    """A test set sorted by class (as the JPEG copy is) and batched by 50 scores what the same images
    shuffled and batched by 37 score: evaluation uses running statistics, not each batch's own."""
    from lionlib.experiments.engine import evaluate_classifier

    model = _trained(arch)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(10).repeat_interleave(30)  # sorted by class: every batch of 30 holds one class
    x[y >= 5] //= 2  # classes differ in brightness, so per-batch statistics would erase a real signal
    sorted_ = evaluate_classifier(model, x, y, batch_size=30)
    perm = torch.randperm(300, generator=g)
    shuffled = evaluate_classifier(model, x[perm], y[perm], batch_size=37)
    assert sorted_[1] == shuffled[1]
    assert sorted_[0] == pytest.approx(shuffled[0], rel=1e-5)
    assert model.training  # evaluation puts the model back in training mode


def test_batch_norm_keeps_running_statistics():
    model = nets.build("resnet", widths=(4, 8))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.track_running_stats for m in bns)


def test_gpu_smoke_script_runs_its_cpu_fallback(tmp_path):
    """benchmarks/gpu_smoke.py on the CPU (fp32, eager): the fused-vs-for-loop check, every trainer, and
    torchrun with one process equal to in-process; it writes its checks and exits 0 only if all pass."""
    import json
    import os
    import sys
    from pathlib import Path

    data = Path(os.environ.get("LIONLIB_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if not (data / "cifar10-jpeg").is_dir():
        pytest.skip("offline data missing")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_smoke

    assert gpu_smoke.main(["--device", "cpu", "--steps", "20", "--out", str(tmp_path), "--data-dir", str(data)]) == 0
    checks = json.loads((tmp_path / "gpu_smoke.json").read_text())["checks"]
    assert len(checks) == 7 and all(c["ok"] for c in checks)
    assert {c["check"].split(":")[0] for c in checks} >= {"cifar resnet18", "cifar vit_s", "gpt", "distributed"}


def test_the_full_test_set_is_all_10000_images_in_class_order():
    """`n_test=None` evaluates on the whole CIFAR-10 test set (sorted by class in the JPEG copy, which
    the running-statistics evaluation above makes harmless); the validation split comes from the
    training images only."""
    import os
    from pathlib import Path

    from lionlib.experiments import cifar_train, specs

    data = Path(os.environ.get("LIONLIB_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if not (data / "cifar10-jpeg" / "test").is_dir():
        pytest.skip("offline data missing")
    spec = specs.cifar_spec("tiny", n_test=None)
    d = cifar_train.load_data(spec, str(data))
    x, y = d["test"]
    assert x.shape == (10_000, 3, 32, 32) and torch.bincount(y).tolist() == [1000] * 10 and d["info"]["n_test"] == 10_000
    assert (y.diff() >= 0).all()  # class order: a per-batch normalisation would see one class per batch
    assert len(d["train"][0]) == spec.n_train and len(d["val"][0]) == spec.n_val


def test_cifar_command_line_under_torchrun_trains_one_model_on_two_gloo_processes(tmp_path):
    """DDP through torchrun on the CPU (gloo): two processes, each with half of every global batch,
    write one record (rank 0) that says so. (Batch norm sees each rank's half batch, so the numbers
    are not those of one process; the GPT's DDP equality is in tests/test_gpt.py.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lionlib.experiments.record import RunRecord

    data = Path(os.environ.get("LIONLIB_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if not (data / "cifar10-jpeg").is_dir():
        pytest.skip("offline data missing")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "lionlib.experiments.cifar", "--scale", "tiny", "--data-dir", str(data), "--out-dir", str(tmp_path),
           "--no-progress", "--no-store", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = RunRecord.loads((tmp_path / "result.json").read_text())
    assert rec.env["world_size"] == 2 and rec.spec.scale == "tiny" and len(rec.train["loss"]) == rec.spec.steps
    assert all(v == v for v in rec.final.values())  # finite, not NaN


def test_measured_precision_reads_this_machines_benchmark(tmp_path, monkeypatch):
    import json

    from lionlib.experiments import engine

    monkeypatch.setattr(engine, "bench_results_dir", lambda: tmp_path)
    assert engine.measured_precision("resnet8") == "fp32"  # not measured here: fp32
    (tmp_path / engine.bench_file()).write_text(json.dumps({"summary": {"choice": {"resnet8": "bf16", "gpt_2x64": "fp32"}}}))
    assert [engine.measured_precision(m) for m in ("resnet8", "gpt_2x64", "vit")] == ["bf16", "fp32", "fp32"]
    assert engine.measured_precision("gpt_2x64", "cuda") == "bf16"
