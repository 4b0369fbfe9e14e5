"""DistributedDataParallel with the gloo backend and 2 CPU processes: same gradients as one process on the whole
batch, and the real training loop runs (rank 0 writes the checkpoint)."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from model.act import ACT
from model.checkpoint import load_checkpoint
from model.data import ChunkDataset
from model.train import batch_to, compute_loss, train

from model_kit import tiny_act, tiny_train

INDICES = list(range(8))  # early steps of the first episode: no padding, so every shard has the same valid count


def _batch(dataset_dir, idx):
    ds = ChunkDataset(dataset_dir, "train", chunk_size=10, image_size=(32, 48))
    items = [ds[i] for i in idx]
    return batch_to({k: torch.stack([it[k] for it in items]) for k in items[0]}, torch.device("cpu"))


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, port: int, dataset_dir, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = ACT(tiny_act()).eval()  # eval: posterior mean, no dropout -> the loss is a function of the data only
    ddp = nn.parallel.DistributedDataParallel(model)
    shard = INDICES[rank * 4 : (rank + 1) * 4]
    compute_loss(ddp, _batch(dataset_dir, shard), model.cfg, bf16=False)["loss"].backward()
    if rank == 0:
        torch.save(_grads(model), out_dir / "ddp_grads.pt")
    # the real loop on 2 ranks
    train(dataset_dir, out_dir / "run", tiny_act(), tiny_train(steps=3, batch_size=4, val_every=3, checkpoint_every=3, val_batches=1))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_match_single_process(tiny_dataset, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tiny_dataset, tmp_path), nprocs=2, join=True)
    torch.manual_seed(0)
    model = ACT(tiny_act()).eval()
    compute_loss(model, _batch(tiny_dataset, INDICES), model.cfg, bf16=False)["loss"].backward()
    single = _grads(model)
    ddp = torch.load(tmp_path / "ddp_grads.pt", weights_only=True)
    assert single.keys() == ddp.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-6, msg=name)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 3 and len(ckpt["rng"]["torch"]) == 2
