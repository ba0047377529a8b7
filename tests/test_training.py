"""Seeding, the NaN guard, atomic checkpoints, and resume after an interruption."""
import numpy as np
import pytest
import torch

from reprolib import training
from reprolib.data import load


def _setup(seed):
    training.seed_everything(seed)
    ds = load("digits")
    x, y = ds.flat()[:600], ds.labels[:600]
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(32, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.from_numpy(x)

    def epoch_fn(epoch):
        order = torch.randperm(len(x))  # global RNG: resume must restore it
        noise = float(np.random.rand())  # NumPy RNG too
        total = 0.0
        for batch in order.split(64):
            loss = torch.nn.functional.cross_entropy(model(x[batch] + 0.01 * noise), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        return {"loss": total}

    return model, optimiser, epoch_fn


def _train(seed, n_epochs, checkpoint=None, interrupt_at=None):
    model, optimiser, epoch_fn = _setup(seed)

    def maybe_interrupted(epoch):
        if epoch == interrupt_at:
            raise KeyboardInterrupt
        return epoch_fn(epoch)

    history = training.run_epochs(n_epochs, maybe_interrupted, checkpoint,
                                  {"model": model, "optimiser": optimiser}, desc="test")
    return model, history


def test_same_seed_same_result_and_another_seed_differs():
    model_a, hist_a = _train(0, 3)
    model_b, hist_b = _train(0, 3)
    model_c, hist_c = _train(1, 3)
    assert hist_a == hist_b
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))
    assert hist_a != hist_c


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    reference, reference_history = _train(0, 5)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(0, 5, checkpoint, interrupt_at=3)
    assert training.load_checkpoint(checkpoint, restore_rng=False)["epoch"] == 2
    resumed, history = _train(0, 5, checkpoint)
    assert history == reference_history
    assert all(torch.equal(p, q) for p, q in zip(reference.parameters(), resumed.parameters()))


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    training.save_checkpoint(path, {"epoch": 0})

    def broken_save(obj, target):
        open(target, "wb").write(b"torn")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        training.save_checkpoint(path, {"epoch": 1})
    monkeypatch.undo()
    assert training.load_checkpoint(path, restore_rng=False)["epoch"] == 0


def test_nan_guard_stops_with_a_clear_message():
    with pytest.raises(training.NonFiniteLossError, match="loss became nan at epoch 4"):
        training.check_finite(torch.tensor(float("nan")), "loss", "epoch 4")
    with pytest.raises(training.NonFiniteLossError):
        training.run_epochs(2, lambda epoch: {"loss": float("inf")}, None, {})
    training.check_finite(1.0)


def test_pick_device_prefers_what_is_asked(monkeypatch):
    from reprolib.device import describe_device, pick_device
    monkeypatch.setenv("REPROLIB_DEVICE", "cpu")
    assert pick_device().type == "cpu" and describe_device("cpu").startswith("cpu (")


def test_precision_auto_follows_the_hardware_and_bad_values_are_refused(monkeypatch):
    from reprolib import device as device_lib
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(device_lib, "native_bf16", lambda device, native=native: native)
        assert device_lib.resolve_precision("auto", "cpu") == expected
        assert device_lib.resolve_precision("fp32", "cpu") == "fp32"
        assert device_lib.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32; got 'fp16'"):
        device_lib.resolve_precision("fp16", "cpu")


def test_autocast_runs_convolutions_in_bf16_only_when_asked():
    from reprolib.device import autocast
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.rand(2, 1, 8, 8)
    with autocast("cpu", "bf16"):
        low = conv(x)
    with autocast("cpu", "fp32"):
        full = conv(x)
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert conv.weight.dtype == torch.float32   # the weights stay float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal
    assert torch.allclose(low.float(), full, atol=0.05, rtol=0.02) and not torch.equal(low.float(), full)


def test_run_seeds_are_distinct_and_valid_for_numpy_at_any_chapter_seed():
    import numpy as np
    from reprolib.training import run_seed
    seeds = {run_seed(s, r) for s in (0, 1, 2**32 - 1) for r in range(5)}
    assert len(seeds) == 15 and all(0 <= x < 2**32 for x in seeds)
    np.random.seed(run_seed(2**32 - 1, 4))  # would raise for a seed >= 2^32
    assert run_seed(3, 1) == run_seed(3, 1)


def test_checkpoint_dir_depends_on_the_parameters_but_not_on_output_dir(tmp_path):
    from reprolib.training import checkpoint_dir
    a = checkpoint_dir(tmp_path, {"seed": 0, "dataset": "mnist5k", "output_dir": "x"})
    assert a == checkpoint_dir(tmp_path, {"dataset": "mnist5k", "seed": 0, "output_dir": "y"})
    assert a != checkpoint_dir(tmp_path, {"seed": 1, "dataset": "mnist5k"})
    assert a.parent == tmp_path / "checkpoints"


def test_prefetched_gives_the_plain_loops_items_and_leaves_the_generator_where_it_would():
    def make(generator):
        def batch(i):
            return i, torch.rand(3, generator=generator), torch.randperm(5, generator=generator)
        return batch

    plain_rng, ahead_rng = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    plain = [make(plain_rng)(i) for i in range(6)]
    ahead = list(training.prefetched(make(ahead_rng), 6))
    assert [item[0] for item in ahead] == list(range(6))
    for (_, r1, p1), (_, r2, p2) in zip(plain, ahead):
        assert torch.equal(r1, r2) and torch.equal(p1, p2)
    assert torch.equal(plain_rng.get_state(), ahead_rng.get_state())   # nothing built past item n - 1
    assert list(training.prefetched(make(ahead_rng), 0)) == []


def test_prefetched_raises_the_builders_error_at_its_item():
    def batch(i):
        if i == 2:
            raise ValueError("bad batch 2")
        return i

    items = training.prefetched(batch, 4)
    assert [next(items), next(items)] == [0, 1]
    with pytest.raises(ValueError, match="bad batch 2"):
        next(items)
