"""Datasets and preprocessing: bundled images, 2-D toy densities and user-data loaders.

Every dataset is FLAT: ``Dataset.train`` is ``(N, D)`` and ``Dataset.test`` ``(M, D)``,
with the image shape ``(C, H, W)`` kept alongside. A user's arrays become one through
:func:`from_tensors`, a user's file (``.npy``, ``.npz``, ``.pt``, ``.csv``, IDX) through
:func:`load_file`. Nothing is downloaded.

>>> import pyro_genmodels as pgm
>>> pgm.data.toy2d("8gaussians", 5).shape
torch.Size([5, 2])
"""

from pyro_genmodels.data.datasets import BUNDLED, PIXEL_LEVELS, Dataset, load
from pyro_genmodels.data.files import load_file, read_arrays
from pyro_genmodels.data.idx import load_mnist, read_idx, read_mnist, write_idx
from pyro_genmodels.data.mapped import IdxImages, MappedMNIST, map_mnist
from pyro_genmodels.data.preprocess import binarize, dequantize, standardize
from pyro_genmodels.data.tensors import from_tensors
from pyro_genmodels.data.toy import TOY2D_ENTROPY, toy2d
from pyro_genmodels.data.validation import check_data

__all__ = [
    "BUNDLED",
    "PIXEL_LEVELS",
    "TOY2D_ENTROPY",
    "Dataset",
    "IdxImages",
    "MappedMNIST",
    "binarize",
    "check_data",
    "dequantize",
    "from_tensors",
    "load",
    "load_file",
    "load_mnist",
    "map_mnist",
    "read_arrays",
    "read_idx",
    "read_mnist",
    "standardize",
    "toy2d",
    "write_idx",
]
