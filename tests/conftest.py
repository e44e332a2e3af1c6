"""Without a GPU, Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1). Triton reads the
variable when it is first imported, and torch imports Triton along with dynamo (on the first
optimizer step, or any torch.compile), so it is set here, before any test module is collected."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
