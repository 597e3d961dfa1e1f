"""``pgm.data.load_file``: every format gives the same rows, every preparation its formula,
every problem with a file one ``ValueError`` (``FileNotFoundError``) naming the file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from data_file_helpers import FORMATS, LABELS, PIXELS, H, N, W, write_csv, write_format

from pyro_genmodels.data import (
    Dataset,
    from_tensors,
    load_file,
    read_arrays,
    standardize,
    write_idx,
)
from pyro_genmodels.data.idx import MNIST_FILES


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_same_rows(kind, tmp_path):
    path, extra = write_format(kind, tmp_path)
    ds = load_file(path, dequantize=256, **extra)
    expected = from_tensors(PIXELS.astype(np.float64), dtype=torch.float64)  # same split
    # dequantized pixels: floor(256 y) gives back each pixel, in the split's rows
    assert torch.equal(torch.floor(ds.train.double() * 256), expected.train)
    assert torch.equal(torch.floor(ds.test.double() * 256), expected.test)
    assert ds.image_shape == (1, H, W) and ds.name == path.name
    assert ds.train.dtype == torch.float32
    assert (ds.train_labels is not None) == (kind in ("npz", "pt-dict"))
    if ds.train_labels is not None:
        assert torch.equal(ds.train_labels, torch.from_numpy(LABELS)[_train_rows()])


def _train_rows():
    perm = np.random.RandomState(0).permutation(N)
    return torch.from_numpy(perm[: N - round(N * 0.2)])


def test_an_mnist_folder_keeps_its_split_and_labels(tmp_path):
    arrays = {"train": PIXELS[:30], "train_labels": LABELS[:30].astype(np.uint8)}
    arrays.update(test=PIXELS[30:], test_labels=LABELS[30:].astype(np.uint8))
    for key, stem in MNIST_FILES.items():
        write_idx(tmp_path / f"{stem}.gz", arrays[key])
    ds = load_file(tmp_path, binarize=True)
    assert ds.binarized and ds.train.shape == (30, 9) and ds.test.shape == (10, 9)
    assert torch.equal(ds.train, torch.from_numpy(PIXELS[:30].reshape(30, -1) > 127.5).float())
    assert torch.equal(ds.test_labels, torch.from_numpy(LABELS[30:]))


def test_binarize_is_the_threshold_of_each_kind(tmp_path):
    np.save(tmp_path / "u8.npy", PIXELS)
    ds = load_file(tmp_path / "u8.npy", binarize=True, test_fraction=0.5)
    both = torch.cat([ds.train, ds.test])
    assert ds.binarized and ds.support == "binary"
    assert both.sum() == (PIXELS > 127.5).sum()  # 1[p/255 > 0.5]
    unit = np.random.RandomState(1).rand(N, 5)
    np.save(tmp_path / "unit.npy", unit)
    ds = load_file(tmp_path / "unit.npy", binarize=True)
    assert torch.cat([ds.train, ds.test]).sum() == (unit > 0.5).sum()


def test_binary_values_are_marked_binarized_and_others_by_their_range(tmp_path):
    np.save(tmp_path / "b.npy", (PIXELS > 100).astype(np.float32))
    np.save(tmp_path / "bool.npy", PIXELS > 100)
    np.save(tmp_path / "u.npy", PIXELS / 255.0)
    np.save(tmp_path / "r.npy", PIXELS / 255.0 - 0.5)
    assert load_file(tmp_path / "b.npy").binarized
    assert load_file(tmp_path / "bool.npy").binarized
    assert load_file(tmp_path / "u.npy").support == "unit_interval"
    assert load_file(tmp_path / "r.npy").support == "real"


def test_standardize_uses_the_training_rows_only(tmp_path):
    x = np.random.RandomState(2).randn(N, 4) * [1.0, 10.0, 0.1, 3.0] + [5.0, -2.0, 0.0, 1.0]
    write_csv(tmp_path / "x.csv", x)
    ds = load_file(tmp_path / "x.csv", standardize=True, dtype=torch.float64)
    raw = from_tensors(x, dtype=torch.float64)
    mu, sd = raw.train.mean(0), raw.train.std(0, unbiased=False)
    torch.testing.assert_close(ds.train, (raw.train - mu) / sd, rtol=0, atol=1e-12)
    torch.testing.assert_close(ds.test, (raw.test - mu) / sd, rtol=0, atol=1e-12)
    torch.testing.assert_close(ds.train.mean(0), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(ds.train.std(0, unbiased=False), torch.ones(4, dtype=torch.float64))
    assert ds.support == "real"


def test_standardize_and_dataset_standardize_agree():
    x, t = torch.randn(10, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    (zx, zt), loc, scale = standardize(x, t)
    assert torch.equal(loc, x.mean(0)) and torch.equal(scale, x.std(0, unbiased=False))
    split = Dataset("t", x, t).split_validation(0.3)
    done = split.standardize()
    (a, v, b), _, _ = standardize(split.train, split.valid, split.test)
    assert torch.equal(done.train, a) and torch.equal(done.valid, v) and torch.equal(done.test, b)
    with pytest.raises(ValueError, match="binarized dataset cannot be standardized"):
        Dataset("b", torch.ones(2, 1), torch.ones(1, 1), binarized=True).standardize()


def test_read_arrays_reads_what_is_stored(tmp_path):
    write_csv(tmp_path / "x.csv", np.array([[1.5, -2.0], [3.0, 4e-3]]))
    assert read_arrays(tmp_path / "x.csv")["train"].tolist() == [[1.5, -2.0], [3.0, 0.004]]
    np.savez(tmp_path / "one.npz", anything=np.zeros((3, 2)))
    assert read_arrays(tmp_path / "one.npz")["train"].shape == (3, 2)


def _ragged_npy(path):
    np.save(path, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)


def _nan_npy(path):
    x = np.random.RandomState(0).rand(N, 3)
    x[5, 1] = np.nan
    np.save(path, x)


def _inf_csv(path):
    path.write_text("1,2\n3,inf\n5,6\n")


BAD_FILES = [
    ("missing.npy", None, {}, FileNotFoundError, "no data file at"),
    ("notes.txt", "some text\nmore text\n", {}, ValueError, "is not a data file this package"),
    ("prose.csv", "name,age\nalice,thirty\n", {}, ValueError, "line 2: 'alice' is not a number"),
    ("ragged.csv", "a,b,c\n1,2,3\n4,5\n", {}, ValueError, "line 3: 2 values, but the rows above"),
    ("hole.csv", "1,2,3\n4,,6\n", {}, ValueError, "line 2: an empty field is not a number"),
    ("empty.csv", "\n\n", {}, ValueError, "holds no rows"),
    ("nan.csv", "1,2\nnan,3\n4,5\n", {}, ValueError, "must be finite, but 1 of 6 values are NaN"),
    ("inf.csv", _inf_csv, {}, ValueError, "must be finite, but 1 of 6 values are NaN or inf"),
    ("ragged.npy", _ragged_npy, {}, ValueError, "holds Python objects (rows of different"),
    ("nan.npy", _nan_npy, {}, ValueError, "must be finite, but 1 of 120 values are NaN"),
    ("fake.npy", "not numpy", {}, ValueError, "is not a readable numpy file"),
    ("fake.pt", "not torch", {}, ValueError, "is not a torch file of tensors"),
    ("list.pt", lambda p: torch.save([1, 2], p), {}, ValueError, "must hold a tensor or a dict"),
    ("broken.gz", b"\x1f\x8b\x08\x00garbage", {}, ValueError, "is not a readable IDX file"),
    ("keys.npz", lambda p: np.savez(p, a=np.zeros((4, 2)), b=np.zeros((4, 2))), {},
     ValueError, "holds the arrays ['a', 'b']; name the training data 'train'"),
    ("ints.npy", lambda p: np.save(p, PIXELS), {}, ValueError,
     "holds integers (torch.uint8, values in [0, 255]): dequantize them"),
    ("real.npy", lambda p: np.save(p, np.linspace(-3, 3, 40).reshape(20, 2)),
     {"binarize": True}, ValueError, "binarize needs train in [0, 1] or uint8 pixels"),
    ("big.npy", lambda p: np.save(p, PIXELS), {"dequantize": 200}, ValueError,
     "dequantize=200: train must hold integers in {0, ..., 199}"),
    ("const.csv", "1,2\n1,3\n1,4\n1,5\n1,6\n", {"standardize": True}, ValueError,
     "feature(s) are constant in the training rows"),
    ("shape.npy", lambda p: np.save(p, np.zeros((10, 6))), {"image_shape": (2, 2)},
     ValueError, "image_shape (1, 2, 2) must have C*H*W equal to the number of features D=6"),
    ("flat.npy", lambda p: np.save(p, np.zeros(10)), {}, ValueError,
     "train must have shape (N, D), (N, H, W) or (N, C, H, W), got shape (10,)"),
    ("complex.npy", lambda p: np.save(p, np.zeros((4, 2), dtype=complex)), {}, ValueError,
     "must hold numbers, got numpy dtype complex128"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, content, options, error, message", BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_file_is_one_error_naming_it(name, content, options, error, message, tmp_path):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content(path)
    with pytest.raises(error) as caught:
        load_file(path, **options)
    text = str(caught.value)
    assert message in text and name in text and "\n" not in text, text


def test_preparations_are_exclusive_and_checked(tmp_path):
    np.save(tmp_path / "x.npy", PIXELS)
    with pytest.raises(ValueError, match="at most one of binarize, dequantize and standardize"):
        load_file(tmp_path / "x.npy", binarize=True, standardize=True)
    with pytest.raises(TypeError, match="dequantize must be an int >= 2 or None"):
        load_file(tmp_path / "x.npy", dequantize=2.0)
    with pytest.raises(TypeError, match="binarize must be a bool"):
        load_file(tmp_path / "x.npy", binarize=1)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        load_file(3)


def test_gzip_csv_is_not_taken_for_idx(tmp_path):
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b"1,2\n3,4\n"))
    with pytest.raises(ValueError, match="rows.csv.gz is not an IDX file: magic number"):
        load_file(path)


def test_standardize_and_support_keep_the_device(device):
    x = torch.randn(12, 3, dtype=torch.float64, device=device)
    ds = Dataset("t", x, x[:4] + 1.0)
    done = ds.standardize()
    assert done.train.device == done.test.device == torch.device(device)
    assert ds.support == "real" and Dataset("u", x.sigmoid(), x[:2].sigmoid()).support == (
        "unit_interval"
    )
