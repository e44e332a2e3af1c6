"""Without a GPU, Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1). Triton reads the
variable when it is first imported, and torch imports Triton along with dynamo (on the first
optimizer step, or any torch.compile), so it is set here, before any test module is collected."""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _image_folder(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    """A CIFAR-10 image folder (`train|test/<class>/NNNN.jpg`) of random 32x32 JPEGs."""
    import numpy as np
    from PIL import Image

    from lionlib.experiments.cifar_data import CLASSES

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i:04d}.jpg")
    return root


@pytest.fixture
def image_folder():
    """`image_folder(root, per_class=2, seed=0)` writes a small CIFAR-10 image folder at `root`."""
    return _image_folder
