"""CVAE and the semi-supervised M2 (SSVAE): ELBOs against brute force, labels, errors."""

import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO

from pyro_genmodels.infer.weights import importance_log_weights
from pyro_genmodels.models import CVAE, SSVAE

pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")


def _binary(n, d, device, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=dtype).round().to(device)


def _normal_lp(value, loc, scale):
    return torch.distributions.Normal(loc, scale).log_prob(value).sum(-1)


def _bernoulli_lp(x, logits):
    return torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)


class _Recorder:
    """Wraps a guide and keeps the values of its sample sites (from the last call)."""

    def __init__(self, guide):
        self.guide, self.values = guide, {}

    def __call__(self, *args):
        tr = poutine.trace(self.guide).get_trace(*args)
        self.values = {k: s["value"] for k, s in tr.nodes.items() if s["type"] == "sample"}


# ----------------------------------------------------------------------------- CVAE


@pytest.mark.parametrize("conditional_prior", [False, True])
def test_cvae_elbo_single_particle_is_exact(conditional_prior, device, dtype):
    cvae = CVAE(4, 2, num_classes=3, hidden_dims=(5,), conditional_prior=conditional_prior)
    cvae = cvae.to(device, dtype)
    x, y = _binary(5, 4, device, dtype), torch.tensor([0, 2, 1, 2, 0], device=device)
    guide = _Recorder(cvae.guide)
    loss = Trace_ELBO().loss(cvae.model, guide, x, y)
    z = guide.values["z"]
    c = F.one_hot(y, 3).to(dtype)
    loc, scale = cvae.encoder(torch.cat([x, c], -1))
    if conditional_prior:
        ploc, pscale = cvae.prior_net(c)
    else:
        ploc, pscale = torch.zeros_like(z), torch.ones_like(z)
    lp_x = _bernoulli_lp(x, cvae.decoder(torch.cat([z, c], -1)))
    expected = (lp_x + _normal_lp(z, ploc, pscale) - _normal_lp(z, loc, scale)).sum()
    assert -loss == pytest.approx(expected.item(), rel=1e-10)


def test_cvae_context_vectors(device, dtype):
    cvae = CVAE(4, 2, context_dim=3, hidden_dims=(5,), likelihood="gaussian").to(device, dtype)
    x = torch.randn(6, 4, device=device, dtype=dtype)
    ctx = torch.randn(6, 3, device=device, dtype=dtype)
    loss = Trace_ELBO().loss(cvae.model, cvae.guide, x, ctx)
    assert math.isfinite(loss)
    assert cvae.sample(ctx).shape == (6, 4)
    torch.testing.assert_close(cvae.context(ctx), ctx)


def test_cvae_sample_respects_labels(device):
    """After a short fit on three noiseless class prototypes, sample(y) draws y's prototype."""
    protos = torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    y = torch.arange(30) % 3
    x, protos, y = protos[y].to(device), protos.to(device), y.to(device)
    cvae = CVAE(6, 2, num_classes=3, hidden_dims=(16,)).to(device)
    svi = SVI(cvae.model, cvae.guide, pyro.optim.Adam({"lr": 0.03}), Trace_ELBO())
    for _ in range(150):
        svi.step(x, y)
    labels = torch.tensor([0, 1, 2] * 20, device=device)
    means = cvae.sample(labels)
    assert ((means - protos[labels]).abs() < 0.2).all()
    draws = cvae.sample(labels, mean=False)
    assert (draws == protos[labels]).float().mean() > 0.95


def test_cvae_bad_input(device):
    cvae = CVAE(4, 2, num_classes=3, hidden_dims=(3,)).to(device)
    x = torch.zeros(2, 4, device=device)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\), got values in \[0, 3\]"):
        cvae.model(x, torch.tensor([0, 3], device=device))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        cvae.sample(torch.tensor([-1], device=device))
    with pytest.raises(TypeError, match="integer class labels"):
        cvae.guide(x, torch.tensor([0.0, 1.0], device=device))
    with pytest.raises(ValueError, match="length N=2"):
        cvae.model(x, torch.tensor([0, 1, 2], device=device))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        cvae.sample(torch.zeros(2, 3, dtype=torch.long, device=device))
    with pytest.raises(TypeError, match="torch.Tensor"):
        cvae.model(x, [0, 1])
    with pytest.raises(ValueError, match="binary"):
        cvae.model(x + 0.3, torch.tensor([0, 1], device=device))
    ctx = CVAE(4, 2, context_dim=3, hidden_dims=(3,)).to(device)
    with pytest.raises(ValueError, match=r"context of shape \(N, 3\)"):
        ctx.model(x, torch.zeros(2, 2, device=device))
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        CVAE(4, 2)
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        CVAE(4, 2, num_classes=3, context_dim=2)


# ----------------------------------------------------------------------------- SSVAE


def _labeled_elbo(m2, x, y, z, dtype):
    """L(x, y) per datapoint at the guide's draws z (same shapes as x's batch)."""
    c = F.one_hot(y, m2.num_classes).to(dtype).expand(*z.shape[:-1], -1)
    xb = x.expand(*z.shape[:-1], -1)
    loc, scale = m2.encoder(torch.cat([xb, c], -1))
    lp_x = _bernoulli_lp(xb, m2.decoder(torch.cat([z, c], -1)))
    log_py = -math.log(m2.num_classes)
    return lp_x + _normal_lp(z, torch.zeros_like(z), 1.0) - _normal_lp(z, loc, scale) + log_py


def test_ssvae_enumerated_elbo_equals_brute_force_sum_over_labels(device, dtype):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(5,)).to(device, dtype)
    x = _binary(5, 4, device, dtype)
    guide = _Recorder(m2.guide)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(m2.model, guide, x)
    z = guide.values["z"]  # one draw per enumerated label: (C, N, z_dim)
    assert z.shape == (3, 5, 2)
    log_q = m2.classifier(x).log_softmax(-1)  # (N, C)
    brute = 0.0
    for k in range(3):
        yk = torch.full((5,), k, device=device)
        brute = brute + (log_q[:, k].exp() * (_labeled_elbo(m2, x, yk, z[k], dtype) - log_q[:, k]))
    assert -loss == pytest.approx(brute.sum().item(), rel=1e-10)


def test_ssvae_labeled_elbo_and_switchable_classifier_term(device, dtype):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(5,), alpha=7.0).to(device, dtype)
    x, y = _binary(4, 4, device, dtype), torch.tensor([2, 0, 1, 1], device=device)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    losses = {}
    for training in (True, False):
        m2.train(training)
        guide = _Recorder(m2.guide)
        pyro.set_rng_seed(4)
        losses[training] = elbo.loss(m2.model, guide, x, y)
        expected = _labeled_elbo(m2, x, y, guide.values["z_labeled"], dtype).sum()
        if training:
            log_q = m2.classifier(x).log_softmax(-1).gather(-1, y[:, None]).sum()
            expected = expected + 7.0 * log_q
        assert -losses[training] == pytest.approx(expected.item(), rel=1e-10)
    assert losses[True] > losses[False]  # -alpha log q(y|x) > 0 was added


def test_ssvae_mixed_batch_is_the_sum_of_its_parts(device, dtype):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(5,)).eval().to(device, dtype)
    x = _binary(6, 4, device, dtype)
    y = torch.tensor([1, -1, 0, -1, -1, 2], device=device)
    known = y >= 0
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(9)
    mixed = elbo.loss(m2.model, m2.guide, x, y)
    pyro.set_rng_seed(9)  # the guide draws labeled z first, then unlabeled z
    parts = elbo.loss(m2.model, m2.guide, x[known], y[known])
    parts += elbo.loss(m2.model, m2.guide, x[~known])
    assert mixed == pytest.approx(parts, rel=1e-10)


def test_ssvae_importance_weights_and_training_step(device):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(5,)).to(device)
    x = _binary(6, 4, device, torch.float32)
    y = torch.tensor([1, -1, 0, -1, -1, 2], device=device)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    svi = SVI(m2.model, m2.guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    before = [p.detach().clone() for p in m2.classifier.parameters()]
    assert math.isfinite(svi.step(x, y))
    assert all((a != b).any() for a, b in zip(before, m2.classifier.parameters()))
    m2.eval()
    w = importance_log_weights(m2.model, m2.guide, x, num_particles=7)
    assert w.log_weights.shape == (7, 6) and torch.isfinite(w.log_weights).all()
    # log w = log p(x, y, z) - log q(y | x) - log q(z | x, y) at the guide's draws.
    y_k, z_k = w.guide_trace.nodes["y"]["value"], w.guide_trace.nodes["z"]["value"]
    log_qy = m2.classifier(x).log_softmax(-1).expand(7, 6, 3).gather(-1, y_k[..., None])[..., 0]
    expected = _labeled_elbo(m2, x, y_k, z_k, torch.float32) - log_qy
    torch.testing.assert_close(w.log_weights, expected)


def test_ssvae_classify_and_accuracy(device):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(5,)).to(device)
    x = _binary(8, 4, device, torch.float32)
    pred = m2.classify(x)
    assert pred.dtype == torch.long and pred.shape == (8,)
    torch.testing.assert_close(pred, m2.classifier(x).argmax(-1))
    assert m2.accuracy(x, pred) == 1.0
    wrong = (pred + 1) % 3
    wrong[:2] = pred[:2]
    assert m2.accuracy(x, wrong) == pytest.approx(0.25)
    assert m2.sample(torch.tensor([0, 2], device=device)).shape == (2, 4)


def test_ssvae_bad_input(device):
    m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(3,)).to(device)
    x = torch.zeros(2, 4, device=device)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\) or -1"):
        m2.model(x, torch.tensor([0, 3], device=device))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\) or -1"):
        m2.guide(x, torch.tensor([-2, 0], device=device))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\), got"):
        m2.accuracy(x, torch.tensor([-1, 0], device=device))
    with pytest.raises(TypeError, match="long tensor"):
        m2.model(x, torch.tensor([0.0, 1.0], device=device))
    with pytest.raises(ValueError, match=r"shape \(N,\) = \(2,\)"):
        m2.model(x, torch.tensor([0, 1, 2], device=device))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        m2.classify(torch.zeros(2, 3, device=device))
    with pytest.raises(ValueError, match="binary"):
        m2.guide(x + 0.5)
    with pytest.raises(ValueError, match="num_classes"):
        SSVAE(4, 2, num_classes=0)
    with pytest.raises(ValueError, match="alpha"):
        SSVAE(4, 2, num_classes=3, alpha=-1.0)
