"""Training setup (AdamW + cosine) and the script that writes the project's checkpoints.

``python -m shopnet.train OUT_DIR`` trains each model 3 steps and saves six files, as a project on
its current torch would: a full training checkpoint (numpy values, RNG states, Namespace, Path),
plain state_dicts, a DataParallel state_dict, a whole pickled model and a legacy-format file.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy
import torch

from shopnet import data, models


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def make_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)


def loss_fn(output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return output.pow(2).mean()


def train(model: torch.nn.Module, batch, steps: int = 3):
    optimizer, scheduler = None, None
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer)
    model.train()
    loss = torch.zeros(())
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(*batch()).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler, float(loss)


def main(out: str) -> None:
    folder = pathlib.Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    numpy.random.seed(0)
    torch.manual_seed(0)
    cnn = models.small_resnet()
    optimizer, scheduler, loss = train(cnn, data.image_batch)
    args = argparse.Namespace(lr=1e-3, epochs=10, out=str(folder))
    torch.save({"model": cnn.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": 3, "loss": numpy.float64(loss), "numpy_rng": numpy.random.get_state(),
                "torch_rng": torch.get_rng_state(), "args": args, "out_dir": pathlib.Path(folder)},
               folder / "train_cnn.pt")
    torch.save(cnn.state_dict(), folder / "cnn_state.pt")
    torch.save(torch.nn.DataParallel(cnn).state_dict(), folder / "cnn_dp.pt")
    encoder = models.tiny_encoder()
    train(encoder, data.token_batch)
    torch.save(encoder.state_dict(), folder / "encoder_state.pt")
    torch.save(encoder, folder / "encoder_whole.pt")
    torch.save(encoder.state_dict(), folder / "encoder_legacy.pt", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main(sys.argv[1])
