"""The validation policy of ``pyro_genmodels._checks``, over the public constructors and
entry points: a float or a bool where an int is meant is a ``TypeError``, a negative int a
``ValueError``, and every message names the argument. Per-call data-value checks follow
Pyro's validation switch.
"""

import importlib
import inspect
import math
import re
import tempfile
import typing
from pathlib import Path

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels import _checks, flows
from pyro_genmodels.infer import (
    GANLoss,
    IWAELoss,
    WGANGPLoss,
    bits_per_dim,
    importance_log_weights,
    log_likelihood,
)
from pyro_genmodels.models import CVAE, SSVAE, VAE, WAE, FlowDensity, LatentKernel
from pyro_genmodels.nn import FVSBN, MADE, MLP, NADE, RNN, ConvEncoder, PixelCNN
from pyro_genmodels.training import KLAnnealing


def model(x):
    pass


def guide(x):
    pass


X = torch.zeros(4, 2)

INT_ARGUMENTS = [
    pytest.param("x_dim", lambda v: VAE(v, 2), id="VAE.x_dim"),
    pytest.param("z_dim", lambda v: VAE(4, v), id="VAE.z_dim"),
    pytest.param("hidden_dims[0]", lambda v: VAE(4, 2, hidden_dims=[v]), id="VAE.hidden_dims"),
    pytest.param("num_classes", lambda v: CVAE(4, 2, num_classes=v), id="CVAE.num_classes"),
    pytest.param("num_classes", lambda v: SSVAE(4, 2, v), id="SSVAE.num_classes"),
    pytest.param("z_dim", lambda v: WAE(4, v), id="WAE.z_dim"),
    pytest.param(
        "epochs",
        lambda v: KLAnnealing(VAE(4, 2, hidden_dims=[2]), epochs=v),
        id="KLAnnealing.epochs",
    ),
    pytest.param("z_dim", lambda v: LatentKernel(v), id="LatentKernel.z_dim"),
    pytest.param("dim", lambda v: FlowDensity(v), id="FlowDensity.dim"),
    pytest.param("num_layers", lambda v: FlowDensity(2, num_layers=v), id="FlowDensity.num_layers"),
    pytest.param(
        "hidden_dims[0]", lambda v: flows.realnvp(4, hidden_dims=[v]), id="realnvp.hidden"
    ),
    pytest.param("num_layers", lambda v: flows.maf(4, num_layers=v), id="maf.num_layers"),
    pytest.param("cache_size", lambda v: flows.maf(4, cache_size=v), id="maf.cache_size"),
    pytest.param(
        "image_shape[1]", lambda v: flows.glow(16, image_shape=(1, v, 4)), id="glow.image"
    ),
    pytest.param("in_dim", lambda v: MLP(v, [2], 2), id="MLP.in_dim"),
    pytest.param("hidden_dims[0]", lambda v: MLP(2, [v], 2), id="MLP.hidden_dims"),
    pytest.param(
        "image_shape[1]", lambda v: ConvEncoder((1, v, 8), 4), id="ConvEncoder.image_shape"
    ),
    pytest.param("out_dim", lambda v: ConvEncoder((1, 8, 8), v), id="ConvEncoder.out_dim"),
    pytest.param("input_dim", lambda v: FVSBN(v), id="FVSBN.input_dim"),
    pytest.param("num_masks", lambda v: MADE(3, num_masks=v), id="MADE.num_masks"),
    pytest.param("hidden_dims", lambda v: MADE(3, hidden_dims=[v]), id="MADE.hidden_dims"),
    pytest.param("context_dim", lambda v: MADE(3, context_dim=v), id="MADE.context_dim"),
    pytest.param("hidden_dim", lambda v: NADE(3, hidden_dim=v), id="NADE.hidden_dim"),
    pytest.param("hidden_dim", lambda v: RNN(hidden_dim=v, vocab_size=3), id="RNN.hidden_dim"),
    pytest.param("channels", lambda v: PixelCNN((1, 4, 4), channels=v), id="PixelCNN.channels"),
    pytest.param(
        "num_layers", lambda v: PixelCNN((1, 4, 4), num_layers=v), id="PixelCNN.num_layers"
    ),
    pytest.param("image_shape[2]", lambda v: PixelCNN((1, 4, v)), id="PixelCNN.image_shape"),
    pytest.param("num_particles", lambda v: IWAELoss(v), id="IWAELoss.num_particles"),
    pytest.param(
        "max_plate_nesting",
        lambda v: IWAELoss(max_plate_nesting=v),
        id="IWAELoss.max_plate_nesting",
    ),
    pytest.param(
        "n_critic", lambda v: GANLoss(torch.nn.Linear(2, 1), n_critic=v), id="GANLoss.n_critic"
    ),
    pytest.param("epochs", lambda v: pgm.fit(model, guide, X, epochs=v), id="fit.epochs"),
    pytest.param(
        "batch_size", lambda v: pgm.fit(model, guide, X, batch_size=v), id="fit.batch_size"
    ),
    pytest.param("seed", lambda v: pgm.fit(model, guide, X, seed=v), id="fit.seed"),
    pytest.param(
        "num_samples",
        lambda v: log_likelihood(model, guide, X, num_samples=v),
        id="log_likelihood.num_samples",
    ),
    pytest.param(
        "num_particles",
        lambda v: importance_log_weights(model, guide, X, num_particles=v),
        id="importance_log_weights.num_particles",
    ),
    pytest.param("num_dims", lambda v: bits_per_dim(1.0, v), id="bits_per_dim.num_dims"),
    pytest.param("n", lambda v: pgm.data.toy2d("moons", v), id="toy2d.n"),
    pytest.param("seed", lambda v: pgm.data.from_tensors(X, seed=v), id="from_tensors.seed"),
    pytest.param(
        "nrow",
        lambda v: pgm.diagnostics.plot_samples(torch.zeros(4, 4), (2, 2), nrow=v),
        id="plot_samples.nrow",
    ),
]


@pytest.mark.parametrize("value,error", [(2.0, TypeError), (True, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("name,build", INT_ARGUMENTS)
def test_int_arguments(name, build, value, error):
    with pytest.raises(error, match=re.escape(name)):
        build(value)


REAL_ARGUMENTS = [
    pytest.param("beta", lambda v: VAE(4, 2, hidden_dims=[2], beta=v), id="VAE.beta"),
    pytest.param("alpha", lambda v: SSVAE(4, 2, 3, hidden_dims=[2], alpha=v), id="SSVAE.alpha"),
    pytest.param(
        "start", lambda v: KLAnnealing(VAE(4, 2, hidden_dims=[2]), start=v), id="KL.start"
    ),
    pytest.param(
        "gp_weight", lambda v: WGANGPLoss(torch.nn.Linear(2, 1), gp_weight=v), id="WGANGP.gp_weight"
    ),
    pytest.param(
        "r1_weight", lambda v: GANLoss(torch.nn.Linear(2, 1), r1_weight=v), id="GAN.r1_weight"
    ),
]


@pytest.mark.parametrize("value,error", [("1", TypeError), (True, TypeError), (-1.0, ValueError)])
@pytest.mark.parametrize("name,build", REAL_ARGUMENTS)
def test_real_arguments(name, build, value, error):
    with pytest.raises(error, match=re.escape(name)):
        build(value)


def public_callables():
    """``{"<subpackage>.<qualname>": callable}``: every class and function a user reaches as
    ``pgm.fit`` or ``pgm.<subpackage>.<name>`` (its ``__all__``, else its public names), the
    registries (losses, kernels, flow builders), and the public methods those classes define
    or inherit from this package."""
    objs = [pgm.fit]
    for sub in pgm._SUBMODULES:
        module = importlib.import_module(f"pyro_genmodels.{sub}")
        names = getattr(module, "__all__", None)
        if names is None:  # the names the module defines (not those it imports)
            names = [
                n
                for n, v in vars(module).items()
                if n[0] != "_" and getattr(v, "__module__", "").startswith(module.__name__)
            ]
        objs += [getattr(module, n) for n in names]
    objs += [*pgm.infer.LOSSES, *pgm.infer.KERNELS, *pgm.flows.BUILDERS.values()]
    found = {}
    for obj in objs:
        if not (callable(obj) and getattr(obj, "__module__", "").startswith("pyro_genmodels")):
            continue
        found[f"{obj.__module__.split('.')[1]}.{obj.__qualname__}"] = obj
        for klass in obj.__mro__ if inspect.isclass(obj) else ():
            if not klass.__module__.startswith("pyro_genmodels"):
                continue
            for name, attr in vars(klass).items():
                method = getattr(klass, name)
                if name[0] == "_" or isinstance(attr, property) or not callable(method):
                    continue
                if getattr(method, "__module__", "").startswith("pyro_genmodels"):
                    found[f"{klass.__module__.split('.')[1]}.{klass.__qualname__}.{name}"] = method
    return found


def float_arguments():
    """``"<callable>.<parameter>"`` for every parameter of a public callable that is annotated
    with ``float`` (alone, optional, in a union or a sequence) or has a float default."""
    keys = set()
    for name, fn in public_callables().items():
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        for p in signature.parameters.values():  # annotations as written (str or type)
            if "float" in str(p.annotation) or isinstance(p.default, float):
                keys.add(f"{name}.{p.name}")
    return keys


def _rbm():
    return pgm.models.RBM(3, 2)


def _energy():
    return pgm.distributions.EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (2,))


def _ar_net():
    return pyro.nn.AutoRegressiveNN(2, [4], param_dims=[8, 8, 7])


class Case(typing.NamedTuple):
    """A builder that must reject ``values`` with a ValueError matching ``match`` (default:
    the argument's name)."""

    build: typing.Callable
    values: tuple = (math.nan, math.inf, -math.inf)
    match: str | None = None


#: Every float argument of the public API: a builder ``value -> call`` that must reject NaN
#: and ±inf with a ValueError naming the argument (a :class:`Case` where only some of them
#: are meaningless), or the reason NaN/inf has a meaning there.
#: ``test_every_float_argument_is_walked`` fails when a public float argument is missing.
FLOAT_ARGUMENTS = {
    "data.Dataset.split_validation.fraction": lambda v: pgm.data.from_tensors(
        torch.rand(10, 2)
    ).split_validation(v),
    "data.binarize.threshold": lambda v: pgm.data.binarize(torch.rand(3), v),
    "data.from_tensors.test_fraction": lambda v: pgm.data.from_tensors(
        torch.rand(10, 2), test_fraction=v
    ),
    "diagnostics.active_units.threshold": lambda v: pgm.diagnostics.active_units(
        model, guide, X, threshold=v
    ),
    "diagnostics.class_coverage.min_fraction": lambda v: pgm.diagnostics.class_coverage(
        X, pgm.diagnostics.SampleClassifier(2, 2), min_fraction=v
    ),
    "diagnostics.mmd.bandwidth": lambda v: pgm.diagnostics.mmd(X, X, bandwidth=v),
    "diagnostics.mode_coverage.min_fraction": lambda v: pgm.diagnostics.mode_coverage(
        X, "8gaussians", min_fraction=v
    ),
    "diagnostics.mode_coverage.num_std": lambda v: pgm.diagnostics.mode_coverage(
        X, "8gaussians", num_std=v
    ),
    "diagnostics.plot_density_2d.bounds": lambda v: pgm.diagnostics.plot_density_2d(
        lambda x: x.sum(-1), bounds=((-1.0, v), (-1.0, 1.0)), grid=4
    ),
    "distributions.AutoregressiveDistribution.temperature": lambda v: (
        pgm.distributions.AutoregressiveDistribution(FVSBN(3), temperature=v)
    ),
    "distributions.BernoulliMixture.fit_em.prior_count": lambda v: (
        pgm.distributions.BernoulliMixture.fit_em(torch.zeros(4, 3), 2, prior_count=v)
    ),
    "distributions.BernoulliMixture.fit_em.tol": lambda v: (
        pgm.distributions.BernoulliMixture.fit_em(torch.zeros(4, 3), 2, tol=v)
    ),
    "flows.AffineCoupling.log_scale_bound": lambda v: flows.AffineCoupling(
        1, torch.nn.Linear(1, 2), log_scale_bound=v
    ),
    "flows.ConditionalAffineCoupling.log_scale_bound": lambda v: flows.ConditionalAffineCoupling(
        1, torch.nn.Linear(1, 2), log_scale_bound=v
    ),
    "flows.MaskedAffineAutoregressive.log_scale_bound": lambda v: flows.MaskedAffineAutoregressive(
        _ar_net(), log_scale_bound=v
    ),
    "flows.RQSplineAutoregressive.bound": lambda v: flows.RQSplineAutoregressive(
        _ar_net(), bound=v
    ),
    "flows.ConditionalRQSplineAutoregressive.bound": lambda v: (
        flows.ConditionalRQSplineAutoregressive(_ar_net(), bound=v)
    ),
    "flows.RQSplineCoupling.bound": lambda v: flows.RQSplineCoupling(
        1, torch.nn.Linear(1, 31), bound=v
    ),
    "flows.ConditionalRQSplineCoupling.bound": lambda v: flows.ConditionalRQSplineCoupling(
        1, torch.nn.Linear(1, 31), bound=v
    ),
    "flows.ConditionalSplineCoupling.bound": lambda v: flows.conditional_spline_coupling(
        2, 1, bound=v
    ),
    "flows.conditional_spline_coupling.bound": lambda v: flows.conditional_spline_coupling(
        2, 1, bound=v
    ),
    "flows.spline.bound": lambda v: flows.spline(2, bound=v),
    "flows.rational_quadratic_spline.bound": lambda v: flows.rational_quadratic_spline(
        torch.zeros(2, 1), torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 3), v
    ),
    "flows.soft_clamp.bound": lambda v: flows.soft_clamp(torch.zeros(2), v),
    "flows.LogitTransform.alpha": lambda v: flows.LogitTransform(v),
    "flows.GaussianAffine.from_data.shrinkage": lambda v: flows.GaussianAffine.from_data(
        torch.randn(10, 2), shrinkage=v
    ),
    "flows.gaussian_fit.shrinkage": lambda v: flows.gaussian_fit(torch.randn(10, 2), v),
    "flows.start_at_gaussian.shrinkage": lambda v: flows.start_at_gaussian(
        flows.maf(2), torch.randn(10, 2), v
    ),
    "infer.BoltzmannAnnealingPath.smoothing": lambda v: pgm.infer.BoltzmannAnnealingPath(
        _rbm(), data=torch.ones(4, 3), smoothing=v
    ),
    "infer.base_rate_logits.smoothing": lambda v: pgm.infer.base_rate_logits(
        torch.ones(4, 3), smoothing=v
    ),
    "infer.ContrastiveDivergenceLoss.energy_reg": lambda v: pgm.infer.ContrastiveDivergenceLoss(
        energy_reg=v
    ),
    "infer.ContrastiveDivergenceLoss.reinit_prob": lambda v: pgm.infer.ContrastiveDivergenceLoss(
        reinit_prob=v
    ),
    "infer.EnergyAnnealingPath.base_loc": lambda v: pgm.infer.EnergyAnnealingPath(
        _energy(), base_loc=v
    ),
    "infer.EnergyAnnealingPath.base_scale": lambda v: pgm.infer.EnergyAnnealingPath(
        _energy(), base_scale=v
    ),
    "infer.EnergyAnnealingPath.step_size": lambda v: pgm.infer.EnergyAnnealingPath(
        _energy(), step_size=v
    ),
    "infer.EnergyAnnealingPath.log_density.beta": lambda v: pgm.infer.EnergyAnnealingPath(
        _energy()
    ).log_density(torch.zeros(3, 2), v),
    "infer.EnergyAnnealingPath.transition.beta": lambda v: pgm.infer.EnergyAnnealingPath(
        _energy()
    ).transition(torch.zeros(3, 2), v),
    "infer.AnnealingPath.log_density.beta": "the abstract interface; implementations are walked",
    "infer.AnnealingPath.transition.beta": "the abstract interface; implementations are walked",
    "infer.GANLoss.r1_weight": lambda v: GANLoss(torch.nn.Linear(2, 1), r1_weight=v),
    "infer.WGANGPLoss.gp_weight": lambda v: WGANGPLoss(torch.nn.Linear(2, 1), gp_weight=v),
    "infer.WGANLoss.clip_value": lambda v: pgm.infer.WGANLoss(
        torch.nn.Linear(2, 1), pyro.optim.Adam({}), clip_value=v
    ),
    "infer.Langevin.step_size": lambda v: pgm.infer.Langevin(model, step_size=v),
    "infer.Langevin.noise_scale": lambda v: pgm.infer.Langevin(model, noise_scale=v),
    "infer.Langevin.target_accept_prob": lambda v: pgm.infer.Langevin(
        model, adjust=True, target_accept_prob=v
    ),
    "distributions.LangevinSampler.step_size": lambda v: pgm.infer.LangevinSampler(v),
    "distributions.LangevinSampler.noise_scale": lambda v: pgm.infer.LangevinSampler(
        0.1, noise_scale=v
    ),
    # an infinite end of the box leaves that side open: only NaN is meaningless
    "distributions.LangevinSampler.clamp": Case(
        lambda v: pgm.infer.LangevinSampler(0.1, clamp=(-1.0, v)), (math.nan,)
    ),
    "distributions.LangevinSampler.init_loc": lambda v: pgm.infer.LangevinSampler(0.1, init_loc=v),
    "distributions.LangevinSampler.init_scale": lambda v: pgm.infer.LangevinSampler(
        0.1, init_scale=v
    ),
    "distributions.EnergyDistribution.potential.beta": lambda v: _energy().potential(
        torch.zeros(2), beta=v
    ),
    "distributions.AdaptiveLangevinSampler.step_size": lambda v: pgm.infer.AdaptiveLangevinSampler(
        step_size=v
    ),
    "distributions.AdaptiveLangevinSampler.target_accept": lambda v: (
        pgm.infer.AdaptiveLangevinSampler(target_accept=v)
    ),
    "distributions.AdaptiveLangevinSampler.init_loc": lambda v: pgm.infer.AdaptiveLangevinSampler(
        init_loc=v
    ),
    "distributions.AdaptiveLangevinSampler.init_scale": lambda v: pgm.infer.AdaptiveLangevinSampler(
        init_scale=v
    ),
    "distributions.AdaptiveLangevinSampler.adapt_rate": lambda v: pgm.infer.AdaptiveLangevinSampler(
        adapt_rate=v
    ),
    "distributions.AdaptiveLangevinSampler.tame": lambda v: pgm.infer.AdaptiveLangevinSampler(
        tame=v
    ),
    "infer.DivergenceMonitor.max_energy": lambda v: pgm.infer.DivergenceMonitor("k", max_energy=v),
    "infer.DivergenceMonitor.max_gap": lambda v: pgm.infer.DivergenceMonitor("k", max_gap=v),
    "infer.DivergenceMonitor.range_factor": lambda v: pgm.infer.DivergenceMonitor(
        "k", range_factor=v
    ),
    "infer.ScoreMatchingLoss.noise_scale": lambda v: pgm.infer.ScoreMatchingLoss(
        "denoising", noise_scale=[1.0, v]
    ),
    "infer.annealed_langevin.sigmas": lambda v: pgm.infer.annealed_langevin(
        lambda x, s: x.sum(-1), torch.zeros(3, 2), [v, 1.0]
    ),
    "infer.annealed_langevin.step_size": lambda v: pgm.infer.annealed_langevin(
        lambda x, s: x.sum(-1), torch.zeros(3, 2), [1.0], step_size=v
    ),
    "infer.annealed_langevin.clamp": Case(
        lambda v: pgm.infer.annealed_langevin(
            lambda x, s: x.sum(-1), torch.zeros(3, 2), [1.0], clamp=(v, 1.0)
        ),
        (math.nan,),
    ),
    "infer.ais.betas": lambda v: pgm.infer.ais(_energy(), betas=torch.tensor([0.0, v, 1.0])),
    "infer.run_ais.betas": lambda v: pgm.infer.run_ais(
        pgm.infer.EnergyAnnealingPath(_energy()), [0.0, v, 1.0]
    ),
    "infer.bits_per_dim.nll_nats": "a computed result mapped elementwise: +inf nats (a point "
    "of probability 0) is +inf bits/dim, and NaN passes through as in torch",
    "infer.bits_per_dim.shift": lambda v: bits_per_dim(1.0, 4, shift=v),
    "infer.rescale_log_likelihood.log_p": "a computed result mapped elementwise: log p = -inf "
    "(probability 0) stays -inf, and NaN passes through as in torch",
    "infer.rescale_log_likelihood.scale": lambda v: pgm.infer.rescale_log_likelihood(1.0, 4, v),
    "models.VAE.beta": lambda v: VAE(4, 2, hidden_dims=[2], beta=v),
    "models.CVAE.beta": lambda v: CVAE(4, 2, num_classes=2, hidden_dims=[2], beta=v),
    "models.WAE.beta": lambda v: WAE(4, 2, hidden_dims=[2], beta=v),
    "models.WAE.loss.bandwidth": lambda v: WAE(4, 2, hidden_dims=[2]).loss(bandwidth=v),
    "models.WAE.loss.mmd_scale": lambda v: WAE(4, 2, hidden_dims=[2]).loss(mmd_scale=v),
    "models.SSVAE.alpha": lambda v: SSVAE(4, 2, 3, hidden_dims=[2], alpha=v),
    "models.LatentKernel.bandwidth": lambda v: LatentKernel(2, bandwidth=v),
    "training.KLAnnealing.start": lambda v: KLAnnealing(VAE(4, 2, hidden_dims=[2]), start=v),
    "training.KLAnnealing.end": lambda v: KLAnnealing(VAE(4, 2, hidden_dims=[2]), end=v),
    "models.FlowDensity.alpha": lambda v: FlowDensity(2, preprocess="logit", alpha=v),
    "models.RBM.contrast_backward.scale": lambda v: pgm.models.RBM(3, 2).contrast_backward(
        torch.ones(2, 3), torch.zeros(2, 3), v
    ),
    "models.RBM.init_scale": lambda v: pgm.models.RBM(3, 2, init_scale=v),
    "models.LayeredBoltzmann.sgd.lr": lambda v: _rbm().sgd(lr=v),
    "models.LayeredBoltzmann.sgd.momentum": lambda v: _rbm().sgd(momentum=v),
    "models.LayeredBoltzmann.sgd.weight_decay": lambda v: _rbm().sgd(weight_decay=v),
    "models.LayeredBoltzmann.sgd.final_lr": lambda v: _rbm().sgd(final_lr=v),
    **{
        f"infer.{recipe}.{arg}": (lambda r, a: lambda v: getattr(pgm.infer, r)(**{a: v}))(
            recipe, arg
        )
        for recipe in ("SGDSchedule", "RBMRecipe", "DBMRecipe")
        for arg in ("lr", "final_lr", "momentum", "weight_decay")
    },
    **{
        f"infer.DBMRecipe.{arg}": (lambda a: lambda v: pgm.infer.DBMRecipe(**{a: v}))(arg)
        for arg in ("pretrain_lr", "pretrain_momentum", "pretrain_weight_decay")
    },
    "models.DBM.init_scale": lambda v: pgm.models.DBM([3, 2, 2], init_scale=v),
    "models.DBM.elbo.log_normalizer": lambda v: pgm.models.DBM([3, 2, 2]).elbo(
        torch.ones(2, 3), log_normalizer=v
    ),
    "nn.EnergyMLP.confine": lambda v: pgm.nn.EnergyMLP(2, [4], confine=v),
    "nn.EnergyMLP.fourier_scale": lambda v: pgm.nn.EnergyMLP(2, [4], fourier_scale=v),
    "nn.EnergyMLP.fourier_window": lambda v: pgm.nn.EnergyMLP(
        2, [4], fourier_features=2, fourier_window=v
    ),
    "zoo.run.lr": lambda v: pgm.zoo.run(
        pgm.data.from_tensors(torch.rand(20, 4).round()), ["vae"], epochs=1, lr=v, progress=False
    ),
    "zoo.run.validation_fraction": lambda v: pgm.zoo.run(
        pgm.data.from_tensors(torch.rand(20, 4).round()),
        ["vae"],
        epochs=1,
        validation_fraction=v,
        progress=False,
    ),
    "zoo.train_entry.lr": lambda v: pgm.zoo.train_entry(
        "vae", pgm.data.from_tensors(torch.rand(20, 4).round()), epochs=1, lr=v, progress=False
    ),
    "zoo.train_entry.validation_fraction": lambda v: pgm.zoo.train_entry(
        "vae", "digits", epochs=1, validation_fraction=v, progress=False
    ),
    "zoo.entry_data.validation_fraction": lambda v: pgm.zoo.entry_data("vae", "digits", v, 0),
    "zoo.Trained.seconds": "a measured wall time that train_entry returns, not an input",
    "data.load_file.test_fraction": lambda v: pgm.data.load_file(_csv_file(), test_fraction=v),
}


def _csv_file():
    path = Path(tempfile.mkdtemp()) / "x.csv"
    path.write_text("1,2\n3,4\n5,6\n")
    return path


#: Float values the signature walk cannot see (tensors of reals, optimizer dicts).
FLOAT_VALUES = {
    "log_normalizer": lambda v: pgm.distributions.EnergyDistribution(
        lambda x: x.sum(-1), (2,), log_normalizer=torch.tensor(v)
    ),
    "optim_args['lr']": lambda v: pgm.optim.Adam({"lr": v}),
    "optim_args['betas'][1]": lambda v: pgm.optim.Adam({"lr": 1e-3, "betas": (0.9, v)}),
}


def test_every_float_argument_is_walked():
    walked = float_arguments()
    assert sorted(walked - set(FLOAT_ARGUMENTS)) == [], "public float arguments without a case"
    assert sorted(set(FLOAT_ARGUMENTS) - walked) == [], "cases for arguments that are gone"
    assert all(not isinstance(c, str) or len(c) > 20 for c in FLOAT_ARGUMENTS.values())


def _checked_cases():
    cases = {**FLOAT_ARGUMENTS, **FLOAT_VALUES}
    for key, case in cases.items():
        if isinstance(case, str):
            continue
        case = case if isinstance(case, Case) else Case(case)
        match = case.match or (key if key in FLOAT_VALUES else key.rsplit(".", 1)[1])
        for value in case.values:
            yield pytest.param(case.build, value, match, id=f"{key}-{value}")


@pytest.mark.parametrize("build,value,match", _checked_cases())
def test_float_arguments_reject_nan_and_inf(build, value, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        build(value)


@pytest.mark.parametrize(
    "value,error,message",
    [
        (3, None, None),
        (2.0, TypeError, "n must be a positive int, got float 2.0"),
        (True, TypeError, "n must be a positive int, got bool True"),
        ("3", TypeError, "n must be a positive int, got str '3'"),
        (0, ValueError, "n must be a positive int, got 0"),
    ],
)
def test_check_int_rule(value, error, message):
    if error is None:
        assert _checks.check_positive_int("n", value) == 3
    else:
        with pytest.raises(error, match=re.escape(message)):
            _checks.check_positive_int("n", value)


def test_numpy_ints_are_ints():
    np = pytest.importorskip("numpy")
    assert _checks.check_int("n", np.int64(4)) == 4
    assert type(_checks.check_int("n", np.int64(4))) is int


@pytest.mark.parametrize(
    "shape,error,match",
    [
        ((1, 2.0, 2), TypeError, "image_shape[1]"),
        ([1, 2], ValueError, "must be (C, H, W)"),
        ((1, 0, 4), ValueError, "image_shape[1] must be a positive int"),
        ("1x2x2", TypeError, "image_shape must be a sequence"),
        ((1, 2, 3), ValueError, "C*H*W equal to the number of features D=4, got C*H*W=6"),
    ],
)
def test_image_shape_rule(shape, error, match):
    with pytest.raises(error, match=re.escape(match)):
        _checks.check_image_shape(shape, size=4)


def test_data_value_checks_follow_pyros_validation_switch():
    vae = VAE(2, 1, hidden_dims=[2])
    bad = torch.tensor([[0.5, float("nan")]])
    with pytest.raises(ValueError, match="x must be finite"):
        vae.model(bad)
    with pytest.raises(ValueError, match="x must be binary"):
        vae.model(torch.tensor([[0.5, 1.0]]))
    with pyro.validation_enabled(False):
        assert not _checks.validating()
        vae.model(torch.tensor([[0.5, 1.0]]))  # the value checks are skipped
        with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
            vae.model(torch.zeros(3, 5))  # kind and shape are always checked
    assert _checks.validating()
