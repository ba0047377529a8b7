"""Training utilities: seeding, a NaN guard, atomic checkpoints with RNG state, and resume.

A chapter's training loop goes through :func:`run_epochs`, which shows a progress bar, saves a
checkpoint after every epoch (model, optimiser, any extra state, the history and every RNG) and,
when the same checkpoint file already exists, continues from it. An interrupted run rerun with
the same output folder therefore ends with the same numbers as an uninterrupted one (on CPU; see
tests/test_training.py). On Colab, pass a Google Drive folder as the checkpoint folder.
"""
from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm


#: Test hook: when set to N, the N-th epoch finished in this process raises KeyboardInterrupt
#: right after its checkpoint is written, as a Colab disconnect would (tests/test_resume.py).
INTERRUPT_ENV = "REPROLIB_INTERRUPT_AFTER_EPOCHS"
_epochs_done_in_process = 0


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops with this message."""


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); make CPU runs repeatable.

    Returns a torch.Generator seeded with `seed` for DataLoaders and random permutations.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def run_seed(seed: int, run: int) -> int:
    """The seed of the `run`-th restart (or split) of a chapter run with `seed`: 1000 seed + run
    (the chapters' rule), wrapped into [0, 2^32) so that NumPy takes it whatever the chapter's
    seed; distinct for runs 0..999 of seeds less than 2^29 apart."""
    return (1000 * seed + run) % 2**32


def checkpoint_dir(output_dir: str | os.PathLike, parameters: Mapping[str, Any]) -> Path:
    """``output_dir/checkpoints/<hash of parameters>``: a rerun with the same parameters resumes
    its checkpoints, a run with other parameters (seed, dataset, budgets) never loads them."""
    import hashlib
    import json
    key = json.dumps({k: v for k, v in parameters.items() if k != "output_dir"}, sort_keys=True,
                     default=str)
    return Path(output_dir) / "checkpoints" / hashlib.sha256(key.encode()).hexdigest()[:12]


def check_finite(value: torch.Tensor | float, what: str = "loss", where: str = "") -> None:
    """Stop with a clear message when `value` is NaN or infinite (the NaN guard)."""
    number = float(value.detach() if isinstance(value, torch.Tensor) else value)
    if not np.isfinite(number):
        at = f" at {where}" if where else ""
        raise NonFiniteLossError(
            f"{what} became {number}{at}. Training stopped: lower the learning rate, check the "
            "input scaling, or rerun with another seed. The last good checkpoint is kept.")


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain lists (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state_to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write `state` (plus every RNG's state) to `path` atomically: temporary file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "rng": rng_state()}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, restore_rng: bool = True) -> dict | None:
    """The checkpoint at `path` (RNGs restored), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if restore_rng and "rng" in state:
        set_rng_state(state["rng"])
    return state


def run_epochs(n_epochs: int, epoch_fn: Callable[[int], Mapping[str, float]],
               checkpoint: str | os.PathLike | None, modules: Mapping[str, Any],
               desc: str = "training", extra_state: Callable[[], dict] | None = None,
               load_extra: Callable[[dict], None] | None = None) -> list[dict]:
    """Run `epoch_fn(epoch)` for epochs 0..n_epochs-1 with checkpoints and resume.

    `epoch_fn` trains one epoch and returns its logs (numbers); every value is NaN-guarded.
    `modules` maps names to objects with ``state_dict``/``load_state_dict`` (models,
    optimisers); `extra_state`/`load_extra` save and restore anything else (cluster centres).
    Returns the history: one dict of logs per epoch, with the epoch number.
    """
    history: list[dict] = []
    start = 0
    saved = load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        for name, module in modules.items():
            module.load_state_dict(saved["modules"][name])
        if load_extra is not None:
            load_extra(saved.get("extra", {}))
        history, start = list(saved["history"]), int(saved["epoch"]) + 1
    bar = tqdm(range(start, n_epochs), desc=desc, initial=start, total=n_epochs,
               disable=n_epochs == 0, mininterval=2.0)
    for epoch in bar:
        logs = dict(epoch_fn(epoch))
        for name, value in logs.items():
            check_finite(value, name, f"epoch {epoch}")
        history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
        if checkpoint:
            save_checkpoint(checkpoint, {
                "epoch": epoch, "history": history,
                "modules": {name: module.state_dict() for name, module in modules.items()},
                "extra": extra_state() if extra_state else {},
            })
        _simulated_interruption()
    return history


T = TypeVar("T")


def prefetched(make: Callable[[int], T], n: int) -> Iterator[T]:
    """Yield ``make(0), ..., make(n - 1)``, building item i + 1 on one background thread while
    the caller trains on item i.

    For CPU-bound batch preparation (augmentations that run image by image) that would otherwise
    wait for the optimiser step, and vice versa: PyTorch releases the GIL inside its kernels, so
    the two overlap. ``make`` is called in order and never twice at once, so a
    ``torch.Generator`` it draws from gives the same items as a plain loop; nothing is built
    beyond item n - 1, so after the last item the generator is where the plain loop leaves it
    (a checkpoint taken then resumes the same way). ``make`` must not share random state with
    the caller's work (the caller's global RNG, for instance) while it runs.
    """
    if n <= 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(make, 0)
        for i in range(n):
            item = pending.result()
            if i + 1 < n:
                pending = pool.submit(make, i + 1)
            yield item


def _simulated_interruption() -> None:
    global _epochs_done_in_process
    _epochs_done_in_process += 1
    limit = os.environ.get(INTERRUPT_ENV)
    if limit and _epochs_done_in_process == int(limit):
        raise KeyboardInterrupt(f"simulated interruption after {limit} epochs ({INTERRUPT_ENV})")
