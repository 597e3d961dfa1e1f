"""The zoo's VAE beside pythae's VAE: same split, network, initial weights, optimizer, budget.

One seed of the side-by-side (:func:`side_by_side`) builds the zoo's ``vae`` entry for a
binarized dataset (``pgm.zoo.build``: the README's and the CLI's VAE, with the zoo's MLP
sizes), copies its freshly initialized encoder and decoder into a pythae ``VAE``
(``reconstruction_loss="bce"``; the encoder's second half is pythae's ``log_var``, the
decoder's output goes through a sigmoid), and trains

* pgm's VAE through ``pgm.fit`` with the zoo's loss (``vae.loss()``), optimizer
  (``pgm.optim.Adam`` with the entry's arguments: ``eps=1e-4``) and budget (epochs,
  learning rate, batch size); again with Adam's default ``eps=1e-8``; and with the zoo's
  recipe before (``pyro.infer.Trace_ELBO``, the Monte Carlo KL, and ``eps=1e-8``);
* pythae's VAE with pythae's ``BaseTrainer`` and the same budget (``torch.optim.Adam``,
  default ``eps=1e-8``; pythae keeps the epoch of lowest training loss, as its pipeline
  does).

Adam's ``eps`` is not scale-free: pythae's loss is the batch's mean, Pyro's ELBOs its sum
(``batch_size`` times larger gradients), so the same ``eps=1e-8`` damps pythae's steps as
``eps = 64e-8`` would pgm's at batch 64.

Both are scored by the same estimator, ``pgm.infer.log_likelihood`` with the same ``K``
(pythae's encoder and decoder are wrapped as a Pyro model/guide pair: ``q(z|x) =
N(mu, exp(log_var))``, ``p(x|z) = Bernoulli(logits)``), from the same random state.

pythae comes with the ``bench`` extra; nothing in ``pyro_genmodels`` imports it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import statistics
import tempfile
import time
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn

import pyro_genmodels as pgm


class _Encoder(BaseEncoder):
    """pythae's encoder interface around an MLP ``x -> (mu, log_var)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, log_var = self.net(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
        return ModelOutput(embedding=mu, log_covariance=log_var)


class _Decoder(BaseDecoder):
    """pythae's decoder interface around an MLP ``z -> logits``: ``reconstruction`` is
    ``sigmoid(logits)``, the probabilities pythae's BCE loss takes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


class PythaeAsPyro:
    """A trained pythae VAE as a Pyro model/guide pair, for ``pgm.infer.log_likelihood``:
    ``p(z) = N(0, I)``, ``p(x | z) = Bernoulli(logits = decoder(z))``,
    ``q(z | x) = N(mu(x), exp(log_var(x)))``; ``x`` ``(N, D)``."""

    def __init__(self, model) -> None:
        self.encoder, self.decoder = model.encoder.net, model.decoder.net
        self.z_dim = model.model_config.latent_dim

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(mu, (0.5 * log_var).exp()).to_event(1))


def _train_pythae(encoder: nn.Module, decoder: nn.Module, data, budget: dict, seed: int):
    """pythae's VAE on ``data.train`` with ``BaseTrainer``: returns the model it keeps."""
    z_dim = encoder[-1].out_features // 2
    config = VAEConfig(input_dim=(data.num_dims,), latent_dim=z_dim, reconstruction_loss="bce")
    model = VAE(config, encoder=_Encoder(encoder), decoder=_Decoder(decoder))
    train = BaseDataset(data.train, torch.zeros(len(data.train)))
    for name in list(logging.root.manager.loggerDict):  # pythae's loggers print each epoch
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            trainer_config = BaseTrainerConfig(
                output_dir=out,
                num_epochs=budget["epochs"],
                learning_rate=budget["lr"],
                per_device_train_batch_size=budget["batch_size"],
                optimizer_cls="Adam",
                seed=seed,
                no_cuda=True,
            )
            trainer = BaseTrainer(model, train_dataset=train, training_config=trainer_config)
            trainer.train()
    kept = trainer._best_model
    kept.eval()
    return kept


def _train_pgm(setup, loss, optim_args: dict, budget: dict, seed: int) -> None:
    """The zoo's training of ``setup`` (``pgm.zoo.run`` without validation)."""
    pgm.fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=loss,
        optim=pgm.optim.Adam({**optim_args, "lr": budget["lr"]}),
        epochs=budget["epochs"],
        batch_size=budget["batch_size"],
        seed=seed,
        progress=False,
    )


def _nll(model, guide, test: torch.Tensor, num_samples: int, seed: int) -> float:
    pyro.set_rng_seed(1000 + seed)
    with torch.no_grad():
        ll = pgm.infer.log_likelihood(model, guide, test, num_samples=num_samples)
    return float(-ll.mean())


#: pgm's recipes: the zoo's (its loss and Adam arguments), the zoo's loss with Adam's default
#: eps, and the zoo's recipe before (Trace_ELBO, default eps)
RECIPES = {
    "pgm": lambda setup: (setup.loss, setup.optim_args),
    "pgm_default_eps": lambda setup: (setup.loss, {}),
    "pgm_trace_elbo": lambda setup: (pyro.infer.Trace_ELBO(), {}),
}


def side_by_side(
    dataset: str,
    seed: int,
    num_samples: int,
    epochs: int | None = None,
    recipes: list[str] | None = None,
) -> dict:
    """Test NLLs (nats) of pgm's zoo VAE under each of ``recipes`` (default: every one of
    :data:`RECIPES`) and of pythae's VAE (``"pythae"``), one seed, plus training seconds."""
    data = pgm.data.load(dataset, binarize=True)
    budget = pgm.zoo.budget("vae", epochs=epochs)
    out: dict = {"budget": budget}
    initial: list[nn.Module] = []
    for name in RECIPES if recipes is None else recipes:
        recipe = RECIPES[name]
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        setup = pgm.zoo.build("vae", data)
        nets = [setup.module.encoder.net, setup.module.decoder]
        if not initial:
            initial = [copy.deepcopy(net) for net in nets]
        for a, b in zip(initial, nets):  # every model starts from the same weights
            assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        loss, optim_args = recipe(setup)
        start = time.perf_counter()
        _train_pgm(setup, loss, optim_args, budget, seed)
        out[f"{name}_seconds"] = time.perf_counter() - start
        setup.module.eval()
        out[name] = _nll(setup.model, setup.guide, data.test, num_samples, seed)
    start = time.perf_counter()
    theirs = _train_pythae(*initial, data, budget, seed)
    out["pythae_seconds"] = time.perf_counter() - start
    wrapped = PythaeAsPyro(theirs)
    out["pythae"] = _nll(wrapped.model, wrapped.guide, data.test, num_samples, seed)
    return out


#: the models of one seed's side-by-side, as the CSV names them
LABELS = {
    "pgm": "pgm VAE, zoo recipe (vae.loss(): TraceMeanField_ELBO; Adam eps 1e-4)",
    "pgm_default_eps": "pgm VAE, vae.loss() with Adam eps 1e-8",
    "pgm_trace_elbo": "pgm VAE, Trace_ELBO with Adam eps 1e-8 (the zoo before)",
    "pythae": "pythae VAE (BaseTrainer)",
}


def bench_pythae(
    dataset: str,
    seeds: list[int],
    num_samples: int,
    save: Callable[[list], None],
    epochs: int | None = None,
    recipes: list[str] | None = None,
) -> list[dict]:
    """The side-by-side for each seed (rows ``kind="pythae"``: each model's test NLL), then
    per pgm recipe (``recipes``, default all) the median over seeds of its NLL minus
    pythae's, with the standard deviation over seeds in ``spread``, and their mean with its
    standard error; ``save(rows)`` after each seed."""
    recipes = list(RECIPES) if recipes is None else recipes
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise ValueError(f"recipes must be among {sorted(RECIPES)}, got {unknown}")
    common = {"kind": "pythae", "dataset": dataset, "unit": "nats"}
    rows: list[dict] = []
    runs = []
    for seed in seeds:
        run = side_by_side(dataset, seed, num_samples, epochs, recipes)
        runs.append(run)
        for key in [*recipes, "pythae"]:
            label = LABELS[key]
            rows.append(
                {
                    **common,
                    "model": label,
                    "value": run[key],
                    "estimator": f"IW-{num_samples}",
                    "seconds": run[f"{key}_seconds"],
                    "epochs": run["budget"]["epochs"],
                    "seed": seed,
                }
            )
        save(rows)
    for key in recipes:
        gaps = [run[key] - run["pythae"] for run in runs]
        at_or_below = sum(gap <= 0 for gap in gaps)
        spread = statistics.stdev(gaps) if len(gaps) > 1 else float("nan")
        rows.append(
            {
                **common,
                "model": f"{LABELS[key]} minus pythae",
                "value": statistics.median(gaps),
                "spread": spread,
                "estimator": f"median of {len(gaps)} seeds, IW-{num_samples}; at or below "
                f"pythae on {at_or_below}/{len(gaps)}",
                "seconds": sum(run[f"{key}_seconds"] for run in runs),
                "epochs": runs[0]["budget"]["epochs"],
            }
        )
        rows.append(
            {
                **common,
                "model": f"{LABELS[key]} minus pythae, mean",
                "value": statistics.fmean(gaps),
                "spread": spread / len(gaps) ** 0.5,  # the mean's standard error
                "estimator": f"mean of {len(gaps)} seeds ± its standard error, IW-{num_samples}",
                "seconds": sum(run[f"{key}_seconds"] for run in runs),
                "epochs": runs[0]["budget"]["epochs"],
            }
        )
    save(rows)
    return rows
