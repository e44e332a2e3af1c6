"""CIFAR-10 from the command line: one run of a `CifarSpec`, trained by `cifar_train.train` (the
trainer the notebooks use), its record written to `<out-dir>/result.json`.

    python -m lionlib.experiments.cifar --scale cpu --optimizer lion --lr 1e-3 --weight-decay 1
    python -m lionlib.experiments.cifar --scale paper --model vit_s --device cuda      # one GPU
    torchrun --standalone --nproc_per_node 8 -m lionlib.experiments.cifar --scale paper   # DDP

`--help` lists every flag. Ctrl-C stops between two steps and writes `<out-dir>/checkpoint.pt`
(mid-epoch too); `--resume` continues it exactly (see `lionlib.experiments.checkpoint` for the rules
on resuming and overwriting).
"""

from __future__ import annotations

from lionlib.experiments import cli
from lionlib.experiments.cifar_data import find_source
from lionlib.experiments.cifar_train import load_data, train
from lionlib.experiments.specs import CIFAR_MODELS, OPTIMIZERS, PRECISIONS, SCALES, SCHEDULES, CifarSpec, cifar_spec

__all__ = ["main", "preload"]


def preload(spec: CifarSpec, data_dir: str | None) -> None:
    """Find and decode the spec's images before the run folder is announced (a DataError is one line)."""
    find_source(data_dir)
    load_data(spec, data_dir)


def main(argv: list[str] | None = None):
    """`python -m lionlib.experiments.cifar [--scale cpu] [--optimizer lion] [--lr ...] ...`: one run."""
    return cli.run_command("python -m lionlib.experiments.cifar", argv, CifarSpec, cifar_spec, train,
                           tuple(SCALES["cifar"]), preload, main.__doc__,
                           choices=dict(optimizer=OPTIMIZERS["cifar"], model=tuple(CIFAR_MODELS), precision=PRECISIONS,
                                        schedule=SCHEDULES, role=("tune", "eval")))


if __name__ == "__main__":
    main()
