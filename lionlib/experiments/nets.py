"""The two CIFAR-10 architectures of the conv-vs-transformer question: a small residual conv net with
batch norm and a small vision transformer (patches of 4).

The batch norm is the standard one: batch statistics in training, running statistics (momentum
0.1) in evaluation (`model.eval()`), so a test image's prediction does not depend on which other
images share its batch, nor on the order of the test set (`tests/test_engine.py` checks it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet", "ViT", "ARCHS", "build"]


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class Conv(nn.Module):
    """A bias-free conv whose kernel is stored as the matrix (out, in * k * k) it acts as.

    Muon (a matrix optimizer) and the spectral-norm monitor then see every conv as the matrix of the
    Muon follow-up's figure; elementwise optimizers do not care about the shape. Initialised as
    `nn.Conv2d` is (Kaiming uniform with fan_in = in * k * k).
    """

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in * k * k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.shape, self.stride, self.pad = (c_out, c_in, k, k), stride, k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight.view(self.shape), stride=self.stride, padding=self.pad)


class BasicBlock(nn.Module):
    """He et al.'s basic block: two 3x3 convs with batch norm, a 1x1 conv shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = Conv(c_in, c_out, 3, stride)
        self.bn1 = _bn(c_out)
        self.conv2 = Conv(c_out, c_out, 3)
        self.bn2 = _bn(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(Conv(c_in, c_out, 1, stride), _bn(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class ResNet(nn.Module):
    """stem conv -> one basic block per stage (stride 1, 2, 2) -> global average pool -> linear.

    A ResNet-8 at widths (16, 32, 64); the Muon follow-up's ResNet-18 has 2 blocks per stage and
    widths (64, 128, 256, 512) (the `paper` scale).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1, classes: int = 10):
        super().__init__()
        self.stem = Conv(3, widths[0], 3)
        self.bn = _bn(widths[0])
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(c, w, 2 if (i > 0 and b == 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        return self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, mlp * dim), nn.Linear(mlp * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """Patches of `patch` x `patch` pixels -> linear embedding + learned positions -> pre-norm blocks
    -> mean over tokens -> LayerNorm -> linear. No class token (mean pooling, as in many small ViTs)."""

    def __init__(self, dim: int = 64, depth: int = 3, heads: int = 4, mlp: int = 2, patch: int = 4,
                 image: int = 32, classes: int = 10):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        B, C, H, W = x.shape
        p = self.patch
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // p) * (W // p), C * p * p)
        x = self.blocks(self.embed(x) + self.pos)
        return self.head(self.ln(x.mean(1)))


ARCHS = {"resnet": ResNet, "vit": ViT}


def build(arch: str, **kwargs) -> nn.Module:
    """`ResNet(**kwargs)` or `ViT(**kwargs)` by name."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**kwargs)
