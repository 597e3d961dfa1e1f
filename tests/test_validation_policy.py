"""The validation policy of ``pyro_genmodels._checks``, over the public constructors and
entry points: a float or a bool where an int is meant is a ``TypeError``, a negative int a
``ValueError``, and every message names the argument. Per-call data-value checks follow
Pyro's validation switch.
"""

import re

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
from pyro_genmodels.models import CVAE, SSVAE, VAE, WAE, FlowDensity, KLAnnealing, LatentKernel
from pyro_genmodels.nn import FVSBN, MADE, MLP, NADE, RNN, ConvEncoder, PixelCNN


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
