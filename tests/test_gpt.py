"""Tests of the GPT data, model and trainer (lionlib.experiments.gpt, lionlib.experiments.gpt_data) on CPU.

The tiny Shakespeare file comes from the offline copy in ../shared/data (see its README).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lionlib.companion import paths
from lionlib.experiments import engine, gpt_train, specs
from lionlib.experiments.gpt import load_model, sample_text
from lionlib.experiments.gpt_model import GPT, GPTConfig
from lionlib.experiments.common import DataError
from lionlib.experiments.record import RunRecord
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
    return specs.gpt_spec("smoke", optimizer=optimizer, **overrides)


def train(spec, **kw):
    return gpt_train.train(spec, device="cpu", data_dir=str(SHARED_DATA), show_progress=False, **kw)


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
    # The paper scale's path (GPT-2's recipe on OpenWebText bins) at a tiny size: the same trainer and record.
    paper = specs.gpt_spec("paper")
    assert paper.model == "gpt2_124m" and paper.dataset == "openwebtext" and paper.grad_accum == 4
    tiny = specs.with_(paper, model="gpt_tiny", steps=4, warmup=1, batch_size=8, grad_accum=2, eval_every=2,
                       eval_batches=1, final_eval_batches=1, monitor_every=1)
    rec = gpt_train.train(tiny, device="cpu", data=data, show_progress=False)
    assert rec.data["vocab_size"] == 257 and rec.data["n_train"] == len(data.train)
    assert np.isfinite(rec.final["test_loss"]) and rec.eval["step"] == [2, 4] and rec.spec.scale == "paper"


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
    (opt,) = engine.make_optimizers(model.named_parameters(), "adamw", 1e-3, 0.1, (0.9, 0.999))
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
        (opt,) = engine.make_optimizers(m.named_parameters(), opt_name, 1e-3, 0.0, (0.9, 0.99), p)
        m(x, x)[1].backward()
        opt.step()
        steps[name] = {n: (q.detach() - model.state_dict()[n]) for n, q in m.named_parameters()}
    for n, d in steps["lion"].items():
        torch.testing.assert_close(steps["lp1"][n], d, rtol=0, atol=1e-9)
        assert abs(d.pow(2).mean().sqrt().item() - 1e-3) < 1e-6  # sign step: RMS = lr
        assert abs(steps["lp2"][n].pow(2).mean().sqrt().item() - 1e-3) < 1e-6


def test_cosine_schedule_with_warmup():
    f = lambda t: engine.lr_factor("cosine", t, 110, 10, 0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


def test_validation_and_test_streams_are_distinct(shakespeare):
    s = gpt_train.streams(shakespeare)
    assert len(s["val"]) + len(s["test"]) == len(shakespeare.val) and len(s["train"]) == len(shakespeare.train)
    assert (len(s["train"]), len(s["val"])) == (specs.SHAKESPEARE["n_train"], specs.SHAKESPEARE["n_val"])


# ------------------------------------------------------------------------------------------------- training


def test_loss_decreases_and_monitor_records(shakespeare):
    rec = train(smoke("lion", lr=2e-3, steps=150, eval_every=50, eval_batches=4, final_eval_batches=8, monitor_every=10))
    vals = rec.eval["val_loss"]
    assert rec.train["loss"][0] > 4.0 and rec.final["test_loss"] < 3.3 and vals == sorted(vals, reverse=True), vals
    mon = rec.monitor
    assert set(mon["constraint"]) == {n for n, p in rec.model.named_parameters() if p.dim() == 2}
    assert max(mon["box_violation"]) <= 1e-9  # the phase-1 bound holds at every record
    text = sample_text(rec.model, shakespeare, n_tokens=30)
    assert len(text) == 31 and set(text) <= set(shakespeare.decode(range(65)))


def test_checkpoint_resume_is_identical(shakespeare, tmp_path, monkeypatch):
    """Stopped at step 6 and resumed: the same model, and the same record (monitor rows included;
    wall time excepted, and `env.resumed` says it was resumed)."""
    spec = smoke("lion", steps=12, warmup=3, eval_every=4, monitor_every=3, final_eval_batches=2)
    straight = train(spec, out_dir=tmp_path / "a")
    assert train(spec, out_dir=tmp_path / "b", stop_at=6) is None
    real, steps = gpt_train.lr_factor, []
    monkeypatch.setattr(gpt_train, "lr_factor", lambda sched, step, *a: (steps.append(step), real(sched, step, *a))[1])
    resumed = train(spec, out_dir=tmp_path / "b", resume=True)
    assert steps == list(range(6, 12))  # continued from the checkpoint, not trained again
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    a, b = straight.numbers(), resumed.numbers()
    assert (a["env"].pop("resumed"), b["env"].pop("resumed")) == (0, 1)
    assert a == b and len(b["monitor"]["step"]) > 0
    reloaded = load_model(tmp_path / "b" / "checkpoint.pt", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), straight.model.state_dict().values()))


def test_ddp_two_gloo_processes_match_one_process(shakespeare, tmp_path):
    """torchrun with 2 CPU processes (gloo), 4 sequences each, against 1 process with all 8."""
    args = ["--scale", "smoke", "--optimizer", "adamw", "--steps", "8", "--eval-every", "4", "--final-eval-batches", "2",
            "--monitor-every", "0", "--data-dir", str(SHARED_DATA), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lionlib.experiments.gpt", *args, "--out-dir", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=paths.REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(smoke("adamw", steps=8, eval_every=4, final_eval_batches=2, monitor_every=0))
    ddp = RunRecord.loads((tmp_path / "ddp" / "result.json").read_text())
    assert ddp.env["world_size"] == 2 and single.env["world_size"] == 1
    ddp_state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert ddp.final["test_loss"] == pytest.approx(single.final["test_loss"], abs=1e-5)
    np.testing.assert_allclose(ddp.train["loss"], single.train["loss"], atol=1e-5)
