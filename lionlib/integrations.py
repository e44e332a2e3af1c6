"""lionlib's optimizers in Hugging Face `transformers.Trainer`.

    from transformers import Trainer, TrainingArguments
    from lionlib.integrations import hf_optimizer

    args = TrainingArguments("out", learning_rate=1e-4, weight_decay=1.0)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      optimizer_cls_and_kwargs=hf_optimizer(args, "lion"))

Trainer then builds the optimizer itself, as it does its own: two param groups, with
`args.weight_decay` on the weights and 0 on biases and norm layers, and its learning-rate schedule
(warmup, decay) on top. The learning rate is `args.learning_rate`; the betas are lionlib's
((0.9, 0.99)), not `args.adam_beta1/2`, which are AdamW's. Lion's authors (Chen et al. 2023)
advise a learning rate 3-10x below AdamW's and a weight decay as many times larger; with decay
lambda, Lion keeps every decayed weight in the box |x| <= 1 / lambda (PAPER.md section 3). Set both
in `TrainingArguments`.

Only `args.learning_rate` is read, so this module never imports transformers (`pip install
"lionlib[hf]"` brings it and accelerate, which Trainer needs).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from lionlib.optim import Lion, LionK

__all__ = ["hf_optimizer", "OPTIMIZERS"]

# Optimizers that take any parameter shape (Muon takes only matrices; Trainer's groups hold biases).
OPTIMIZERS: dict[str, type[Optimizer]] = {"lion": Lion, "lionk": LionK}


def hf_optimizer(args: Any, name: str = "lion", **kwargs: Any) -> tuple[type[Optimizer], dict[str, Any]]:
    """(optimizer class, keyword arguments) for `Trainer(optimizer_cls_and_kwargs=...)`.

    `args` is the `TrainingArguments` (its `learning_rate` becomes `lr`); `kwargs` go to the
    optimizer (`betas`, `kappa="l2"` for LionK, `foreach`, `fused`, `momentum_dtype`...).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} for Trainer; choose one of {sorted(OPTIMIZERS)}")
    for key in ("weight_decay", "lr", "params"):
        if key in kwargs:
            where = {"weight_decay": "TrainingArguments.weight_decay (Trainer sets it per param group)",
                     "lr": "TrainingArguments.learning_rate (Trainer's schedule starts from it)",
                     "params": "nowhere: Trainer passes the model's parameters"}[key]
            raise ValueError(f"hf_optimizer: {key}= is not an optimizer option here; set it in {where}")
    return OPTIMIZERS[name], {"lr": float(args.learning_rate), **kwargs}
