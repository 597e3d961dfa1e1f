"""Data files of every format :func:`pyro_genmodels.data.load_file` reads, for the tests."""

from __future__ import annotations

import numpy as np
import torch

from pyro_genmodels.data import write_idx

N, H, W = 40, 3, 3
PIXELS = np.random.RandomState(0).randint(0, 256, size=(N, H, W)).astype(np.uint8)
LABELS = np.arange(N) % 4


def write_csv(path, rows, header=True):
    lines = ([",".join(f"c{j}" for j in range(rows.shape[1]))] if header else []) + [
        ",".join(str(v) for v in row) for row in rows
    ]
    path.write_text("\n".join(lines) + "\n")


def write_format(kind, folder):
    """``PIXELS`` (and, where the format holds them, ``LABELS``) in format ``kind``;
    returns the path and the keyword arguments the flat formats need."""
    flat = {"image_shape": (H, W)}
    if kind == "npy":
        np.save(folder / "x.npy", PIXELS)
        return folder / "x.npy", {}
    if kind == "npz":
        np.savez(folder / "x.npz", train=PIXELS, train_labels=LABELS)
        return folder / "x.npz", {}
    if kind == "pt":
        torch.save(torch.from_numpy(PIXELS), folder / "x.pt")
        return folder / "x.pt", {}
    if kind == "pt-dict":
        torch.save({"x": torch.from_numpy(PIXELS), "y": torch.from_numpy(LABELS)}, folder / "d.pt")
        return folder / "d.pt", {}
    if kind == "csv":
        write_csv(folder / "x.csv", PIXELS.reshape(N, -1))
        return folder / "x.csv", flat
    if kind == "csv-no-header":
        write_csv(folder / "x.csv", PIXELS.reshape(N, -1), header=False)
        return folder / "x.csv", flat
    if kind == "idx":
        write_idx(folder / "images-idx3-ubyte", PIXELS)
        return folder / "images-idx3-ubyte", {}
    if kind == "idx-gz":
        write_idx(folder / "images-idx3-ubyte.gz", PIXELS)
        return folder / "images-idx3-ubyte.gz", {}
    raise AssertionError(kind)


FORMATS = ["npy", "npz", "pt", "pt-dict", "csv", "csv-no-header", "idx", "idx-gz"]
