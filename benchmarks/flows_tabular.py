"""Tabular rows of the flow benchmark: test NLL per dimension on scikit-learn's
wine (178 x 13) and breast-cancer (569 x 30) features, over ``--seeds`` splits.

Split and standardization as in ``examples/tabular_density.py`` (whose
functions this reuses): per seed, 20% test, 20% of the rest validation,
features standardized with the training split's statistics. Models:

* ``gaussian``: full-covariance maximum-likelihood Gaussian (closed form);
* ``kde``: Gaussian kernel density estimate, bandwidth chosen on validation;
* ``maf``, ``spline-ar``: ours from a random start (4 layers, 2 x 64 hidden);
* ``maf-from-gaussian``, ``spline-ar-from-gaussian``: ours started at the
  fitted Gaussian (2 layers, 32 hidden, :func:`~pyro_genmodels.flows.start_at_gaussian`);
* ``MAF`` (``impl=zuko``): zuko's MAF (4 transforms, 2 x 64 hidden), same data, batch size,
  Adam learning rate and stopping rule (a loop written here).

Every flow: Adam lr 1e-3, batch 64, at most 500 epochs, validation NLL every
epoch, early stopping with patience 20, the best epoch's parameters kept.
Rows (``section="tabular"`` of ``benchmarks/results/flows.csv``):
``test_nll_nats`` = mean over seeds of the test NLL per dimension (nats),
``nll_sd`` its standard deviation over seeds, ``nll_vs_gaussian`` = the mean of
(model - Gaussian) per seed, ``seeds_at_or_below_gaussian``, ``best_epoch`` (mean).

Usage::

    python benchmarks/flows_tabular.py            # about 10 minutes on 2 cores
    python benchmarks/flows_tabular.py --quick    # smoke run (seconds, no CSV)
    python benchmarks/flows.py --sections tabular # the same rows from the flows benchmark
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "flows.csv"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tabular_density.py"
PATIENCE, BATCH, LR = 20, 64, 1e-3


def _example():
    spec = importlib.util.spec_from_file_location("tabular_density_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zuko_maf_nll(data: dict[str, torch.Tensor], epochs: int, seed: int) -> tuple[float, int]:
    """zuko's MAF under the same rule as ``pgm.fit(validation=, early_stopping=20,
    keep_best=True)``: per-epoch validation NLL, stop after 20 epochs without a new
    best, the best epoch's parameters restored."""
    import zuko

    torch.manual_seed(seed)
    x, valid, test = (data[k].float() for k in ("train", "valid", "test"))
    dim = x.shape[1]
    flow = zuko.flows.MAF(dim, transforms=4, hidden_features=(64, 64))
    opt = torch.optim.Adam(flow.parameters(), lr=LR)
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(flow.state_dict())
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(x), generator=generator).split(BATCH):
            loss = -flow().log_prob(x[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = -flow().log_prob(valid).mean().item()
        if val < best:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(flow.state_dict())
        elif epoch - best_epoch >= PATIENCE:
            break
    flow.load_state_dict(best_state)
    with torch.no_grad():
        return -flow().log_prob(test).mean().item() / dim, best_epoch


def tabular_rows(quick: bool = False, seeds: int = 3) -> list[dict]:
    """One row per (dataset, model): the figures described in the module docstring."""
    ex = _example()
    try:
        import zuko  # noqa: F401

        has_zuko = True
    except ImportError:
        has_zuko = False
    epochs = 3 if quick else 500
    seeds = 1 if quick else seeds
    runs = []
    for dataset in ex.LOADERS:
        for seed in range(seeds):
            data = ex.splits(dataset, seed)
            per = {"gaussian": (ex.gaussian_nll(data), math.nan)}
            per["kde"] = (ex.kde_nll(data)[0], math.nan)
            for flow, name in (("maf", "maf"), ("spline", "spline-ar")):
                per[name] = ex.flow_nll(data, flow, epochs, seed, "random")
                per[f"{name}-from-gaussian"] = ex.flow_nll(data, flow, epochs, seed, "gaussian")
            if has_zuko:
                per["zuko:MAF"] = zuko_maf_nll(data, epochs, seed)
            for model, (nll, best) in per.items():
                runs.append(dict(dataset=dataset, model=model, seed=seed, nll=nll, best=best,
                                 vs=nll - per["gaussian"][0]))  # fmt: skip
            print(dataset, seed, {k: round(v[0], 3) for k, v in per.items()}, flush=True)
    df = pd.DataFrame(runs)
    rows = []
    for (dataset, model), g in df.groupby(["dataset", "model"], sort=False):
        rows.append(
            dict(
                section="tabular",
                dataset=dataset,
                impl="zuko" if model.startswith("zuko:") else "ours",
                model=model.removeprefix("zuko:"),
                test_nll_nats=g.nll.mean(),
                nll_sd=g.nll.std(ddof=1) if len(g) > 1 else math.nan,
                nll_vs_gaussian=g.vs.mean(),
                seeds_at_or_below_gaussian=int((g.vs <= 0).sum()),
                best_epoch=g.best.mean(),
                seeds=len(g),
            )
        )
    return rows


def main(quick: bool = False, seeds: int = 3) -> pd.DataFrame:
    torch.set_num_threads(1)
    df = pd.DataFrame(tabular_rows(quick, seeds))
    print("test NLL per dimension (nats, standardized features; mean over seeds)")
    print(df.drop(columns="section").to_string(index=False, float_format="{:.3f}".format))
    if not quick:
        old = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame()
        if "section" in old:
            old = old[old.section != "tabular"]
        pd.concat([old, df], ignore_index=True).to_csv(RESULTS, index=False)
    return df


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="splits and training seeds")
    args = parser.parse_args()
    main(args.quick, args.seeds)
