"""`lionlib.integrations.hf_optimizer` in a real `transformers.Trainer` run, on a tiny GPT-2 built
from a local config (random weights, no download). Skipped where transformers is not installed
(`pip install "lionlib[hf]"`; the test extra includes it)."""

import subprocess
import sys

import pytest
import torch

from lionlib import Lion, LionK
from lionlib.integrations import hf_optimizer


def test_import_lionlib_never_imports_transformers():
    code = "import sys, lionlib, lionlib.integrations; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


class Args:
    learning_rate = 3e-4


def test_bad_options_name_where_to_set_them():
    assert hf_optimizer(Args(), "lionk", kappa="l2") == (LionK, {"lr": 3e-4, "kappa": "l2"})
    with pytest.raises(ValueError, match="TrainingArguments.weight_decay"):
        hf_optimizer(Args(), weight_decay=1.0)
    with pytest.raises(ValueError, match="TrainingArguments.learning_rate"):
        hf_optimizer(Args(), lr=1e-3)
    with pytest.raises(ValueError, match="choose one of"):
        hf_optimizer(Args(), "adam")


def tiny_gpt2(transformers):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def test_trainer_steps_with_lion(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'lionlib[hf]')")
    pytest.importorskip("accelerate", reason="Trainer needs accelerate (pip install 'lionlib[hf]')")
    model = tiny_gpt2(transformers)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (12, 16), generator=g)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        weight_decay=0.5, lr_scheduler_type="constant", max_grad_norm=0.0, use_cpu=True, report_to=[],
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   optimizer_cls_and_kwargs=hf_optimizer(args, "lion"))
    trainer.train()
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    assert isinstance(opt, Lion)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.5]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    # Lion's signature: without decay every coordinate moves by exactly +-lr per step, so after
    # 3 steps by an integer multiple of lr (AdamW's steps are not quantised like this).
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    moved = 0
    for n, p in model.named_parameters():
        if id(p) in no_decay:
            steps = (p.detach() - before[n]) / 1e-3
            assert torch.allclose(steps, steps.round(), atol=1e-2), n
            moved += int((steps.round().abs() == 3).sum())
    assert moved > 0
