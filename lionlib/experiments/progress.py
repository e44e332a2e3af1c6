"""Progress bars for long training loops, seen where the user is looking.

In a terminal (`python -m lionlib.experiments.cifar`), one tqdm bar on stderr. In a notebook kernel
(JupyterLab, or papermill under `python -m lionlib.companion.reproduce`), two: a text bar in the
cell's output (`sys.stderr`, which ipykernel sends to the notebook) and one on the kernel's own
stderr (`sys.__stderr__`, inherited from the process that started the kernel: the driver's console),
so a run that trains for minutes never looks hung. Text bars, not widgets: a committed notebook
keeps its last state without widget metadata.

    for step in progress(range(steps), desc="lion seed 0"):
        ...
    with progress(total=epochs * batches, desc="cifar") as bar:
        bar.update(1); bar.set_postfix(loss=f"{loss:.3f}")
"""

from __future__ import annotations

import sys

__all__ = ["Progress", "progress"]


class Progress:
    """One logical bar drawn by one tqdm per output; iterate over it, or call `update`."""

    def __init__(self, iterable=None, total=None, desc=None, mininterval: float = 2.0, **kwargs):
        from tqdm import tqdm

        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        files = [sys.stderr]
        if sys.__stderr__ is not None and sys.stderr is not sys.__stderr__:  # a kernel: the console too
            files.append(sys.__stderr__)
        self.bars = [tqdm(total=total, desc=desc, file=f, mininterval=mininterval, dynamic_ncols=False,
                          ncols=100, **kwargs) for f in files]

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        for b in self.bars:
            b.update(n)

    def set_postfix(self, **values) -> None:
        for b in self.bars:
            b.set_postfix(values, refresh=False)

    def set_description(self, desc: str) -> None:
        for b in self.bars:
            b.set_description(desc, refresh=False)

    def close(self) -> None:
        for b in self.bars:
            b.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(iterable=None, total=None, desc=None, **kwargs) -> Progress:
    """A `Progress` over `iterable` (or of `total` steps): tqdm's arguments, shown in the notebook and on
    the console when run in a kernel, on stderr otherwise."""
    return Progress(iterable, total=total, desc=desc, **kwargs)
