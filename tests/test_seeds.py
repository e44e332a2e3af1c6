"""lionlib.experiments.seeds / gpt_seeds / nets: cached, deterministic runs, side by side equal to alone."""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lionlib.experiments import nets, seeds
from lionlib.experiments.common import OFFLINE_DATA
from lionlib.experiments.gpt_seeds import GptRun

DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or OFFLINE_DATA)  # the offline copy (CIFAR-10 JPEG, tiny Shakespeare)
needs_data = pytest.mark.skipif(not (DATA / "cifar10-jpeg").is_dir(), reason="offline CIFAR-10 copy missing")
TINY = dict(arch_kw=(("widths", (4, 8, 8)),), epochs=1, batch_size=20, train_per_class=4, test_per_class=2,
            data_dir=str(DATA))


def test_conv_matches_conv2d():
    torch.manual_seed(0)
    c = nets.Conv(3, 5, 3, stride=2)
    ref = torch.nn.Conv2d(3, 5, 3, 2, 1, bias=False)
    ref.weight.data.copy_(c.weight.data.view(5, 3, 3, 3))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(c(x), ref(x))


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_nets_shapes(arch):
    m = nets.build(arch, **({"widths": (4, 8)} if arch == "resnet" else {"dim": 16, "depth": 1, "heads": 2}))
    assert m(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert all(b.dim() <= 1 for b in m.buffers())  # batch norm: running statistics only
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("mlp")


def test_key_covers_the_configuration_but_not_the_data_location():
    r = seeds.CifarRun()
    assert r.key() == replace(r, data_dir="/elsewhere").key()
    for change in (dict(seed=1), dict(lr=2e-3), dict(p=1.5), dict(bf16=False), dict(arch_kw=(("widths", (4,)),))):
        assert replace(r, **change).key() != r.key()
    g = GptRun()
    assert replace(g, seed=1).key() != g.key() and replace(g, data_dir="x").key() == g.key()


def test_lion_lp_groups_are_per_tensor_with_the_step_scale():
    from lionlib.optim import lp_scale

    m = nets.build("resnet", widths=(4, 8))
    (opt,) = seeds.make_optimizer(m, seeds.CifarRun(optimizer="lion_lp", p=2.0, lr=1e-3, wd=1.0))
    for g, (n, p) in zip(opt.param_groups, m.named_parameters()):
        assert g["params"] == [p]
        s = lp_scale(p.numel(), 2.0)
        assert g["lr"] == pytest.approx(1e-3 * s)
        assert g["weight_decay"] == (pytest.approx(1.0 / s) if p.dim() >= 2 else 0.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        seeds.make_optimizer(m, seeds.CifarRun(optimizer="sgd"))


@needs_data
def test_side_by_side_equals_alone_and_the_cache_is_reused(tmp_path):
    runs = [seeds.CifarRun(seed=s, optimizer=o, **TINY) for s, o in ((0, "lion"), (1, "lion_lp"))]
    runs[1] = replace(runs[1], p=1.5)
    par = seeds.run_many(runs, workers=2, cache_dir=tmp_path, progress=False)
    alone = seeds.run_many(runs, workers=0, cache_dir=tmp_path, refresh=True, progress=False)
    for a, b in zip(par, alone):  # bit-identical: deterministic whichever process trains it
        assert a["losses"] == b["losses"] and a["history"] == b["history"]
    path = seeds.cache_path(runs[0], tmp_path)
    stamp = path.stat().st_mtime_ns
    again = seeds.run_many(runs, workers=2, cache_dir=tmp_path, progress=False)
    assert path.stat().st_mtime_ns == stamp  # read back, not retrained
    assert again[0]["losses"] == json.loads(path.read_text())["losses"] == alone[0]["losses"]
    assert par[0]["losses"] != par[1]["losses"]


@needs_data
def test_muon_keeps_the_spectral_bound_on_the_resnet(tmp_path):
    run = seeds.CifarRun(optimizer="muon", lr=0.05, wd=2.0, monitor_every=1, **TINY)
    (res,) = seeds.run_many([run], workers=0, cache_dir=tmp_path, progress=False)
    import pandas as pd

    mon = pd.DataFrame(res["monitor"])
    assert (mon.kappa == "nuclear").all() and len(mon.name.unique()) >= 5
    assert (mon.constraint <= mon.bound * (1 + 1e-5)).all()


@pytest.mark.skipif(not (DATA / "tinyshakespeare").is_dir(), reason="offline tiny Shakespeare missing")
def test_gpt_run_is_todays_trainer(tmp_path):
    from lionlib.experiments.gpt import train

    run = GptRun(max_steps=6, warmup_steps=2, batch_size=4, n_layer=1, n_embd=16, block_size=16, evals=2,
                 eval_batches=1, final_eval_batches=2, data_dir=str(DATA))
    (res,) = seeds.run_many([run], workers=0, cache_dir=tmp_path, progress=False)
    torch.set_num_threads(1)
    direct = train(*run.configs())
    assert res["final_val_loss"] == direct.final_val_loss


@needs_data
def test_a_failed_run_writes_nothing(tmp_path):
    bad = seeds.CifarRun(optimizer="sgd", **TINY)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        seeds.run_many([bad], workers=0, cache_dir=tmp_path, progress=False)
    assert not seeds.cache_path(bad, tmp_path).exists()
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's settings are restored
