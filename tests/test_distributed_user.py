"""The issue's independent check, written as a user would: FSDP2 `fully_shard` on a 2-process gloo
group, `LionK(model.parameters(), kappa="l2", lr=..., weight_decay=...)` on the default path, then
the same training in one process. Nothing here comes from the other distributed tests but the
process launcher."""

import torch
import torch.distributed as dist
import torch.nn as nn
from test_distributed_common import GROUP, run_workers

from lionlib import LionK

pytestmark = GROUP


def make_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)).double()


def data():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 10, generator=g, dtype=torch.float64)
    return x, x[:, :1].sin() + 0.1 * x[:, 1:2]


def train(model, x, y, steps=5):
    opt = LionK(model.parameters(), kappa="l2", lr=3e-3, weight_decay=0.1)
    for _ in range(steps):
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()


def user_fsdp(rank, world):
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    x, y = data()
    half = len(x) // world
    train(model, x[rank * half : (rank + 1) * half], y[rank * half : (rank + 1) * half])
    return {name: p.full_tensor() for name, p in model.named_parameters()}


def test_user_fsdp2_lionk_l2_matches_one_process(tmp_path):
    sharded = run_workers(user_fsdp, 2, tmp_path=tmp_path, timeout=120)
    model = make_model()
    train(model, *data())
    for name, p in model.named_parameters():
        for rank in range(2):
            q = sharded[rank][name]
            assert (q - p).norm() <= 1e-6 * p.norm(), (name, rank)
    assert not dist.is_initialized()
