"""reprolib.data: the offline datasets, checksums, clear errors, and split helpers."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib import data


@pytest.mark.parametrize("name, n, shape", [("digits", 1797, (1, 8, 8)), ("mnist5k", 5000, (1, 28, 28))])
def test_offline_datasets_load_as_float_images_in_unit_range(name, n, shape):
    ds = data.load(name)
    assert ds.images.shape == (n, *shape) and ds.images.dtype == torch.float32
    assert data.DATASETS[name].n_images == n and data.DATASETS[name].image_shape == shape
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == set(range(10))
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.checksum.startswith("sha256:") and ds.checksum == data.load(name).checksum
    assert ds.source


@pytest.mark.skipif(not data.FASHION_MNIST_DEBIAN_DIR.is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package():
    train, test = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.class_names[0] == "T-shirt/top" and np.bincount(test.labels.numpy()).tolist() == [1000] * 10
    assert len(data.load("fashion-mnist")) == 70000 == data.DATASETS["fashion-mnist"].n_images


def test_unknown_dataset_and_split_are_value_errors():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="no official 'train' split"):
        data.load("mnist5k", "train")


def test_a_corrupt_file_is_refused(monkeypatch):
    monkeypatch.setitem(data.FILE_SHA256, "digits.csv.gz", "0" * 64)
    with pytest.raises(data.ChecksumMismatch, match="differs from the expected"):
        data.load("digits")


def test_unavailable_dataset_names_itself_and_how_to_get_it(monkeypatch, tmp_path):
    import torchvision

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading: no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(data.DatasetUnavailable) as error:
        data.load("cifar10")
    message = str(error.value)
    assert "'cifar10'" in message and "torchvision" in message and "REPROLIB_DATA" in message


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(10), 50)
    train, test = data.stratified_split(labels, 0.1, seed=0)
    assert len(test) == 50 and len(train) == 450 and not set(train) & set(test)
    assert np.bincount(labels[test]).tolist() == [5] * 10


def test_labelled_subset_takes_a_fraction_of_every_class():
    labels = np.repeat(np.arange(4), [100, 200, 50, 10])
    chosen = data.labelled_subset(labels, 0.02, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [2, 4, 1, 1]  # at least one per class
    assert np.array_equal(chosen, data.labelled_subset(labels, 0.02, seed=0))
    partial = data.partial_labels(labels, chosen)
    assert (partial >= 0).sum() == len(chosen) and np.all(partial[chosen] == labels[chosen])
    with pytest.raises(ValueError):
        data.labelled_subset(labels, 0.0)


def test_labelled_subset_takes_a_count_of_every_class():
    labels = np.repeat(np.arange(4), [100, 200, 50, 10])
    chosen = data.labelled_subset(labels, per_class=7, seed=1)
    assert np.bincount(labels[chosen]).tolist() == [7, 7, 7, 7] and len(set(chosen)) == 28
    with pytest.raises(ValueError, match="smallest class"):
        data.labelled_subset(labels, per_class=11)
    with pytest.raises(ValueError, match="exactly one"):
        data.labelled_subset(labels, 0.02, per_class=3)
    with pytest.raises(ValueError, match="exactly one"):
        data.labelled_subset(labels)


def test_stratified_subset_keeps_class_proportions_and_is_seeded():
    from reprolib import data
    digits = data.load("digits")
    subset = digits.stratified_subset(500, seed=0)
    assert abs(len(subset) - 500) <= 1
    counts = np.bincount(subset.labels.numpy(), minlength=10)
    expected = np.bincount(digits.labels.numpy(), minlength=10) * len(subset) / len(digits)
    assert np.all(np.abs(counts - expected) <= 1)  # each class keeps its share, to one image
    assert torch.equal(subset.labels, digits.stratified_subset(500, seed=0).labels)
    assert digits.stratified_subset(None) is digits and digits.stratified_subset(10**6) is digits


def test_pages_show_the_home_folder_as_tilde():
    home_cache = Path.home() / ".cache" / "reprolib" / "data" / "cifar10"
    assert data.display_path(home_cache) == str(Path("~/.cache/reprolib/data/cifar10"))
    assert data.display_path(Path("/usr/share/datasets")) == "/usr/share/datasets"
    assert "~" in data.DATASETS["cifar10"].how_to_get or "REPROLIB_DATA" in os.environ
