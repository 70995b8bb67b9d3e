"""Worker for the 2-process DDP test (importable by spawned children: tests/ is on the path)."""

import torch
import torch.distributed as dist
from torch import nn

import focalkit as fk


def make_model(state):
    model = nn.Linear(6, 4).double()
    model.load_state_dict(state)
    return model


def worker(rank: int, world: int, init_file: str, out_dir: str, x, labels, state) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(make_model(state))
        part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        logits = model(x[part])
        loss = fk.sigmoid_focal_loss(logits, labels[part], normalizer="positives", sync=True)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        torch.save({"loss": total / world, "grads": [p.grad for p in model.parameters()]},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
