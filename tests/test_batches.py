"""``fit`` on a map-style Dataset or a DataLoader: the batches, history and resume of tensors."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from pyro_genmodels.models import VAE
from pyro_genmodels.training import fit
from pyro_genmodels.training.batches import DatasetBatches, TensorBatches, epoch_order, make_batches

N, D, BATCH = 22, 6, 5  # 5 batches an epoch, the last of 2


def _data(dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((N, D), 0.4, dtype=dtype), generator=g)


def _train(data, epochs=3, **kwargs):
    """A small VAE (the ELBO draws noise, so any extra use of the global RNG shows)."""
    pyro.clear_param_store()
    torch.manual_seed(3)
    vae = VAE(D, 2, hidden_dims=(8,)).double()
    opt = pyro.optim.Adam({"lr": 0.01})
    h = fit(vae.model, vae.guide, data, optim=opt, epochs=epochs, seed=7, progress=False, **kwargs)
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return h, params


def _assert_same(a, b):
    (ha, pa), (hb, pb) = a, b
    np.testing.assert_array_equal(ha["loss"].to_numpy(), hb["loss"].to_numpy())
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0)


class _Rows(Dataset):
    """A plain map-style Dataset returning one row tensor per index."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def test_dataset_and_loader_give_the_tensor_history():
    x = _data()
    ref = _train(x, batch_size=BATCH)
    _assert_same(ref, _train(TensorDataset(x), batch_size=BATCH))
    _assert_same(ref, _train(_Rows(x), batch_size=BATCH))
    loader = DataLoader(TensorDataset(x), batch_size=BATCH, shuffle=True)
    _assert_same(ref, _train(loader))


def test_loader_with_a_worker_gives_the_tensor_history():
    x = _data()
    loader = DataLoader(_Rows(x), batch_size=BATCH, shuffle=True, num_workers=1)
    _assert_same(_train(x, batch_size=BATCH, epochs=2), _train(loader, epochs=2))


def test_loader_settings_are_kept():
    x = _data()
    ordered = DataLoader(TensorDataset(x), batch_size=BATCH, shuffle=False, drop_last=True)
    src = make_batches(ordered, None, None, 0)
    assert isinstance(src, DatasetBatches) and not src.shuffle and src.batch_size == BATCH
    batches = [b[0] for b in src.epoch(0)]
    assert [len(b) for b in batches] == [5, 5, 5, 5]  # drop_last drops the batch of 2
    torch.testing.assert_close(torch.cat(batches), x[:20])
    h, _ = _train(ordered)
    assert len(h) == 3


def test_shards_concatenate_to_the_global_batch():
    x = _data()
    full = TensorBatches((x,), BATCH, True, 5)
    parts = []
    for rank in range(2):
        src = DatasetBatches(TensorDataset(x), BATCH, True, 5)
        src.set_rank(rank, 2)
        parts.append([b[0] for b in src.epoch(1)])
    for i, (b,) in enumerate(full.epoch(1)):
        torch.testing.assert_close(torch.cat([parts[0][i], parts[1][i]]), b)
    order = torch.cat(epoch_order(N, BATCH, True, 5, 1))
    assert sorted(order.tolist()) == list(range(N))  # each datapoint once an epoch


def test_epoch_starts_at_a_given_step():
    x = _data()
    for src in (
        TensorBatches((x,), BATCH, True, 0),
        DatasetBatches(TensorDataset(x), BATCH, True, 0),
    ):
        whole = [b[0] for b in src.epoch(2)]
        tail = [b[0] for b in src.epoch(2, start=3)]
        assert len(tail) == 2
        for a, b in zip(whole[3:], tail):
            torch.testing.assert_close(a, b)


def test_loader_resume_equals_uninterrupted(tmp_path):
    x = _data()

    def loader():
        return DataLoader(TensorDataset(x), batch_size=BATCH, shuffle=True)

    ref = _train(loader(), epochs=4)
    _train(loader(), epochs=2, checkpoint_dir=tmp_path)
    resumed = _train(loader(), epochs=4, checkpoint_dir=tmp_path, resume=True)
    _assert_same(ref, resumed)
    with pytest.raises(ValueError, match="data.batch_size=5, now data.batch_size=4"):
        _train(TensorDataset(x), epochs=4, batch_size=4, checkpoint_dir=tmp_path, resume=True)


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.zeros(3, 2))


class _Dicts(_Rows):
    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i]}


def test_bad_loaders():
    x = _data()
    with pytest.raises(ValueError, match="differs from the DataLoader's batch_size=5"):
        make_batches(DataLoader(TensorDataset(x), batch_size=BATCH), 4, None, 0)
    with pytest.raises(ValueError, match="must be built with batch_size"):
        make_batches(DataLoader(TensorDataset(x), batch_sampler=[[0, 1]]), None, None, 0)
    sampler = torch.utils.data.WeightedRandomSampler(torch.ones(N), N)
    with pytest.raises(ValueError, match="custom sampler WeightedRandomSampler"):
        make_batches(DataLoader(TensorDataset(x), batch_size=2, sampler=sampler), None, None, 0)
    with pytest.raises(TypeError, match="map-style"):
        make_batches(_Stream(), 2, None, 0)
    with pytest.raises(TypeError, match="a collated batch must be a Tensor"):
        next(make_batches(_Dicts(x), 2, None, 0).epoch(0))
    with pytest.raises(ValueError, match="batch_size must be >= the number of processes"):
        make_batches(x, 1, None, 0).set_rank(0, 2)
    with pytest.raises(TypeError, match="shuffle must be True, False or None"):
        fit(lambda x: None, lambda x: None, x, shuffle="yes", progress=False)
