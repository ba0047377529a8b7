"""SPICE Eq. (6)-(7): reprolib.cluster.reliable_pseudo_labels against brute force and by hand."""
import math

import numpy as np
import pytest

import reprolib.cluster as cluster
from reprolib.cluster import reliable_pseudo_labels, reliable_pseudo_labels_direct


def clustered(n, dim, n_clusters, flip, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_clusters, dim))
    truth = rng.integers(0, n_clusters, size=n)
    x = centres[truth] + rng.normal(size=(n, dim))
    labels = np.where(rng.random(n) < flip, rng.integers(0, n_clusters, size=n), truth)
    return x, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_neighbors", [1, 7, 40])
def test_matches_brute_force(seed, n_neighbors):
    x, labels = clustered(230, 6, 4, 0.15, seed)
    seen = set()
    for threshold in (0.0, 0.5, 0.8, 0.99, 1.0):
        mask = reliable_pseudo_labels(x, labels, n_neighbors, threshold)
        assert mask.dtype == np.bool_ and mask.shape == (230,)
        np.testing.assert_array_equal(mask, reliable_pseudo_labels_direct(x, labels, n_neighbors,
                                                                          threshold))
        seen.add(int(mask.sum()))
    assert len(seen) > 1 or n_neighbors == 1  # the thresholds do discriminate
    assert not reliable_pseudo_labels(x, labels, n_neighbors, 1.0).any()  # r_i > 1 never holds


@pytest.mark.parametrize("block_size", [1, 7, 64, 229, 230, 1000])
def test_block_boundaries(block_size):
    x, labels = clustered(230, 5, 3, 0.2, 11)
    expected = reliable_pseudo_labels_direct(x, labels, 10, 0.7)
    assert 0 < expected.sum() < 230
    np.testing.assert_array_equal(
        reliable_pseudo_labels(x, labels, 10, 0.7, block_size=block_size), expected)


def test_n_neighbors_all_others():
    x, labels = clustered(50, 3, 2, 0.0, 3)
    share = np.array([(labels == l).sum() - 1 for l in labels]) / 49
    np.testing.assert_array_equal(reliable_pseudo_labels(x, labels, 49, 0.5), share > 0.5)


def test_hand_worked_example():
    # Four points on a circle at 0, 10, 20 and 180 degrees, labels 0, 0, 1, 1; N_s = 2.
    # Neighbours (cosine, self excluded): p0 -> p1, p2; p1 -> p0, p2 (tie cos 10 deg, the lower
    # index p0 first); p2 -> p1, p0; p3 -> p2, p1. Eq. (6): r = 1/2, 1/2, 0, 1/2.
    angles = np.deg2rad([0, 10, 20, 180])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 1])
    assert reliable_pseudo_labels(x, labels, 2, 0.49).tolist() == [True, True, False, True]
    # Eq. (7) is strict: r = 1/2 is not > 1/2
    assert reliable_pseudo_labels(x, labels, 2, 0.5).tolist() == [False] * 4
    # N_s = 1: p0 -> p1 (same), p1 -> p0 (tie with p2, lowest index), p2 -> p1, p3 -> p2 (same)
    assert reliable_pseudo_labels(x, labels, 1, 0.5).tolist() == [True, True, False, True]


def test_scale_invariant_cosine():
    x, labels = clustered(120, 4, 3, 0.1, 5)
    scaled = x * np.random.default_rng(0).uniform(0.01, 100, size=(120, 1))
    np.testing.assert_array_equal(reliable_pseudo_labels(scaled, labels, 8, 0.6),
                                  reliable_pseudo_labels(x, labels, 8, 0.6))


def test_self_excluded_by_index_with_duplicates():
    # Point 1 duplicates point 0 but has another label; points 2-4 lie close by (label 0).
    base = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.05], [1.0, 0.06], [1.0, 0.07]])
    labels = np.array([0, 1, 0, 0, 0])
    # N_s = 1: the nearest neighbour of 0 is its duplicate 1 (not itself: that would make 0
    # reliable), and vice versa; 2, 3, 4 have each other
    assert reliable_pseudo_labels(base, labels, 1, 0.5).tolist() == [False, False, True, True,
                                                                      True]
    # many exact duplicates: every point's neighbours are its copies, all with its own label
    x = np.repeat(np.eye(3), 5, axis=0)
    same = np.repeat([0, 1, 2], 5)
    assert reliable_pseudo_labels(x, same, 4, 0.99).all()
    # a copy labelled differently is among the 4 nearest of each other copy
    mixed = same.copy()
    mixed[0] = 1
    mask = reliable_pseudo_labels(x, mixed, 4, 0.99)
    assert mask.tolist() == reliable_pseudo_labels_direct(x, mixed, 4, 0.99).tolist()
    assert not mask[:5].any() and mask[5:].all()


def test_ties_go_to_lowest_index():
    # p0 has three neighbours at exactly the same similarity (duplicates 1, 2, 3) labelled 1, 0, 0
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 0, 0, 0])
    # N_s = 2 for p0: p1 and p2 (lowest indices among the tie), r_0 = 1/2 -> not > 0.6
    assert not reliable_pseudo_labels(x, labels, 2, 0.6)[0]
    np.testing.assert_array_equal(reliable_pseudo_labels(x, labels, 2, 0.6),
                                  reliable_pseudo_labels_direct(x, labels, 2, 0.6))
    relabelled = np.array([0, 0, 1, 1, 0])  # now p1 (same label) and p2 (different)
    assert not reliable_pseudo_labels(x, relabelled, 2, 0.6)[0]
    assert reliable_pseudo_labels(x, relabelled, 2, 0.4)[0]


ONES, ZEROS = np.ones((5, 2)), np.zeros(5, int)


@pytest.mark.parametrize("kwargs, message", [
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(4, int)), "same length"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=5), "below"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=9), "below"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=0), "n_neighbors"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=2.0), "n_neighbors"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=True), "n_neighbors"),
    (dict(embeddings=np.ones(5), labels=np.zeros(5, int)), "2-D"),
    (dict(embeddings=np.array([["a", "b"]] * 5), labels=np.zeros(5, int)), "2-D real"),
    (dict(embeddings=np.ones((5, 2), dtype=bool), labels=np.zeros(5, int)), "2-D real"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5)), "integer"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros((5, 1), int)), "1-D"),
    (dict(embeddings=ONES, labels=ZEROS, n_neighbors=2, threshold=1.5), r"\[0, 1\]"),
    (dict(embeddings=ONES, labels=ZEROS, n_neighbors=2, threshold=-0.1), r"\[0, 1\]"),
    (dict(embeddings=ONES, labels=ZEROS, n_neighbors=2, threshold="0.5"), r"\[0, 1\]"),
    (dict(embeddings=np.array([[1.0, 0], [0, 0], [0, 1], [1, 1], [2, 1]]),
          labels=np.zeros(5, int), n_neighbors=2), "non-zero.*index 1"),
    (dict(embeddings=np.array([[1.0, 0], [0, np.nan], [0, 1], [1, 1], [2, 1]]),
          labels=np.zeros(5, int), n_neighbors=2), "finite"),
    (dict(embeddings=np.ones((5, 2)), labels=np.zeros(5, int), n_neighbors=2, block_size=0),
     "block_size"),
])
def test_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        reliable_pseudo_labels(**kwargs)
    if "block_size" not in kwargs:
        with pytest.raises(ValueError, match=message):
            reliable_pseudo_labels_direct(**kwargs)


def test_memory_bounded_by_block(monkeypatch):
    """The only n-wide allocation is one block x width similarity buffer (width: n padded to
    20,032 columns for the chunked top-k): at n = 20,000 and the default block it holds at most
    2^26 entries (256 MiB), far below n^2 x 4 bytes = 1.6 GB."""
    n = 20_000
    x, labels = clustered(n, 16, 5, 0.05, 2)
    sizes = []
    original = cluster._block_similarities

    def recording(x_, start, stop, buffer):
        sizes.append(buffer.numel())
        out = original(x_, start, stop, buffer)
        assert out.shape == (stop - start, width) and out.data_ptr() == buffer.data_ptr()
        return out

    width = 20_032  # 64 = 8^2 divides it: two levels of 8 slices, each >= 4 x 21 wide
    assert cluster._chunked_width(n, 21) == width
    monkeypatch.setattr(cluster, "_block_similarities", recording)
    mask = reliable_pseudo_labels(x, labels, 20, 0.9)
    assert len(sizes) == -(-n // (2 ** 26 // width))  # every row covered, block by block
    assert max(sizes) <= 2 ** 26 and max(sizes) * 5 < n * n
    sizes.clear()
    assert np.array_equal(reliable_pseudo_labels(x, labels, 20, 0.9, block_size=500), mask)
    assert set(sizes) == {500 * width} and len(sizes) == n // 500
    assert 0 < mask.sum() < n


@pytest.mark.parametrize("m, k", [(7, 3), (96, 3), (800, 5), (4096, 10), (5000, 25)])
def test_topk_by_chunks_matches_torch_topk(m, k):
    """The chunked top-k behind reliable_pseudo_labels: the same values as torch.topk, and
    indices that point at them; with few distinct values (many ties) and with -inf entries."""
    import torch

    generator = torch.Generator().manual_seed(m + k)
    for values in (torch.randn(37, m, generator=generator),
                   torch.randint(0, 6, (37, m), generator=generator).float(),
                   torch.randn(37, m, generator=generator).masked_fill(
                       torch.rand(37, m, generator=generator) < 0.9, -math.inf)):
        best, index = cluster._topk_by_chunks(values, k)
        expected = torch.topk(values, k, dim=1, sorted=True).values
        assert torch.equal(best, expected)
        assert torch.equal(values.gather(1, index), best)
        assert all(len(set(row)) == k for row in index.tolist())  # k distinct entries


def test_chunked_width():
    assert cluster._chunked_width(70_000, 101) == 70_016  # 8^2 divides it; 8^3 slices too narrow
    assert cluster._chunked_width(230, 2) == 232  # one level: slices of 29 >= 8
    assert cluster._chunked_width(230, 41) == 230  # slices of 28 < 164: plain torch.topk


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_through_the_chunks(seed):
    """Wide enough for two levels of slices (n = 3,000, N_s = 10), with exact duplicates among
    the embeddings so that similarities tie."""
    x, labels = clustered(3000, 4, 6, 0.2, seed)
    x[1500:2000] = x[:500]
    assert cluster._chunked_width(3000, 11) % 64 == 0
    for threshold in (0.5, 0.9):
        np.testing.assert_array_equal(reliable_pseudo_labels(x, labels, 10, threshold),
                                      reliable_pseudo_labels_direct(x, labels, 10, threshold))


def normalised(x, labels):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize("block_size", [None, 5, 64, 700])
@pytest.mark.parametrize("seed", range(3))
def test_all_agree_path_matches_brute_force(seed, block_size, monkeypatch):
    """When Eq. (7) needs all N_s neighbours to agree: _reliable_when_all_agree gives the same
    mask as brute force and as the top-k path, through blocks that cut label runs, with unequal
    clusters (one of a single sample, one smaller than N_s) and triplicated embeddings across
    labels (at N_s = 1 they tie at m_i, and those rows are decided on the full row)."""
    x, labels = clustered(1500, 4, 5, 0.05, seed)
    labels[labels == 4] = np.where(np.arange(1500) % 3 == 0, 3, 4)[labels == 4]  # unequal sizes
    labels[7] = 9                  # a cluster of one sample
    labels[100:103] = 8            # a cluster smaller than N_s
    x[800:900] = x[900:1000] = x[:100]  # triplicates, labelled alike and differently
    calls, tied_rows = [], 0
    original = cluster._lowest_index_neighbours
    monkeypatch.setattr(cluster, "_lowest_index_neighbours",
                        lambda row, k: calls.append(k) or original(row, k))
    unit, codes = normalised(x, labels)
    # no cluster dominates, so that reliable_pseudo_labels takes this route too
    assert ((np.bincount(labels) / len(labels)) ** 2).sum() <= cluster._ALL_AGREE_MAX_SQUARED_SHARE
    for n_neighbors, threshold in ((10, 0.99), (10, 0.9), (1, 0.0), (25, 0.97)):
        assert np.arange(n_neighbors + 1)[np.arange(n_neighbors + 1) / n_neighbors
                                          > threshold][0] == n_neighbors  # all must agree
        expected = reliable_pseudo_labels_direct(x, labels, n_neighbors, threshold)
        assert 0 < expected.sum() < len(x)
        np.testing.assert_array_equal(
            cluster._reliable_by_topk(unit, codes, n_neighbors, threshold, block_size), expected)
        calls.clear()
        np.testing.assert_array_equal(
            cluster._reliable_when_all_agree(unit, codes, n_neighbors, block_size), expected)
        tied_rows += len(calls)
        np.testing.assert_array_equal(
            reliable_pseudo_labels(x, labels, n_neighbors, threshold, block_size=block_size),
            expected)
    assert tied_rows  # some rows were tied at m_i and decided on the full row


def test_all_agree_path_one_label_and_two_samples():
    x, _ = clustered(40, 3, 2, 0.0, 1)
    assert cluster._reliable_when_all_agree(*normalised(x, np.zeros(40, int)), 5).all()
    assert cluster._reliable_when_all_agree(*normalised(np.eye(2), np.array([0, 0])), 1).all()
    assert not cluster._reliable_when_all_agree(*normalised(np.eye(2), np.array([0, 1])), 1).any()


@pytest.mark.parametrize("labels, n_neighbors, threshold, path", [
    (np.arange(1000) % 10, 100, 0.99, "_reliable_when_all_agree"),   # the paper's setting
    (np.arange(1000) % 10, 100, 0.9, "_reliable_by_topk"),           # 91 of 100 must agree
    (np.arange(1000) % 4, 20, 0.99, "_reliable_when_all_agree"),     # squared sizes: n^2 / 4
    (np.where(np.arange(1000) < 600, 0, 1), 20, 0.99, "_reliable_by_topk"),  # 0.52 n^2
    (np.zeros(1000, int), 20, 0.99, "_reliable_by_topk"),
])
def test_path_chosen(monkeypatch, labels, n_neighbors, threshold, path):
    x, _ = clustered(1000, 4, 10, 0.0, 0)
    used = []
    for name in ("_reliable_when_all_agree", "_reliable_by_topk"):
        original = getattr(cluster, name)
        monkeypatch.setattr(cluster, name, lambda *a, _o=original, _n=name: used.append(_n) or _o(*a))
    mask = reliable_pseudo_labels(x, labels, n_neighbors, threshold)
    assert used == [path]
    np.testing.assert_array_equal(mask, reliable_pseudo_labels_direct(x, labels, n_neighbors,
                                                                      threshold))


def test_all_agree_path_memory_bounded(monkeypatch):
    """The all-agree path's similarity buffer (the one torch.empty it makes) holds at most 2^26
    float32 entries (n = 20,000: 3,355 rows of 20,000 columns a block); the benchmark measures
    the whole call's peak memory at n = 70,000."""
    import torch

    n = 20_000
    x, labels = clustered(n, 16, 5, 0.02, 4)
    sizes = []
    original = torch.empty

    def recording(*shape, **kwargs):
        tensor = original(*shape, **kwargs)
        sizes.append(tensor.numel())
        return tensor

    monkeypatch.setattr(torch, "empty", recording)
    mask = cluster._reliable_when_all_agree(*normalised(x, labels), 20)
    monkeypatch.undo()
    assert max(sizes) <= 2 ** 26 and max(sizes) * 5 < n * n
    assert 0 < mask.sum() < n
    unit = normalised(x, labels)[0]
    for i in np.random.default_rng(0).choice(n, 300, replace=False):  # rows checked directly
        row = unit @ unit[i]
        row[i] = -np.inf
        assert mask[i] == np.all(labels[cluster._lowest_index_neighbours(row, 20)] == labels[i])
