"""Gibbs kernels for ``pyro.infer.MCMC``: block Gibbs for Boltzmann machines, and Gibbs by
enumeration for Pyro models with discrete latent sites.

Both are :class:`~pyro.infer.mcmc.mcmc_kernel.MCMCKernel` s: ``setup``, ``sample`` (a dict of
site values in, a dict out), ``initial_params``, ``logging``, ``diagnostics`` (with the
``"divergences"`` that :func:`arviz.from_pyro` reads; a Gibbs kernel never diverges) and the
``model``/``transforms`` attributes ``MCMC.run`` reads. Chains are independent across
``MCMC(num_chains=...)`` runs and, for :class:`BlockGibbs`, also as a batch inside a kernel.

References:
    Stochastic relaxation, Gibbs distributions, and the Bayesian restoration of images.
    S. Geman, D. Geman, 1984.
    Deep Boltzmann machines. R. Salakhutdinov, G. E. Hinton, 2009 (odd/even layer blocks).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.poutine.util import site_is_subsample

from pyro_genmodels._checks import check_positive_int


class BlockGibbs(MCMCKernel):
    """Block Gibbs for an RBM or DBM: odd layers ``h1, h3, ...`` given the even ones, then
    ``v, h2, ...`` given the odd ones, each block from its exact factorized conditional.

    Sample sites ``"v"`` and ``"h"`` (RBM) or ``"v"``, ``"h1"``, ``"h2"``, ... (DBM), each of
    shape ``(batch_size, n_l)`` (``(n_l,)`` when ``batch_size`` is None).

    Args:
        machine: an :class:`~pyro_genmodels.models.RBM` or :class:`~pyro_genmodels.models.DBM`.
        batch_size: independent chains run as a batch inside one kernel (None: one chain).

    >>> import pyro, pyro_genmodels as pgm
    >>> mcmc = pyro.infer.MCMC(BlockGibbs(pgm.models.RBM(4, 3)), num_samples=5,
    ...                        warmup_steps=2, disable_progbar=True)
    >>> mcmc.run()
    >>> {k: tuple(v.shape) for k, v in mcmc.get_samples().items()}
    {'h': (5, 3), 'v': (5, 4)}
    """

    def __init__(self, machine: Any, batch_size: int | None = None) -> None:
        if not callable(getattr(machine, "gibbs_sweep", None)):
            raise TypeError(
                f"machine must be an RBM or DBM (with gibbs_sweep), got {type(machine).__name__}"
            )
        self.machine = machine
        self.batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
        L = len(machine.layer_sizes)
        self.names = ["v", "h"] if L == 2 else ["v"] + [f"h{l}" for l in range(1, L)]
        self.model = None
        self.transforms: dict = {}
        self._initial_params: dict[str, torch.Tensor] | None = None
        self._params: tuple | None = None
        self._t = 0

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        self._t, self._warmup_steps = 0, warmup_steps
        self._params = self.machine.gibbs_params()
        if self._initial_params is None:
            batch = () if self.batch_size is None else (self.batch_size,)
            states = self.machine.random_states(batch)
            self._initial_params = dict(zip(self.names, states, strict=True))

    @property
    def initial_params(self) -> dict[str, torch.Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.names) - set(params))
        if missing:
            raise ValueError(f"initial_params must hold sites {self.names}, missing {missing}")
        self._initial_params = {k: params[k] for k in self.names}

    def cleanup(self) -> None:
        self._initial_params = None  # the next chain of MCMC(num_chains=...) starts afresh

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states = [params[k] for k in self.names]
        states = self.machine.gibbs_sweep(states, parity_first=1, params=self._params)
        self._t += 1
        return dict(zip(self.names, states, strict=True))

    def logging(self) -> OrderedDict:
        return OrderedDict(sweeps=self._t)

    def diagnostics(self) -> dict[str, Any]:
        return {"divergences": [], "acceptance rate": 1.0}


class DiscreteGibbs(MCMCKernel):
    """Gibbs sampling of a Pyro model whose latent sites are all discrete with finite support.

    One sweep visits every element of every latent site (each batch position of a site
    inside plates and each entry of a ``.to_event`` site, e.g. a vector of Bernoulli or
    categorical units; a ``OneHotCategorical`` with its one-hot event) and draws it from its
    exact full conditional
    ``p(z_i = k | z_{-i}, data) ∝ exp(log p(z_{-i}, z_i = k, data))``, by evaluating the
    model's log joint at every value ``k`` of the site's ``enumerate_support`` (the present
    value's log joint is kept from the previous draw). A sweep costs
    ``Σ_sites (#elements × (#values - 1))`` model evaluations: meant for small discrete models
    (``benchmarks/boltzmann.py`` measures it against a plain loop of the same conditionals).

    Draws of integer-valued sites (``Categorical``) come back as floats, since Pyro's MCMC
    diagnostics and ArviZ need floating samples; the model always sees its own dtype.

    Args:
        model: a Pyro model; its latent sites need ``fn.has_enumerate_support``.

    >>> import pyro, pyro.distributions as dist
    >>> def model():
    ...     z = pyro.sample("z", dist.Bernoulli(0.3))
    ...     pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=torch.tensor(2.0))
    >>> mcmc = pyro.infer.MCMC(DiscreteGibbs(model), num_samples=4, disable_progbar=True)
    >>> mcmc.run(); mcmc.get_samples()["z"].shape
    torch.Size([4])
    """

    def __init__(self, model: Callable) -> None:
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        self.model = model
        self.transforms: dict = {}
        self._initial_params: dict[str, torch.Tensor] | None = None
        self._sites: dict[str, Any] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._t = 0

    def _log_joint(self, conditioned: Callable) -> torch.Tensor:
        trace = poutine.trace(conditioned).get_trace(*self._args, **self._kwargs)
        return torch.as_tensor(trace.log_prob_sum())

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs, self._t = args, kwargs, 0
        trace = poutine.trace(self.model).get_trace(*args, **kwargs)
        self._sites = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            fn = _enumerable(site["fn"])
            if fn is None:
                raise ValueError(
                    "DiscreteGibbs needs every latent site discrete with finite support "
                    f"(has_enumerate_support, also under .to_event/.expand/.mask); site {name!r} "
                    f"has {type(site['fn']).__name__}"
                )
            event_dim = len(fn.event_shape)
            self._sites[name] = (fn.enumerate_support(expand=False), event_dim)
            self._dtypes[name] = site["value"].dtype  # type: ignore[union-attr]
        if not self._sites:
            raise ValueError("DiscreteGibbs found no latent sample site in the model")
        if self._initial_params is None:
            values = {k: trace.nodes[k]["value"].detach() for k in self._sites}  # type: ignore[union-attr]
            self._initial_params = self._floating(values)

    @staticmethod
    def _floating(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dtype = torch.get_default_dtype()
        return {k: v if v.is_floating_point() else v.to(dtype) for k, v in values.items()}

    @property
    def initial_params(self) -> dict[str, torch.Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        self._initial_params = dict(params)

    def cleanup(self) -> None:
        self._initial_params = None

    @torch.no_grad()
    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = {k: v.to(self._dtypes[k], copy=True) for k, v in params.items()}
        conditioned = poutine.condition(self.model, data=values)  # reads values as they change
        current = self._log_joint(conditioned)  # the log joint at the present state
        for name, (support, event_dim) in self._sites.items():
            value = values[name]
            batch_shape = value.shape[: value.dim() - event_dim]
            choices = support.reshape(
                (support.shape[0],) + support.shape[support.dim() - event_dim :]
            )
            for index in _indices(batch_shape):
                old = value[index].clone()
                logits = []
                for k in range(choices.shape[0]):
                    if torch.equal(choices[k], old):  # the present state: no new evaluation
                        logits.append(current)
                        continue
                    value[index] = choices[k]
                    logits.append(self._log_joint(conditioned))
                pick = int(torch.distributions.Categorical(logits=torch.stack(logits)).sample())
                value[index] = choices[pick]
                current = logits[pick]
        self._t += 1
        return self._floating(values)

    def logging(self) -> OrderedDict:
        return OrderedDict(sweeps=self._t)

    def diagnostics(self) -> dict[str, Any]:
        return {"divergences": [], "acceptance rate": 1.0}


def _enumerable(fn: Any) -> Any:
    """The distribution under ``fn``'s ``.to_event``/``.expand``/``.mask`` wrappers whose
    ``enumerate_support`` gives each element's values (None if there is none): the sweep
    visits every element of the site (batch and reinterpreted dims) with the base's event."""
    while not getattr(fn, "has_enumerate_support", False):
        if isinstance(fn, torch.distributions.Independent) or hasattr(fn, "base_dist"):
            fn = fn.base_dist
        else:
            return None
    return fn


def _indices(shape: torch.Size) -> list[tuple[int, ...]]:
    """Every index tuple of ``shape`` (``[()]`` for a scalar)."""
    if len(shape) == 0:
        return [()]
    grid = torch.cartesian_prod(*[torch.arange(n) for n in shape]) if len(shape) > 1 else None
    if grid is None:
        return [(i,) for i in range(shape[0])]
    return [tuple(int(j) for j in row) for row in grid]
