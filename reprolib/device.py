"""Device choice: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

import os

import torch

from .params import CHOICES


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


#: The arithmetic a chapter's convolutional network may run in: "auto" picks bf16 where the
#: hardware has native bfloat16 instructions, else fp32 (the one list, kept with the other choices).
PRECISIONS = CHOICES["precision"]


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware: a CUDA GPU of compute capability
    8.0 or more (A100, H100, ...; a T4 only emulates it), or a CPU with AVX512-BF16 or AMX
    instructions, where oneDNN runs convolutions and linear layers in bfloat16. Elsewhere PyTorch
    emulates bfloat16 more slowly than it computes float32, so "auto" keeps float32 there."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """"auto" -> "bf16" where `native_bf16(device)`, else "fp32"; "bf16" and "fp32" stay as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device | str, precision: str):
    """Mixed precision (Micikevicius et al., 2018) in bfloat16 when `precision` is "bf16": inside this
    context PyTorch runs convolutions and matrix products in bfloat16 and keeps the weights, the
    optimiser state and the reductions it lists as sensitive in float32; with "fp32" the context
    does nothing. bfloat16 keeps float32's exponent range, so no loss scaling is needed. Cast a
    network's output with ``.float()`` before a loss."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bf16")
