"""The CIFAR-10 net of the experiments (airbench94's layout), apart from its trainer (`cifar`).

`CifarNet`: fixed 2x2 whitening conv, three conv groups, max-pool head; BatchNorm with the scale
frozen at 1, as in airbench.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchNorm", "ConvGroup", "CifarNet"]



class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with the scale frozen at 1 (only the shift learns), as in airbench."""

    def __init__(self, width: int):
        super().__init__(width, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


class ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding="same", bias=False), nn.MaxPool2d(2), BatchNorm(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding="same", bias=False), BatchNorm(c_out), nn.GELU(),
        )


class CifarNet(nn.Module):
    """32x32 -> whiten (2x2, 24 ch) -> 3 x ConvGroup (each halves the size) -> max-pool -> linear.

    The whitening filters are computed from training patches and frozen (airbench): they decorrelate
    the input so the first layer trains fast. Every conv is followed by BatchNorm, so conv weights are
    scale-invariant and only the head's scale matters for the logits (`head_scale`).
    """

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), head_scale: float = 1.0):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=False)
        self.whiten.weight.requires_grad = False
        self.groups = nn.Sequential(ConvGroup(24, widths[0]), ConvGroup(widths[0], widths[1]),
                                    ConvGroup(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], 10, bias=False)
        self.head_scale = head_scale

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Filters = +-eigenvectors of the 2x2-patch covariance of `x` (normalised images), scaled to unit variance."""
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
        eigval, eigvec = torch.linalg.eigh(patches.T @ patches / len(patches))
        w = (eigvec.T / torch.sqrt(eigval[:, None] + eps)).flip(0).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([w, -w]).to(self.whiten.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.head_scale
