"""GPT runs for `lionlib.experiments.seeds.run_many`: a frozen, hashable description of one
`lionlib.experiments.gpt.train` run, so GPT seeds are cached, deterministic and trained side by side
like the CIFAR ones. The training itself is today's trainer, unchanged (`gpt.train`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from lionlib.experiments.gpt import TrainConfig, train
from lionlib.experiments.gpt_data import load_dataset_by_name
from lionlib.experiments.gpt_model import GPTConfig
from lionlib.experiments.seeds import CODE_VERSION, environment

__all__ = ["GptRun", "train_gpt"]


@dataclass(frozen=True)
class GptRun:
    """One GPT run: the model shape, the optimizer and the schedule. Evaluations every
    `max_steps // evals` steps give the early/final validation losses of the findings."""

    optimizer: str = "lion"  # "lion" | "lion_lp" | "adamw"
    p: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1.0  # on 2-D tensors only (gpt.param_groups)
    max_steps: int = 400
    warmup_steps: int = 40
    batch_size: int = 12
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    evals: int = 4  # evaluations before the final one, at 0, S/evals, 2S/evals, ...
    eval_batches: int = 20
    final_eval_batches: int = 50
    monitor_interval: int = 0
    dataset: str = "shakespeare_char"
    seed: int = 0
    data_dir: str | None = field(default=None, compare=False)

    def key(self) -> str:
        import hashlib
        import json

        d = {k: v for k, v in asdict(self).items() if k != "data_dir"}
        d["code_version"] = CODE_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]

    def configs(self) -> tuple[GPTConfig, TrainConfig]:
        model = GPTConfig(block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd)
        cfg = TrainConfig(dataset=self.dataset, data_dir=self.data_dir, optimizer=self.optimizer, p=self.p, lr=self.lr,
                          weight_decay=self.weight_decay, max_steps=self.max_steps, warmup_steps=self.warmup_steps,
                          batch_size=self.batch_size, eval_interval=max(1, self.max_steps // self.evals),
                          eval_batches=self.eval_batches, final_eval_batches=self.final_eval_batches,
                          log_interval=max(1, self.max_steps // 100), monitor_interval=self.monitor_interval,
                          seed=self.seed, device="cpu", compile=False, progress=False)
        return model, cfg

    def train(self) -> dict:
        return train_gpt(self)


_DATA: dict = {}


def train_gpt(run: GptRun) -> dict:
    if (run.dataset, run.data_dir) not in _DATA:
        _DATA[run.dataset, run.data_dir] = load_dataset_by_name(run.dataset, run.data_dir)
    t0 = time.perf_counter()
    res = train(*run.configs(), data=_DATA[run.dataset, run.data_dir])
    out = res.to_json()
    out.update(run=asdict(run), key=run.key(), kind="GptRun", seconds=time.perf_counter() - t0,
               environment=environment())
    return out
