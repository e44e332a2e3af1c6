"""The GPT from the command line: one run of a `GptSpec`, trained by `gpt_train.train` (the trainer
the notebooks use), its record written to `<out-dir>/result.json`; and what a trained model is for
(`load_model`, `sample_text`).

    python -m lionlib.experiments.gpt --scale cpu --optimizer lion --out-dir runs/gpt/lion
    torchrun --standalone --nproc_per_node 8 -m lionlib.experiments.gpt --scale paper --optimizer lion_lp --p 1.5

The `paper` scale is GPT-2 124M on OpenWebText: prepare the bins first (extra `owt`:
`python -c "from lionlib.experiments.gpt_data import prepare_openwebtext; prepare_openwebtext()"`).
`--help` lists every flag. A run writes `<out-dir>/checkpoint.pt` (every `--ckpt-every` steps, at
the end and on Ctrl-C) and `<out-dir>/result.json` when it finishes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lionlib.experiments import cli
from lionlib.experiments.checkpoint import CHECKPOINT, load_checkpoint
from lionlib.experiments.common import resolve_device
from lionlib.experiments.gpt_data import TokenData
from lionlib.experiments.gpt_model import GPT, GPTConfig
from lionlib.experiments.gpt_train import load_data, train
from lionlib.experiments.specs import GPT_MODELS, OPTIMIZERS, PRECISIONS, SCALES, SCHEDULES, GptSpec, gpt_spec

__all__ = ["main", "load_model", "sample_text"]


def load_model(ckpt_path: str | os.PathLike, device: str = "auto") -> GPT:
    """The model of a checkpoint written by `gpt_train.train`: the run's folder or its checkpoint file."""
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / CHECKPOINT
    ckpt = load_checkpoint(path, "cpu", keys=("model", "model_config"))
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device))


@torch.no_grad()
def sample_text(model: GPT, data: TokenData, prompt: str = "\n", n_tokens: int = 300, seed: int = 0,
                temperature: float = 0.8, top_k: int | None = 200) -> str:
    """A reproducible text sample (nanoGPT's sample.py defaults)."""
    model.eval()
    device = next(model.parameters()).device
    idx = torch.tensor([data.encode(prompt)], dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, n_tokens, temperature=temperature, top_k=top_k, generator=g)
    return data.decode(out[0].tolist())


def main(argv: list[str] | None = None):
    """`python -m lionlib.experiments.gpt [--scale cpu] [--optimizer lion] [--lr ...] ...`: one run
    (under torchrun: one run over all processes)."""
    return cli.run_command("python -m lionlib.experiments.gpt", argv, GptSpec, gpt_spec, train, tuple(SCALES["gpt"]),
                           lambda spec, data_dir: load_data(spec.dataset, data_dir), main.__doc__,
                           choices=dict(optimizer=OPTIMIZERS["gpt"], model=tuple(GPT_MODELS), precision=PRECISIONS,
                                        schedule=SCHEDULES, role=("tune", "eval"),
                                        dataset=("shakespeare_char", "openwebtext")))


if __name__ == "__main__":
    main()
