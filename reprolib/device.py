"""Device choice: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

import os

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The fastest device here: CUDA, then Apple MPS, then CPU.

    `prefer` (or the environment variable ``REPROLIB_DEVICE``) forces one, e.g. "cpu".
    """
    prefer = prefer or os.environ.get("REPROLIB_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str | None = None) -> str:
    """A one-line description for run records, e.g. 'cuda (NVIDIA H100)' or 'cpu (2 threads)'."""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
