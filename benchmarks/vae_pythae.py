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

:func:`step_agreement` evaluates one step of each at the same weights, batch and noise:
the same loss and, up to pgm's ``1e-5`` floor on the encoder's ``std`` (also evaluated at 0),
the same gradient.

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
from unittest import mock

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
import pyro_genmodels.models._likelihoods as likelihoods


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


def _pythae_vae(encoder: nn.Module, decoder: nn.Module, data) -> VAE:
    """pythae's ``VAE`` (``reconstruction_loss="bce"``) around the MLPs ``encoder`` and
    ``decoder`` (their modules, not copies)."""
    z_dim = encoder[-1].out_features // 2
    config = VAEConfig(input_dim=(data.num_dims,), latent_dim=z_dim, reconstruction_loss="bce")
    return VAE(config, encoder=_Encoder(encoder), decoder=_Decoder(decoder))


def _train_pythae(encoder: nn.Module, decoder: nn.Module, data, budget: dict, seed: int):
    """pythae's VAE on ``data.train`` with ``BaseTrainer``: returns the model it keeps."""
    model = _pythae_vae(encoder, decoder, data)
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


def _budget(data, epochs: int | None = None) -> dict:
    """The zoo's VAE budget on ``data`` (its epochs for ``data.train``'s size)."""
    return pgm.zoo.budget("vae", num_data=len(data.train), epochs=epochs)


def _nll(model, guide, test: torch.Tensor, num_samples: int, seed: int) -> float:
    pyro.set_rng_seed(1000 + seed)
    with torch.no_grad():
        ll = pgm.infer.log_likelihood(model, guide, test, num_samples=num_samples)
    return float(-ll.mean())


def step_agreement(dataset: str, seed: int, trained: bool, batch_size: int = 64) -> dict:
    """pgm's zoo VAE and pythae's VAE at one point: the same weights, batch and noise.

    The weights are the zoo's initial ones, or with ``trained`` those of pgm's VAE after the
    zoo's training (its recipe and budget, :func:`_train_pgm`). Both draw
    ``z = mu + std * eps`` with ``eps`` from torch's global generator, seeded alike before
    each evaluation. pgm's loss is the batch's sum, pythae's its mean, so pgm's is divided
    by ``B = batch_size`` before its gradient is taken. Returns ``loss``,
    ``|L_pgm - L_pythae| / L_pythae``, and ``gradient``, the largest over parameter tensors
    of ``||g_pgm - g_pythae|| / ||g_pythae||``; ``loss_no_floor`` and ``gradient_no_floor``
    the same with the ``1e-5`` that pgm's encoder adds to ``std`` (``MIN_SCALE``) set to 0
    for the evaluation (the weights are the same); ``epochs``, those pgm trained (0 at the
    initial weights). Measured (seeds 0-2): losses equal to 2e-6, gradients to 4e-5-2.5e-4
    (4e-3 to 6e-3 in one trained run), and without the floor to 3.4e-7, float32 rounding.
    The two libraries train one objective, and their runs differ in Adam's ``eps`` and their
    random streams (the batches' order, the noise).
    """
    data = pgm.data.load(dataset, binarize=True)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    setup = pgm.zoo.build("vae", data)
    budget = _budget(data)
    if trained:
        _train_pgm(setup, setup.loss, setup.optim_args, budget, seed)
    found = _compare(setup, data, data.train[:batch_size], seed)
    with mock.patch.object(likelihoods, "MIN_SCALE", 0.0):
        unfloored = _compare(setup, data, data.train[:batch_size], seed)
    epochs = budget["epochs"] if trained else 0
    return {
        **found,
        **{f"{key}_no_floor": value for key, value in unfloored.items()},
        "epochs": epochs,
    }


def _compare(setup, data, x: torch.Tensor, seed: int) -> dict:
    """:func:`step_agreement`'s two figures at ``setup``'s weights on the batch ``x``."""
    ours = [setup.module.encoder.net, setup.module.decoder]
    theirs = _pythae_vae(*(copy.deepcopy(net) for net in ours), data)
    for net in [*ours, theirs]:
        net.zero_grad()
    torch.manual_seed(seed)
    ours_loss = setup.loss.differentiable_loss(setup.model, setup.guide, x) / x.shape[0]
    ours_loss.backward()
    torch.manual_seed(seed)
    theirs_loss = theirs({"data": x}).loss
    theirs_loss.backward()
    pairs = zip(
        [p for net in ours for p in net.parameters()],
        [*theirs.encoder.parameters(), *theirs.decoder.parameters()],
    )
    gradient = max(float((a.grad - b.grad).norm() / b.grad.norm()) for a, b in pairs)
    loss = float((ours_loss - theirs_loss).detach().abs() / theirs_loss.detach().abs())
    return {"loss": loss, "gradient": gradient}


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
    budget = _budget(data, epochs)
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
    earlier: list[dict] | None = None,
) -> list[dict]:
    """The side-by-side for each seed (rows ``kind="pythae"``: each model's test NLL), then
    per pgm recipe (``recipes``, default all) the median over seeds of its NLL minus
    pythae's, with the standard deviation over seeds in ``spread``, and their mean with its
    standard error; ``save(rows)`` after each seed. ``earlier``: per-seed rows of other
    seeds from an earlier run (same dataset, K and budget), counted in the summaries."""
    recipes = list(RECIPES) if recipes is None else recipes
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise ValueError(f"recipes must be among {sorted(RECIPES)}, got {unknown}")
    data = pgm.data.load(dataset, binarize=True)
    planned = (f"IW-{num_samples}", _budget(data, epochs)["epochs"])
    found = {(row["estimator"], int(row["epochs"])) for row in earlier or []}
    if found - {planned}:
        raise ValueError(
            f"the earlier {dataset} rows were measured with (estimator, epochs) "
            f"{sorted(found - {planned})}, this run with {planned}: one summary cannot mix "
            "them; write to another --out"
        )
    common = {"kind": "pythae", "dataset": dataset, "unit": "nats"}
    rows: list[dict] = []
    for seed in seeds:
        run = side_by_side(dataset, seed, num_samples, epochs, recipes)
        for key in [*recipes, "pythae"]:
            rows.append(
                {
                    **common,
                    "model": LABELS[key],
                    "value": run[key],
                    "estimator": f"IW-{num_samples}",
                    "seconds": run[f"{key}_seconds"],
                    "epochs": run["budget"]["epochs"],
                    "seed": seed,
                }
            )
        save(rows)
    # every recipe with rows of both in this run or before
    rows += _summaries(common, [*(earlier or []), *rows], list(RECIPES), num_samples)
    save(rows)
    return rows


def _summaries(common: dict, per_seed: list[dict], recipes: list[str], k: int) -> list[dict]:
    """Per recipe, its NLL minus pythae's over the seeds that have both in ``per_seed``:
    the median (``spread``: the standard deviation over seeds) and the mean (``spread``: its
    standard error)."""
    by_seed: dict[int, dict[str, dict]] = {}
    for row in per_seed:
        by_seed.setdefault(int(row["seed"]), {})[row["model"]] = row
    out = []
    for key in recipes:
        pairs = [
            (found[LABELS[key]], found[LABELS["pythae"]])
            for found in by_seed.values()
            if LABELS[key] in found and LABELS["pythae"] in found
        ]
        gaps = [ours["value"] - theirs["value"] for ours, theirs in pairs]
        if not gaps:
            continue
        at_or_below = sum(gap <= 0 for gap in gaps)
        spread = statistics.stdev(gaps) if len(gaps) > 1 else float("nan")
        seconds = sum(ours["seconds"] for ours, _ in pairs)
        epochs = pairs[0][0]["epochs"]
        out.append(
            {
                **common,
                "model": f"{LABELS[key]} minus pythae",
                "value": statistics.median(gaps),
                "spread": spread,
                "estimator": f"median of {len(gaps)} seeds, IW-{k}; at or below pythae on "
                f"{at_or_below}/{len(gaps)}",
                "seconds": seconds,
                "epochs": epochs,
            }
        )
        out.append(
            {
                **common,
                "model": f"{LABELS[key]} minus pythae, mean",
                "value": statistics.fmean(gaps),
                "spread": spread / len(gaps) ** 0.5,  # the mean's standard error
                "estimator": f"mean of {len(gaps)} seeds ± its standard error, IW-{k}",
                "seconds": seconds,
                "epochs": epochs,
            }
        )
    return out


def bench_step_agreement(datasets: list[str], seeds: list[int]) -> list[dict]:
    """Rows ``kind="pythae_step"``: :func:`step_agreement` per dataset and seed, at the
    initial weights and after training."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            for trained, where in [(False, "initial"), (True, "trained (the zoo's budget)")]:
                start = time.perf_counter()
                found = step_agreement(dataset, seed, trained)
                seconds = time.perf_counter() - start
                for key, what in [
                    ("loss", "loss per datapoint"),
                    ("gradient", "gradient"),
                    ("loss_no_floor", "loss per datapoint, pgm's scale floor at 0"),
                    ("gradient_no_floor", "gradient, pgm's scale floor at 0"),
                ]:
                    rows.append(
                        {
                            "kind": "pythae_step",
                            "dataset": dataset,
                            "model": f"pgm VAE against pythae VAE, one step: {what}, "
                            f"{where} weights",
                            "value": found[key],
                            "unit": "relative difference",
                            "estimator": "same weights, batch (the first 64 training images) "
                            "and noise; gradient: the largest over parameter tensors",
                            "seconds": seconds,
                            "epochs": found["epochs"],
                            "seed": seed,
                        }
                    )
    return rows
