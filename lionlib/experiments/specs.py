"""Run specs: one frozen, hashable description per task of everything that changes a run's numbers,
and, per task, the one place that maps a scale to sizes (`cifar_spec`, `gpt_spec`, `distributed_spec`).

A spec is a flat dataclass whose fields are the keys of the run record's `spec` (see
`lionlib.experiments.store`). Every field must be given (no defaults: a missing key is an error,
not a silent default); the scale functions fill them from `SCALES` and the caller's overrides.
`spec_hash(spec)` is the first 16 hex digits of the sha256 of the spec's canonical JSON (sorted
keys, no spaces, tuples as lists), so the same spec has the same hash on every machine.

What a spec leaves out is how a run is executed (device, `torch.compile`, threads, the data
folder): those do not change the numbers up to rounding, and are recorded in the record's `env`.
The precision (fp32 or bf16 autocast) does change them, so it is a spec key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace

from lionlib.experiments.common import ConfigError

__all__ = ["CifarSpec", "GptSpec", "DistributedSpec", "SPECS", "SCALES", "CIFAR_MODELS", "GPT_MODELS", "OPTIMIZERS",
           "PRECISIONS", "SCHEDULES", "ROLES",
           "canonical", "spec_hash", "spec_from_dict", "cifar_spec", "gpt_spec", "distributed_spec", "check_spec",
           "default_precision", "BETAS", "with_"]

ROLES = ("tune", "eval")
PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("cosine", "linear", "constant")
BETAS = {"adamw": (0.9, 0.999), "muon": (0.95, 0.95)}  # the rest (Lion family): (0.9, 0.99)

# name -> (nets architecture, its keyword arguments). Conv kernels are matrices (nets.Conv), so Muon
# and the spectral monitor see every layer as the matrix of the Muon follow-up's figure.
CIFAR_MODELS = {
    "resnet_tiny": ("resnet", dict(widths=(4, 8, 8))),
    "vit_tiny": ("vit", dict(dim=16, depth=1, heads=2)),
    "resnet8_narrow": ("resnet", dict(widths=(8, 16, 32))),  # notebook 07's earlier cpu net
    "resnet8": ("resnet", dict(widths=(16, 32, 64))),
    "vit": ("vit", dict(dim=32, depth=2, heads=4)),
    "resnet18": ("resnet", dict(widths=(64, 128, 256, 512), blocks=2)),
    "vit_s": ("vit", dict(dim=384, depth=12, heads=6, mlp=4)),
}
# name -> GPTConfig fields (vocab_size from the data set unless given).
GPT_MODELS = {
    "gpt_tiny": dict(block_size=32, n_layer=1, n_head=2, n_embd=16),
    "gpt_smoke": dict(block_size=32, n_layer=2, n_head=2, n_embd=32),
    "gpt_2x64": dict(block_size=64, n_layer=2, n_head=4, n_embd=64),
    "gpt_4x128": dict(block_size=64, n_layer=4, n_head=4, n_embd=128),
    "gpt2_124m": dict(block_size=1024, vocab_size=50304, n_layer=12, n_head=12, n_embd=768, bias=True),
}


@dataclass(frozen=True)
class _Common:
    task: str  # cifar, gpt or distributed
    scale: str  # the preset the sizes come from (smoke, tiny, cpu, paper)
    model: str  # a name of CIFAR_MODELS or GPT_MODELS
    optimizer: str  # lion, lion_lp (Lion-K with K = the lp norm, exponent p), adamw, muon, distributed_lion
    lr: float  # peak learning rate
    weight_decay: float  # decoupled decay lambda on tensors with >= 2 dims: Lion's box is ||x||_inf <= 1/lambda
    betas: tuple[float, float]  # momentum factors (Muon: its momentum is the first)
    p: float | None  # the p of Lion-lp (None for the other optimizers)
    schedule: str  # cosine, linear (decay to 0) or constant, after the warm-up
    warmup: int  # steps of linear warm-up
    steps: int  # optimizer steps
    batch_size: int  # global batch (images or sequences) per step
    n_train: int  # training images (GPT: tokens of the training stream; 0: the whole stream)
    n_val: int  # validation images held out of the training set (GPT: tokens of the validation stream)
    seed: int  # initialisation, data order, augmentation
    split_seed: int  # which training images are held out for validation
    role: str  # tune (tuning seeds, validation split) or eval (fresh evaluation seeds)
    precision: str  # fp32 or bf16 (autocast)
    eval_every: int  # evaluations every this many steps (and at the end)
    monitor_every: int  # constraint-monitor rows every this many steps (0: off)


@dataclass(frozen=True)
class CifarSpec(_Common):
    n_test: int | None  # None: the full 10,000-image test set
    channels_last: bool
    label_smoothing: float
    aux_lr: float  # Muon: AdamW lr of the 1-D tensors
    muon_exact: bool  # Muon: exact msign (SVD) or 5 Newton-Schulz steps


@dataclass(frozen=True)
class GptSpec(_Common):
    dataset: str
    grad_clip: float
    min_lr_ratio: float  # the cosine ends at lr * min_lr_ratio
    grad_accum: int
    eval_batches: int  # batches of each stream at a periodic evaluation
    final_eval_batches: int  # and at the end


@dataclass(frozen=True)
class DistributedSpec(_Common):
    dataset: str
    workers: int
    vote: str | None  # "majority" | "average" (optimizer distributed_lion); None for global Lion
    eval_batches: int
    final_eval_batches: int


SPECS = {"cifar": CifarSpec, "gpt": GptSpec, "distributed": DistributedSpec}
OPTIMIZERS = {"cifar": ("lion", "lion_lp", "adamw", "muon"), "gpt": ("lion", "lion_lp", "adamw"),
              "distributed": ("lion", "distributed_lion")}


def canonical(spec) -> str:
    """The canonical JSON of a spec (or of its dict): sorted keys, no spaces, tuples as lists."""
    d = asdict(spec) if not isinstance(spec, dict) else spec
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_hash(spec) -> str:
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:16]


def spec_from_dict(d: dict):
    """The spec a record holds (lists back to tuples); a missing or unknown key is a ConfigError."""
    cls = SPECS.get(d.get("task"))
    if cls is None:
        raise ConfigError(f"spec task {d.get('task')!r}: choose one of {', '.join(SPECS)}")
    names = {f.name for f in fields(cls)}
    if names != set(d):
        raise ConfigError(f"{d['task']} spec: missing keys {sorted(names - set(d))}, unknown keys {sorted(set(d) - names)}")
    return cls(**{k: tuple(_tuple(v)) if isinstance(v, list) else v for k, v in d.items()})


def _tuple(v):
    return [tuple(x) if isinstance(x, list) else x for x in v]


def check_spec(spec) -> None:
    """A ConfigError (one line) for a value out of its range, before any work."""
    bad = []
    ints = dict(steps=spec.steps, batch_size=spec.batch_size, eval_every=spec.eval_every)
    if spec.task == "cifar":  # the GPT's 0 means the whole stream
        ints["n_train"] = spec.n_train
    bad += [f"{k} {v!r} (want an integer >= 1)" for k, v in ints.items() if not (isinstance(v, int) and v >= 1)]
    bad += [f"{k} {v!r} (want an integer >= 0)" for k, v in dict(warmup=spec.warmup, n_train=spec.n_train, n_val=spec.n_val, seed=spec.seed,
            monitor_every=spec.monitor_every).items() if not (isinstance(v, int) and v >= 0)]
    if not (isinstance(spec.lr, (int, float)) and spec.lr > 0 and math.isfinite(spec.lr)):
        bad.append(f"lr {spec.lr!r} (want a finite number > 0)")
    if not spec.weight_decay >= 0:
        bad.append(f"weight_decay {spec.weight_decay!r} (want >= 0)")
    if len(spec.betas) != 2 or not all(0 <= b < 1 for b in spec.betas):
        bad.append(f"betas {spec.betas!r} (want two numbers in [0, 1))")
    if spec.optimizer not in OPTIMIZERS[spec.task]:
        bad.append(f"optimizer {spec.optimizer!r} (choose one of {', '.join(OPTIMIZERS[spec.task])})")
    if spec.optimizer == "lion_lp" and not (spec.p is not None and 1 <= spec.p <= 2):
        bad.append(f"p {spec.p!r} (Lion-lp wants 1 <= p <= 2)")
    models = CIFAR_MODELS if spec.task == "cifar" else GPT_MODELS
    if spec.model not in models:
        bad.append(f"model {spec.model!r} (choose one of {', '.join(models)})")
    for key, value, allowed in (("role", spec.role, ROLES), ("precision", spec.precision, PRECISIONS),
                                ("schedule", spec.schedule, SCHEDULES)):
        if value not in allowed:
            bad.append(f"{key} {value!r} (choose one of {', '.join(allowed)})")
    if isinstance(spec, CifarSpec) and spec.n_test is not None and not (isinstance(spec.n_test, int) and 10 <= spec.n_test <= 10_000):
        bad.append(f"n_test {spec.n_test!r} (want None for all 10,000, or 10 .. 10,000)")
    if isinstance(spec, GptSpec) and not (isinstance(spec.grad_accum, int) and spec.grad_accum >= 1
                                          and spec.batch_size % spec.grad_accum == 0):
        bad.append(f"grad_accum {spec.grad_accum!r} (want >= 1; batch_size {spec.batch_size} does not split evenly "
                   f"into grad_accum micro-steps)")
    if isinstance(spec, DistributedSpec) and not (spec.workers >= 1 and spec.batch_size % spec.workers == 0):
        bad.append(f"workers {spec.workers!r} (want >= 1, dividing batch_size {spec.batch_size})")
    if isinstance(spec, DistributedSpec) and (spec.vote is None) != (spec.optimizer == "lion"):
        bad.append(f"vote {spec.vote!r} (majority or average for distributed_lion, None for lion)")
    if bad:
        raise ConfigError(f"bad {spec.task} spec: " + "; ".join(bad))


def default_precision(device: str = "cpu") -> str:
    """bf16 autocast on CUDA; fp32 on the CPU. Whether bf16 autocast is faster on a CPU depends on the
    CPU (`benchmarks/bench_train.py` measures it and says which to choose: 0.28-0.42x on an AMD EPYC
    with AVX2 only, faster on CPUs with native bf16); fp32 keeps the numbers the same across CPUs,
    which bf16 autocast does not. A spec's `precision` is what a run used; every record says it."""
    return "bf16" if str(device).startswith("cuda") else "fp32"


# --------------------------------------------------------------------------------------------------
# Scales: the sizes of every task, written once. `n_train`/`n_val` of the GPT are token counts of
# the streams (tiny Shakespeare: 90 % train; the last 10 % split into validation and test halves).

SHAKESPEARE = dict(n_train=1_003_854, n_val=55_770)
SCALES = {
    "cifar": {
        "smoke": dict(model="resnet_tiny", steps=20, batch_size=20, n_train=180, n_val=20, n_test=100, eval_every=10,
                      monitor_every=2),
        "tiny": dict(model="resnet_tiny", steps=8, batch_size=16, n_train=90, n_val=10, n_test=50, eval_every=4,
                     monitor_every=1),
        "cpu": dict(model="resnet8", steps=1000, batch_size=64, n_train=4500, n_val=500, n_test=None, eval_every=100,
                    monitor_every=10),
        "paper": dict(model="resnet18", steps=17_400, batch_size=512, n_train=45_000, n_val=5_000, n_test=None,
                      eval_every=870, monitor_every=100, channels_last=True),  # 200 epochs of 87 steps (45,000 images)
    },
    "gpt": {
        "smoke": dict(model="gpt_smoke", steps=60, batch_size=8, eval_every=20, eval_batches=2, final_eval_batches=4,
                      monitor_every=5, **SHAKESPEARE),
        "tiny": dict(model="gpt_tiny", steps=6, batch_size=4, eval_every=3, eval_batches=1, final_eval_batches=2,
                     monitor_every=1, **SHAKESPEARE),
        "cpu": dict(model="gpt_2x64", steps=2500, batch_size=16, eval_every=250, eval_batches=10, final_eval_batches=80,
                    monitor_every=25, **SHAKESPEARE),
        "paper": dict(model="gpt2_124m", dataset="openwebtext", steps=100_000, batch_size=480, grad_accum=4,
                      warmup=2000, eval_every=1000, eval_batches=10, final_eval_batches=100, monitor_every=500,
                      n_train=0, n_val=0, min_lr_ratio=0.0),  # n_*: 0 = the prepared bins' whole streams
    },
    "distributed": {
        "smoke": dict(model="gpt_tiny", steps=40, batch_size=8, eval_every=10, eval_batches=2, final_eval_batches=4,
                      monitor_every=5, **SHAKESPEARE),
        "tiny": dict(model="gpt_tiny", steps=6, batch_size=8, eval_every=3, eval_batches=1, final_eval_batches=2,
                     monitor_every=1, **SHAKESPEARE),
        "cpu": dict(model="gpt_2x64", steps=1000, batch_size=16, eval_every=100, eval_batches=6, final_eval_batches=40,
                    monitor_every=20, **SHAKESPEARE),
        "paper": dict(model="gpt2_124m", dataset="openwebtext", steps=100_000, batch_size=512, eval_every=1000,
                      eval_batches=10, final_eval_batches=100, monitor_every=500, n_train=0, n_val=0),
    },
}
BASE_LR = {"adamw": (3e-3, 0.1), "muon": (0.1, 2.0)}  # (lr, weight_decay); the Lion family: (1e-3, 1.0)


def _build(task: str, scale: str, defaults: dict, overrides: dict):
    if scale not in SCALES[task]:
        raise ConfigError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES[task])}")
    opt = overrides.get("optimizer", "lion")
    lr, wd = BASE_LR.get(opt, (1e-3, 1.0))
    d = dict(task=task, scale=scale, optimizer=opt, lr=lr, weight_decay=wd, betas=BETAS.get(opt, (0.9, 0.99)),
             p=None, seed=0, split_seed=0, role="tune", precision="fp32", **defaults)
    d.update(SCALES[task][scale])
    unknown = set(overrides) - {f.name for f in fields(SPECS[task])}
    if unknown:
        raise ConfigError(f"unknown {task} spec keys {sorted(unknown)}: choose from {', '.join(f.name for f in fields(SPECS[task]))}")
    d.update(overrides)
    d["betas"] = tuple(d["betas"])
    if "warmup" not in overrides and "warmup" not in SCALES[task][scale]:
        d["warmup"] = d["steps"] // 10
    spec = SPECS[task](**d)
    check_spec(spec)
    return spec


def cifar_spec(scale: str = "cpu", **overrides) -> CifarSpec:
    """The CIFAR spec of a scale with overrides (`cifar_spec("cpu", optimizer="adamw", seed=3)`)."""
    return _build("cifar", scale, dict(schedule="linear", channels_last=False, label_smoothing=0.0, aux_lr=1e-3,
                                       muon_exact=True), overrides)


def gpt_spec(scale: str = "cpu", **overrides) -> GptSpec:
    return _build("gpt", scale, dict(schedule="cosine", dataset="shakespeare_char", grad_clip=1.0, min_lr_ratio=0.1,
                                     grad_accum=1), overrides)


def distributed_spec(scale: str = "cpu", **overrides) -> DistributedSpec:
    """Global Lion (`optimizer="lion"`, vote None) or Distributed Lion (`optimizer="distributed_lion"`,
    vote "majority" or "average"), simulated workers on one process."""
    if overrides.get("optimizer") == "distributed_lion":
        overrides.setdefault("vote", "majority")
    return _build("distributed", scale, dict(schedule="constant", dataset="shakespeare_char", workers=4, vote=None),
                  overrides)


def with_(spec, **changes):
    """`dataclasses.replace` that checks the result."""
    new = replace(spec, **changes)
    check_spec(new)
    return new
