"""The importance-weighted bound (IWAE) as a Pyro loss, with DReG gradients.

For ``K`` draws ``z_{k,n} ~ q(z | x_n)`` the bound of datapoint ``n`` is

    L_K(x_n) = log (1/K) sum_k w[k, n],    w[k, n] = p(x_n, z_{k,n}) / q(z_{k,n} | x_n),

and :class:`IWAELoss` returns ``-sum_n L_K(x_n)``. The per-datapoint weights come
from :func:`~pyro_genmodels.infer.weights.importance_log_weights`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.infer.elbo import ELBO
from pyro.infer.util import torch_item
from pyro.poutine.trace_struct import Trace
from pyro.util import warn_if_nan

from pyro_genmodels._checks import check_bool, check_int
from pyro_genmodels._compat import masked_distribution_mask, mvn_scale_tril
from pyro_genmodels.infer.weights import (
    PARTICLE_PLATE,
    Site,
    WeightedTraces,
    importance_log_weights,
    is_sample,
    max_plate_nesting,
    site_log_prob,
)
from pyro_genmodels.parallel.shard_scale import SCALE_KEY

# ---------------------------------------------------------------------------
# Stopping gradients through a distribution's parameters (not through its value)
# ---------------------------------------------------------------------------


def _detach_tensor(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _detach_transform(t: torch.distributions.transforms.Transform) -> Any:
    if isinstance(t, torch.distributions.transforms.ComposeTransform):
        return torch.distributions.transforms.ComposeTransform(
            [_detach_transform(p) for p in t.parts]
        )
    if isinstance(t, torch.distributions.transforms.AffineTransform):
        return type(t)(_detach_tensor(t.loc), _detach_tensor(t.scale), event_dim=t.event_dim)
    trainable = isinstance(t, torch.nn.Module) and any(p.requires_grad for p in t.parameters())
    tensors = [v for v in vars(t).values() if isinstance(v, torch.Tensor) and v.requires_grad]
    if trainable or tensors:
        raise NotImplementedError(
            f"IWAELoss(dreg=True) cannot stop gradients through the parameters of transform "
            f"{type(t).__name__} (a guide whose transforms have learnable parameters, e.g. a "
            "normalizing flow, is not supported); use dreg=False"
        )
    return t


def _generic_kwargs(d: torch.distributions.Distribution) -> dict[str, Any]:
    """Constructor arguments of ``d`` read back from its attributes, detached."""
    cls = type(d)
    kwargs = {}
    for name, par in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "validate_args") or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        if name in vars(d):
            kwargs[name] = _detach_tensor(vars(d)[name])
        elif isinstance(getattr(cls, name, None), property) and name in d.arg_constraints:
            kwargs[name] = _detach_tensor(getattr(d, name))
        elif par.default is par.empty:
            raise NotImplementedError(
                f"IWAELoss(dreg=True) cannot rebuild a {cls.__name__} distribution with detached "
                f"parameters: constructor argument {name!r} is not readable from the instance"
            )
    if "probs" in kwargs and "logits" in kwargs:
        del kwargs["probs"]  # both cached after use; they describe the same parameter
    return kwargs


def _detach_distribution(d: Any) -> torch.distributions.Distribution:
    """A copy of ``d`` whose parameters are detached: ``log_prob(z)`` keeps ``z``'s gradient only.

    Handles ``Independent``, ``ExpandedDistribution``, ``MaskedDistribution`` and
    ``TransformedDistribution`` wrappers (transforms without learnable parameters),
    ``Delta``, ``MultivariateNormal`` and distributions whose parameters are
    constructor arguments listed in ``arg_constraints`` (Normal, Gamma, Beta, ...).
    Raises ``NotImplementedError`` for anything else.
    """
    if isinstance(d, torch.distributions.Independent):
        return type(d)(_detach_distribution(d.base_dist), d.reinterpreted_batch_ndims)
    if isinstance(d, ExpandedDistribution):
        return _detach_distribution(d.base_dist).expand(d.batch_shape)
    if isinstance(d, MaskedDistribution):
        return MaskedDistribution(_detach_distribution(d.base_dist), masked_distribution_mask(d))
    if isinstance(d, dist.Delta):
        return type(d)(d.v.detach(), d.log_density.detach(), event_dim=len(d.event_shape))
    if isinstance(d, torch.distributions.MultivariateNormal):
        tril = mvn_scale_tril(d).detach()
        return type(d)(d.loc.detach(), scale_tril=tril).expand(d.batch_shape)
    if isinstance(d, torch.distributions.TransformedDistribution):
        base = _detach_distribution(d.base_dist)
        transforms = [_detach_transform(t) for t in d.transforms]
        return dist.TransformedDistribution(base, transforms)
    new = type(d)(**_generic_kwargs(d))
    if new.batch_shape != d.batch_shape or new.event_shape != d.event_shape:
        new = new.expand(d.batch_shape)
    leaks = [k for k, v in vars(new).items() if isinstance(v, torch.Tensor) and v.requires_grad]
    if leaks:
        raise NotImplementedError(
            f"IWAELoss(dreg=True) could not detach attributes {leaks} of a "
            f"{type(d).__name__} distribution"
        )
    return new


# ---------------------------------------------------------------------------
# Pieces of the surrogate objectives
# ---------------------------------------------------------------------------


def _sum_log_prob(trace: Trace, wt: WeightedTraces, keep: Callable[[Site], bool]) -> torch.Tensor:
    """``(K, N)`` sum of ``log_prob`` over the sample sites of ``trace`` selected by ``keep``."""
    out = torch.zeros_like(wt.log_weights)
    num_data = wt.log_weights.shape[1]
    for site in trace.nodes.values():
        if is_sample(site) and keep(site):
            out = out + site_log_prob(site, wt.particle_dim, wt.data_dim, num_data)
    return out


def _data_scale(wt: WeightedTraces) -> float:
    """The data plate's subsampling factor ``full_size / subsample_size`` (1 without subsampling).

    This is the plate's factor inside the observed sites' ``site["scale"]``, times the
    data-parallel share of :class:`~pyro_genmodels.parallel.ShardScale` (recorded in
    ``site["infer"]``); other ``poutine.scale`` factors are ignored.
    """
    for site in wt.model_trace.nodes.values():
        if is_sample(site) and site["is_observed"]:
            infer: dict[str, Any] = dict(site.get("infer") or {})
            share = float(infer.get(SCALE_KEY, 1.0))
            for f in site["cond_indep_stack"]:
                if f.name == wt.data_plate and f.full_size is not None and f.size > 0:
                    return share * float(f.full_size) / float(f.size)
    return 1.0


def _replayed_log_joint(
    model: Callable, wt: WeightedTraces, args: tuple, kwargs: dict
) -> torch.Tensor:
    """``(K, N)`` ``log p(x_n, z_k)`` of the model replayed on the guide's draws, ``z`` detached."""
    detached = wt.guide_trace.copy()
    for name, site in wt.guide_trace.nodes.items():
        detached.nodes[name] = {**site, "value": _detach_tensor(site.get("value"))}
    num_particles = wt.log_weights.shape[0]
    vectorize = pyro.plate(PARTICLE_PLATE, num_particles, dim=wt.particle_dim)
    trace = poutine.trace(poutine.replay(vectorize(model), trace=detached)).get_trace(
        *args, **kwargs
    )
    return _sum_log_prob(trace, wt, lambda site: True)


def _vimco_rewards(log_weights: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` learning signals ``L_K - L_K^{-k}`` with the leave-one-out baseline of VIMCO.

    ``L_K^{-k}`` replaces ``log w_k`` by the mean of the other log weights. With
    ``K = 1`` there is no baseline and the signal is ``L_1``.
    """
    lw = log_weights.detach()
    num_particles = lw.shape[0]
    bound = torch.logsumexp(lw, 0) - math.log(num_particles)
    if num_particles == 1:
        return bound.expand_as(lw)
    others_mean = (lw.sum(0, keepdim=True) - lw) / (num_particles - 1)
    loo = lw.unsqueeze(0).repeat(num_particles, 1, 1)  # (K, K, N): row k swaps particle k
    idx = torch.arange(num_particles, device=lw.device)
    loo[idx, idx] = others_mean
    baseline = torch.logsumexp(loo, 1) - math.log(num_particles)
    return bound - baseline


# ---------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------


class IWAELoss(ELBO):
    """Per-datapoint importance-weighted bound ``L_K = sum_n log (1/K) sum_k w[k, n]``.

    ``w[k, n] = p(x_n, z_{k,n}) / q(z_{k,n} | x_n)`` with ``K`` particles drawn from the
    guide in one vectorized pass; every latent must be local to the data plate (the
    outermost plate shared by the observed sites, or ``data_plate``). ``K = 1`` is the
    ELBO; ``L_K`` increases with ``K`` towards ``sum_n log p(x_n)``.

    *Relation to* ``pyro.infer.RenyiELBO(alpha=0)``: Renyi sums out only the plates
    that are not common to all model sites, so when every site lies in the data plate
    it computes the same per-datapoint bound. It differs (1) when some model site lies
    outside the data plate (a global latent, a ``pyro.factor``): Renyi then
    log-mean-exps the weight of the whole batch, ``log (1/K) sum_k prod_n w[k, n]``, a
    far looser bound for ``N > 1`` (one set of ``K`` particles must explain all ``N``
    points) while IWAELoss refuses, since per-datapoint weights do not exist; and
    (2) under subsampling or ``poutine.scale``: Renyi scales ``log w`` inside the
    log-mean-exp, which is no longer an estimate of the full-data bound.

    *Subsampling*: the per-datapoint bounds are multiplied by the data plate's
    subsampling factor ``full_size / subsample_size`` (the plate's factor in the
    observed sites' ``site["scale"]``), so a subsampled plate gives an unbiased
    estimate of the full-data bound. Other ``poutine.scale`` factors are ignored.

    *Gradients*: reparameterized guide sites give pathwise gradients; for
    non-reparameterized guide sites (e.g. discrete latents) a score-function term is
    added with the leave-one-out baseline of VIMCO (Mnih & Rezende 2016), which
    keeps the gradient unbiased. ``dreg=True`` (fully reparameterized guides only)
    gives guide parameters the doubly-reparameterized gradient
    ``sum_k wt_k^2 d log w_k/dz dz/dphi`` (``wt`` the normalized weights, ``log q``
    differentiated through ``z`` only) and model parameters the usual
    ``sum_k wt_k grad_theta log w_k``. It is computed from two surrogates: the bound
    with ``z`` detached (a second, replayed model pass), and the ``wt^2``-weighted path
    term minus its model-parameter part; a parameter shared by model and guide gets the
    sum of both. The loss value is the same with or without ``dreg``.

    Args:
        num_particles: ``K``, the number of guide draws per datapoint.
        dreg: use the doubly-reparameterized gradient for the guide.
        data_plate: name of the plate over datapoints (default: found from the trace).
        max_plate_nesting: the programs' deepest plate nesting; found by a trial run on
            the first call (and cached) when ``None``.

    References:
        Importance Weighted Autoencoders, Y. Burda, R. Grosse, R. Salakhutdinov, 2016.
        Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives,
        G. Tucker, D. Lawson, S. Gu, C. J. Maddison, 2018.
        Variational Inference for Monte Carlo Objectives, A. Mnih, D. J. Rezende, 2016.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior: the bound is log p(x) for any K
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> x = torch.tensor([0.0, 1.0])
    >>> loss = IWAELoss(num_particles=8, dreg=True).loss(model, guide, x)
    >>> exact = -dist.Normal(0.0, 2**0.5).log_prob(x).sum().item()
    >>> abs(loss - exact) < 1e-5
    True
    """

    def __init__(
        self,
        num_particles: int = 5,
        dreg: bool = False,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        check_int("num_particles", num_particles, minimum=1)
        check_bool("dreg", dreg)
        if data_plate is not None and not isinstance(data_plate, str):
            raise TypeError(f"data_plate must be a plate name (str) or None, got {data_plate!r}")
        check_int("max_plate_nesting", max_plate_nesting, minimum=0, allow_none=True)
        nesting = float("inf") if max_plate_nesting is None else max_plate_nesting
        super().__init__(num_particles=num_particles, max_plate_nesting=nesting)
        self.dreg = dreg
        self.data_plate = data_plate

    def guess_plate_nesting(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        """Set ``max_plate_nesting`` from one trace of ``guide`` and ``model`` (the trial pass
        of the first call, which ``pgm.fit`` makes before its first step)."""
        self.max_plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)

    def _weights(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        if self.max_plate_nesting == float("inf"):
            self.guess_plate_nesting(model, guide, *args, **kwargs)
        return importance_log_weights(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            data_plate=self.data_plate,
            plate_nesting=self.max_plate_nesting,
            **kwargs,
        )

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """The vectorized ``(model_trace, guide_trace)`` pair behind the weights."""
        wt = self._weights(model, guide, args, kwargs)
        return wt.model_trace, wt.guide_trace

    def _check_reparametrized(self, wt: WeightedTraces) -> None:
        for site in wt.guide_trace.nodes.values():
            if is_sample(site) and not getattr(site["fn"], "has_rsample", False):
                raise ValueError(
                    "IWAELoss(dreg=True) requires fully reparametrized guides: guide site "
                    f"{site['name']!r} has a {type(site['fn']).__name__} distribution without "
                    "rsample (use dreg=False, which adds a VIMCO score-function term)"
                )

    def _surrogate_bound(
        self, model: Callable, wt: WeightedTraces, args: tuple, kwargs: dict
    ) -> torch.Tensor:
        """``(N,)`` tensor equal to ``L_K(x_n)`` whose gradient is the chosen estimator's."""
        lw = wt.log_weights
        log_k = math.log(lw.shape[0])
        if self.dreg:
            self._check_reparametrized(wt)
            log_q_stop = torch.zeros_like(lw)
            for site in wt.guide_trace.nodes.values():
                if is_sample(site):
                    stopped = {**site, "fn": _detach_distribution(site["fn"])}
                    log_q_stop = log_q_stop + site_log_prob(
                        stopped, wt.particle_dim, wt.data_dim, lw.shape[1]
                    )
            log_p_det = _replayed_log_joint(model, wt, args, kwargs)
            wt2 = torch.softmax(lw.detach(), 0) ** 2
            model_part = torch.logsumexp(log_p_det - wt.log_q.detach(), 0) - log_k
            path = (wt2 * (wt.log_joint - log_q_stop - log_p_det)).sum(0)
            return model_part + path - path.detach()
        bound = torch.logsumexp(lw, 0) - log_k
        not_reparam = _sum_log_prob(
            wt.guide_trace, wt, lambda s: not getattr(s["fn"], "has_rsample", False)
        )
        if not_reparam.requires_grad:
            score = (_vimco_rewards(lw) * not_reparam).sum(0)
            bound = bound + score - score.detach()
        return bound

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """``-sum_n scale * L_K(x_n)`` as a tensor; ``backward`` gives the chosen gradient."""
        wt = self._weights(model, guide, args, kwargs)
        bound = self._surrogate_bound(model, wt, args, kwargs)
        loss = -(bound * _data_scale(wt)).sum()
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """``-sum_n scale * L_K(x_n)`` as a float (no gradients)."""
        with torch.no_grad():
            wt = self._weights(model, guide, args, kwargs)
            bound = torch.logsumexp(wt.log_weights, 0) - math.log(self.num_particles)
            loss = -(bound * _data_scale(wt)).sum()
        warn_if_nan(loss, "loss")
        return torch_item(loss)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Like :meth:`loss`, after calling ``backward`` on :meth:`differentiable_loss`."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)
