"""Torch state a computation must put back as it found it: the device of a model, its buffers
(batch-norm running statistics), and the random state that dropout draws from."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["copy_buffers", "device_of", "load_buffers", "rng_state", "set_rng_state"]


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters live (inputs are moved there); the CPU for a model without any."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def copy_buffers(model: nn.Module) -> list:
    """Copies of all the model's buffers (batch-norm running statistics and counters)."""
    return [b.detach().clone() for b in model.buffers()]


def load_buffers(model: nn.Module, buffers: list) -> None:
    """Put ``buffers`` (as from :func:`copy_buffers`) back into ``model``, in place."""
    bufs = list(model.buffers())
    if len(bufs) != len(buffers):
        raise ValueError(f"buffers has {len(buffers)} tensors; the model has {len(bufs)}")
    with torch.no_grad():
        for b, v in zip(bufs, buffers):
            b.copy_(v)


def rng_state(device: torch.device):
    """The random state that dropout in a forward pass on ``device`` draws from."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def set_rng_state(device: torch.device, state) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
