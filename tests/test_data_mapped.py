"""``IdxImages``: a memory-mapped IDX file as a map-style Dataset for ``fit``."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from torch.utils.data import DataLoader

from pyro_genmodels.data import IdxImages, MappedMNIST, load_mnist, write_idx
from pyro_genmodels.data.idx import MNIST_FILES
from pyro_genmodels.models import VAE
from pyro_genmodels.training import fit


@pytest.fixture
def mnist_root(tmp_path):
    """Raw (uncompressed) MNIST-format files: 12 train and 3 test images 4x4."""
    rng = np.random.RandomState(0)
    for key, stem in MNIST_FILES.items():
        n = 12 if key.startswith("train") else 3
        if key in ("train", "test"):
            write_idx(tmp_path / stem, rng.randint(0, 256, size=(n, 4, 4)).astype(np.uint8))
        else:
            write_idx(tmp_path / stem, rng.randint(0, 10, size=n).astype(np.uint8))
    return tmp_path


def test_items_are_load_mnist_values(mnist_root):
    ref = load_mnist(mnist_root, binarize=True)
    images = mnist_root / MNIST_FILES["train"]
    ds = IdxImages(images, mnist_root / MNIST_FILES["train_labels"], binarize=True)
    assert isinstance(ds.images, np.memmap) and len(ds) == 12 and ds.image_shape == (1, 4, 4)
    for i in range(len(ds)):
        x, y = ds[i]
        torch.testing.assert_close(x, ref.train[i], rtol=0, atol=0)
        assert int(y) == int(ref.train_labels[i])
    pixels = torch.from_numpy(np.asarray(ds.images).reshape(12, -1).astype(np.int64))
    cont = IdxImages(images, dtype=torch.float64, seed=3)
    x = torch.stack([cont[i] for i in range(len(cont))])
    assert torch.equal(torch.floor(x * 256).long(), pixels)  # each value in its pixel's cell
    torch.testing.assert_close(cont[5], cont[5 - 12], rtol=0, atol=0)  # same noise each access
    assert not torch.equal(cont[5], IdxImages(images, dtype=torch.float64, seed=4)[5])


def _vae_history(data) -> np.ndarray:
    """Losses of 2 epochs of a small VAE fitted on ``data`` from a fixed start."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(16, 2, hidden_dims=(8,))
    h = fit(vae.model, vae.guide, data, epochs=2, batch_size=5, progress=False)
    return h["loss"].to_numpy()


def test_fit_through_a_loader_equals_in_memory(mnist_root):
    ref = load_mnist(mnist_root, binarize=True).train
    images = mnist_root / MNIST_FILES["train"]

    loader = DataLoader(IdxImages(images, binarize=True), batch_size=5, shuffle=True)
    np.testing.assert_array_equal(_vae_history(loader), _vae_history(ref))


def test_bad_files(mnist_root, tmp_path):
    gz = tmp_path / "images.gz"
    write_idx(gz, np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="gzip-compressed and cannot be memory-mapped"):
        IdxImages(gz)
    with pytest.raises(ValueError, match=r"uint8 images \(N, H, W\)"):
        IdxImages(mnist_root / MNIST_FILES["train_labels"])
    with pytest.raises(ValueError, match="labels must hold 12 integers"):
        IdxImages(mnist_root / MNIST_FILES["train"], mnist_root / MNIST_FILES["test_labels"])
    with pytest.raises(TypeError, match="images must be a str or os.PathLike"):
        IdxImages(3)
    with pytest.raises(IndexError, match="index 12 is out of range"):
        IdxImages(mnist_root / MNIST_FILES["train"])[12]


def test_load_mnist_mmap_maps_both_splits(mnist_root):
    ref = load_mnist(mnist_root, binarize=True)
    mapped = load_mnist(mnist_root, binarize=True, mmap=True)
    assert isinstance(mapped, MappedMNIST) and mapped.name == "mnist" and mapped.binarized
    assert mapped.image_shape == ref.image_shape == (1, 4, 4)
    for split, n in (("train", 12), ("test", 3)):
        ds = getattr(mapped, split)
        assert isinstance(ds, IdxImages) and isinstance(ds.images, np.memmap) and len(ds) == n
        items = torch.stack([ds[i] for i in range(n)])
        torch.testing.assert_close(items, getattr(ref, split), rtol=0, atol=0)
        assert torch.equal(getattr(mapped, f"{split}_labels"), getattr(ref, f"{split}_labels"))
    cont = load_mnist(mnist_root, dtype=torch.float64, mmap=True)
    pixels = torch.from_numpy(np.asarray(cont.test.images).reshape(3, -1).astype(np.int64))
    x = torch.stack([cont.test[i] for i in range(3)])
    assert x.dtype == torch.float64 and torch.equal(torch.floor(x * 256).long(), pixels)
    same_seed = IdxImages(mnist_root / MNIST_FILES["test"], dtype=torch.float64, seed=0)
    assert not torch.equal(cont.test[0], same_seed[0])  # the test split draws with seed + 1


def test_fit_on_load_mnist_mmap_equals_in_memory(mnist_root):
    ref = load_mnist(mnist_root, binarize=True)

    mapped = load_mnist(mnist_root, binarize=True, mmap=True)
    np.testing.assert_array_equal(
        _vae_history(mapped), _vae_history(ref.train)
    )  # fit reads mapped.train
    pyro.clear_param_store()


def test_load_mnist_mmap_refusals(mnist_root, tmp_path):
    with pytest.raises(ValueError, match="device must be None"):
        load_mnist(mnist_root, mmap=True, device="cpu")
    with pytest.raises(TypeError, match="mmap must be a bool"):
        load_mnist(mnist_root, mmap="yes")
    gz = tmp_path / "gz"
    gz.mkdir()
    for key, stem in MNIST_FILES.items():
        shape = (2, 4, 4) if key in ("train", "test") else (2,)
        write_idx(gz / f"{stem}.gz", np.zeros(shape, dtype=np.uint8))
    with pytest.raises(ValueError, match="a gzip file cannot be memory-mapped"):
        load_mnist(gz, mmap=True)
    load_mnist(gz)  # the in-memory path still reads them
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="mmap=True needs"):
        load_mnist(tmp_path / "empty", mmap=True)
