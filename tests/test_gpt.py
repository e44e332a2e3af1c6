"""Tests of the GPT data, model and trainer (lionlib.experiments.gpt, lionlib.experiments.gpt_data) on CPU.

The tiny Shakespeare file comes from the offline copy in ../shared/data (see its README).
"""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lionlib.companion import paths
from lionlib.experiments.gpt import (GPT, GPTConfig, RunResult, TrainConfig, load_model, lr_at, make_optimizer, preset,
                         sample_text, train)
from lionlib.experiments.common import DataError
from lionlib.experiments.gpt_data import (SHAKESPEARE_SHA256, data_root, get_batch, load_bins, load_shakespeare,
                              prepare_openwebtext, sha256_file, shakespeare_path)

# The offline copy: $LIONLIB_DATA_DIR if set (a worktree has no ../shared beside it), else ../shared/data.
SHARED_DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or paths.REPO.parent / "shared" / "data")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one intra-op thread is fastest, and extra threads spin on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def shakespeare():
    assert (SHARED_DATA / "tinyshakespeare" / "input.txt").exists(), f"offline data missing in {SHARED_DATA}"
    return load_shakespeare(SHARED_DATA)


def smoke(optimizer="lion", **overrides):
    model_cfg, cfg = preset("smoke", optimizer)
    return model_cfg, replace(cfg, data_dir=str(SHARED_DATA), **overrides)


# ------------------------------------------------------------------------------------------------- data


def test_shakespeare_split_vocab_and_checksum(shakespeare, tmp_path, monkeypatch):
    text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    assert len(shakespeare.train) + len(shakespeare.val) == len(text) == 1_115_394
    assert len(shakespeare.train) == int(0.9 * len(text))  # first 90% train, last 10% val
    assert shakespeare.vocab_size == 65
    assert shakespeare.decode(shakespeare.val[:200]) == text[len(shakespeare.train) : len(shakespeare.train) + 200]
    assert shakespeare.encode(text[:50]) == shakespeare.train[:50].tolist()

    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path))  # the env var is read at call time
    assert data_root() == tmp_path.resolve()
    with pytest.raises(DataError, match="tiny Shakespeare not found"):
        shakespeare_path(download=False)
    bad = tmp_path / "tinyshakespeare" / "input.txt"
    bad.parent.mkdir()
    bad.write_text(text[:-1] + "?", encoding="utf-8")  # one character changed
    assert sha256_file(bad) != SHAKESPEARE_SHA256
    with pytest.raises(DataError, match="sha256"):
        load_shakespeare()
    assert bad.is_file()  # the user's file is reported, never deleted


class ByteTokenizer:
    """Stand-in for tiktoken's GPT-2 BPE (which needs the internet): UTF-8 bytes, eot = 256."""

    name, vocab_size, eot = "bytes", 257, 256

    def encode_batch(self, texts):
        return [list(t.encode()) for t in texts]

    def decode(self, ids):
        return bytes(int(i) for i in ids if i < 256).decode(errors="replace")


def test_openwebtext_prepare_path_on_tiny_text(tmp_path):
    text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:40_000]
    docs = [{"text": t} for t in text.split("\n\n")]
    out = prepare_openwebtext(tmp_path / "owt", docs=docs, tokenizer=ByteTokenizer(), val_fraction=0.1, chunk=16)
    data = load_bins(out, tokenizer=ByteTokenizer())
    assert isinstance(data.train, np.memmap) and data.train.dtype == np.uint16
    assert data.vocab_size == 257
    # every document lands in exactly one split, followed by the end-of-text token
    assert len(data.train) + len(data.val) == sum(len(d["text"].encode()) + 1 for d in docs)
    assert (data.val == 256).sum() == round(0.1 * len(docs)) and (data.train == 256).sum() == len(docs) - round(0.1 * len(docs))
    first_val_doc = ByteTokenizer().decode(data.val[: int(np.argmax(data.val == 256))])
    assert {"text": first_val_doc} in docs
    # the trainer samples the memory-mapped bins through the same get_batch as Shakespeare
    x, y = get_batch(data.train, 4, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    model_cfg, cfg = smoke(max_steps=4, eval_interval=2, final_eval_batches=1, monitor_interval=0)
    result = train(model_cfg, cfg, data=data)
    assert result.model_config["vocab_size"] == 257 and np.isfinite(result.final_val_loss)


def test_get_batch_rows_slice_the_same_global_batch(shakespeare):
    full = get_batch(shakespeare.train, 8, 16, np.random.default_rng([0, 7]))
    halves = [get_batch(shakespeare.train, 8, 16, np.random.default_rng([0, 7]), rows=r) for r in (slice(0, 4), slice(4, 8))]
    assert torch.equal(torch.cat([h[0] for h in halves]), full[0])
    assert torch.equal(torch.cat([h[1] for h in halves]), full[1])


# ------------------------------------------------------------------------------------------------- model


def test_forward_shapes_initial_loss_and_generation(shakespeare):
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=65, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    x, y = get_batch(shakespeare.train, 3, 16, np.random.default_rng(0))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 65) and loss.shape == ()
    assert abs(loss.item() - np.log(65)) < 0.1  # small init: nearly uniform predictions
    assert model(x)[1] is None
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    out = model.generate(x[:, :5], 20, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 25) and torch.equal(out[:, :5], x[:, :5])
    again = model.generate(x[:, :5], 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(AssertionError):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_weight_decay_on_2d_weights_only():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8, bias=True))
    opt = make_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.1))
    decayed = {n for g in opt.param_groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert decayed == {n for n, p in model.named_parameters() if p.dim() == 2}
    assert "transformer.wte.weight" in decayed and not any("ln" in n or "bias" in n for n in decayed)


def test_lion_lp_steps_have_lions_size_for_every_p():
    """With the n^(1-1/p) scaling, the first step (zero momentum, no decay) has RMS exactly lr at
    p = 2 (c / ||c||_2 * sqrt(n)), and at p = 1 Lion-lp is Lion itself."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8))
    x = torch.randint(0, 11, (2, 8))
    steps = {}
    for name, opt_name, p in (("lion", "lion", 1.0), ("lp1", "lion_lp", 1.0), ("lp2", "lion_lp", 2.0)):
        m = GPT(model.cfg)
        m.load_state_dict(model.state_dict())
        opt = make_optimizer(m, TrainConfig(optimizer=opt_name, p=p, lr=1e-3, weight_decay=0.0))
        for g in opt.param_groups:
            g["lr"] = 1e-3 * g["lr_scale"]
        m(x, x)[1].backward()
        opt.step()
        steps[name] = {n: (q.detach() - model.state_dict()[n]) for n, q in m.named_parameters()}
    for n, d in steps["lion"].items():
        torch.testing.assert_close(steps["lp1"][n], d, rtol=0, atol=1e-9)
        assert abs(d.pow(2).mean().sqrt().item() - 1e-3) < 1e-6  # sign step: RMS = lr
        assert abs(steps["lp2"][n].pow(2).mean().sqrt().item() - 1e-3) < 1e-6


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55) and lr_at(110, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 120))


# ------------------------------------------------------------------------------------------------- training


def test_loss_decreases_and_monitor_records(shakespeare):
    model_cfg, cfg = smoke("lion")
    result = train(model_cfg, cfg, data=shakespeare)
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert vals[0] > 4.0 and result.final_val_loss < vals[0] - 1.0, vals
    mon = result.monitor
    assert set(mon["name"]) == {n for n, p in result.model.named_parameters() if p.dim() == 2}
    assert (mon["constraint"] <= mon["bound"] + 1e-9).all()  # the phase-1 bound holds at every record
    text = sample_text(result.model, shakespeare, n_tokens=30)
    assert len(text) == 31 and set(text) <= set(shakespeare.decode(range(65)))


def test_checkpoint_resume_is_identical(shakespeare, tmp_path, monkeypatch):
    model_cfg, cfg = smoke("lion", max_steps=12, warmup_steps=3, eval_interval=4, log_interval=2,
                           monitor_interval=3, final_eval_batches=2)
    straight = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "a")), data=shakespeare)
    half = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "b"), stop_at=6), data=shakespeare)
    assert np.isnan(half.final_val_loss)
    from lionlib.experiments import gpt

    real, steps = gpt.lr_at, []
    monkeypatch.setattr(gpt, "lr_at", lambda step, c: (steps.append(step), real(step, c))[1])
    resumed = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "b"), resume=True), data=shakespeare)
    assert steps == list(range(6, 12))  # continued from the checkpoint, not trained again
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.history == straight.history and resumed.final_val_loss == straight.final_val_loss
    reloaded = load_model(tmp_path / "b" / "checkpoint.pt", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), straight.model.state_dict().values()))
    saved = RunResult.from_json(tmp_path / "b" / "result.json")
    assert RunResult.from_json(tmp_path / "b").history == saved.history  # the run folder works too
    assert saved.history == straight.history and len(saved.monitor) == len(resumed.monitor) > 0


def test_ddp_two_gloo_processes_match_one_process(shakespeare, tmp_path):
    """torchrun with 2 CPU processes (gloo), 4 sequences each, against 1 process with all 8."""
    args = ["--scale", "smoke", "--optimizer", "adamw", "--max_steps", "8", "--eval_interval", "4",
            "--final_eval_batches", "2", "--data_dir", str(SHARED_DATA), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lionlib.experiments.gpt", *args, "--out_dir", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=paths.REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_cfg, cfg = smoke("adamw", max_steps=8, eval_interval=4, final_eval_batches=2)
    single = train(model_cfg, cfg, data=shakespeare)
    ddp = RunResult.from_json(tmp_path / "ddp" / "result.json")
    assert ddp.world_size == 2 and single.world_size == 1
    ddp_state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert ddp.final_val_loss == pytest.approx(single.final_val_loss, abs=1e-5)
    train_losses = lambda r: [h["train_loss"] for h in r.history if "train_loss" in h]  # noqa: E731
    np.testing.assert_allclose(train_losses(ddp), train_losses(single), atol=1e-5)
