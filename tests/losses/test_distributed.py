"""normalizer="positives", sync=True: DDP on 2 processes equals one process on the whole batch."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import focalkit as fk
from _ddp_worker import make_model, worker


def test_ddp_matches_single_process(tmp_path):
    if not dist.is_available():  # pragma: no cover
        raise RuntimeError("torch.distributed is needed for this test")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    # Uneven positives: rank 0 gets 4, rank 1 gets 1 (4 = background).
    labels = torch.tensor([0, 1, 4, 2, 3, 4, 4, 4, 1, 4, 4, 4])
    state = {k: v.double() for k, v in torch.nn.Linear(6, 4).state_dict().items()}

    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path), x, labels, state), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    model = make_model(state)
    loss = fk.sigmoid_focal_loss(model(x), labels, normalizer="positives")
    loss.backward()
    for r in results:
        torch.testing.assert_close(r["loss"], loss.detach(), rtol=1e-6, atol=1e-12)
        for got, want in zip(r["grads"], [p.grad for p in model.parameters()]):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    # Without sync each rank divides by its own count, and the result differs.
    part0 = fk.sigmoid_focal_loss(model(x[:6]), labels[:6], normalizer="positives")
    part1 = fk.sigmoid_focal_loss(model(x[6:]), labels[6:], normalizer="positives")
    assert abs(((part0 + part1) / 2).item() - loss.item()) > 1e-3
