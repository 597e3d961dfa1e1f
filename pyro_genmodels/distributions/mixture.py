"""A mixture of factorized Bernoullis, fitted by EM: the classic baseline for binary images."""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_genmodels._checks import broadcast_value_shape, check_expand_shape, check_real
from pyro_genmodels._compat import checked_instance, validate_sample
from pyro_genmodels._dtypes import to_dtype


class BernoulliMixture(TorchDistribution):
    """``p(x) = sum_k pi_k prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d)``.

    Args:
        logits: ``(*batch, K)`` unnormalized mixture log-weights.
        probs: ``(*batch, K, D)`` per-component pixel probabilities ``mu``.

    The event is a binary vector ``(D,)``; ``log_prob`` is exact. Use
    :meth:`fit_em` to estimate the parameters by expectation-maximization
    (Dempster, Laird & Rubin 1977; the K=100 mixture is the standard binary
    MNIST baseline, e.g. in Larochelle & Murray 2011, "The Neural
    Autoregressive Distribution Estimator").

    >>> import torch
    >>> d = BernoulliMixture(torch.zeros(2), torch.tensor([[0.9, 0.9], [0.1, 0.1]]))
    >>> x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> round(float(d.log_prob(x).exp().sum()), 6)
    1.0
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "probs": constraints.independent(constraints.unit_interval, 2),
    }
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(
        self, logits: torch.Tensor, probs: torch.Tensor, validate_args: bool | None = None
    ) -> None:
        for name, t in (("logits", logits), ("probs", probs)):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                got = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise TypeError(f"BernoulliMixture expects {name} as a float Tensor, got {got}")
        if probs.dim() < 2 or probs.shape[:-1] != logits.shape:
            raise ValueError(
                "BernoulliMixture expects logits of shape (*batch, K) and probs of shape "
                f"(*batch, K, D); got logits {tuple(logits.shape)}, probs {tuple(probs.shape)}"
            )
        self.logits, self.probs = logits, probs
        super().__init__(logits.shape[:-1], probs.shape[-1:], validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, **arg_shapes: Any) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` of ``BernoulliMixture(logits, probs)`` from the
        shapes ``logits=(*batch, K)`` and ``probs=(*batch, K, D)``.

        >>> BernoulliMixture.infer_shapes(logits=(4, 3), probs=(4, 3, 5))
        (torch.Size([4]), torch.Size([5]))
        """
        if set(arg_shapes) - {"logits", "probs"} or "probs" not in arg_shapes:
            raise TypeError(
                f"infer_shapes takes logits=(*batch, K), probs=(*batch, K, D), got {arg_shapes}"
            )
        probs = tuple(arg_shapes["probs"])
        return torch.Size(probs[:-2]), torch.Size(probs[-1:])

    def expand(self, batch_shape, _instance=None) -> BernoulliMixture:
        batch_shape = check_expand_shape(type(self).__name__, self.batch_shape, batch_shape)
        new = checked_instance(self, BernoulliMixture, _instance)
        k, d = self.probs.shape[-2:]
        new.logits = self.logits.expand(batch_shape + (k,))
        new.probs = self.probs.expand(batch_shape + (k, d))
        super(BernoulliMixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | k)`` of shape ``(*sample, *batch, K)``."""
        eps = torch.finfo(self.probs.dtype).eps
        mu = self.probs.clamp(eps, 1 - eps)
        x = x.unsqueeze(-2)
        return (x * mu.log() + (1 - x) * (-mu).log1p()).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        broadcast_value_shape(type(self).__name__, value, self.batch_shape, self.event_shape)
        value = to_dtype(value, self.probs.dtype)  # scoring follows training's dtype rule
        if self._validate_args and value.numel():  # torch's check fails on empty values
            validate_sample(self, value)
        log_pi = self.logits.log_softmax(-1)
        return torch.logsumexp(log_pi + self._component_log_prob(value), dim=-1)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        if shape.numel() == 0:  # Categorical cannot draw zero samples
            return self.probs.new_zeros(shape + self.event_shape)
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
            mu = self.probs.expand(shape + self.probs.shape[-2:])
            mu = mu.gather(-2, k[..., None, None].expand(shape + (1, self.event_shape[0])))
            return torch.bernoulli(mu.squeeze(-2))

    @classmethod
    def fit_em(
        cls,
        x: torch.Tensor,
        num_components: int = 100,
        num_iters: int = 100,
        prior_count: float = 1.0,
        seed: int = 0,
        tol: float = 1e-6,
    ) -> BernoulliMixture:
        """Maximum a-posteriori EM on binary data ``x`` of shape ``(N, D)``.

        ``prior_count`` adds a Beta(1 + c/2, 1 + c/2)-style smoothing to the
        M-step (``mu = (sum r x + c/2) / (sum r + c)``) so no pixel gets
        probability exactly 0 or 1. Stops when the mean log-likelihood
        improves by less than ``tol`` nats. ``prior_count`` and ``tol`` are finite and ``>= 0``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"fit_em expects x of shape (N, D), got {got}")
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError("fit_em expects binary x with values in {0, 1}")
        if num_components < 1 or num_components > x.shape[0]:
            raise ValueError(f"num_components must be in [1, N={x.shape[0]}], got {num_components}")
        prior_count = check_real("prior_count", prior_count, minimum=0.0)
        tol = check_real("tol", tol, minimum=0.0)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        init = torch.rand(num_components, x.shape[1], generator=gen, dtype=x.dtype)
        probs = (0.25 + 0.5 * init).to(x.device)
        logits = torch.zeros(num_components, dtype=x.dtype, device=x.device)
        previous = -math.inf
        for _ in range(num_iters):
            model = cls(logits, probs)
            joint = logits.log_softmax(-1) + model._component_log_prob(x)
            ll = torch.logsumexp(joint, -1)
            resp = (joint - ll[:, None]).exp()
            counts = resp.sum(0)
            logits = (counts + 1e-10).log()
            probs = (resp.T @ x + prior_count / 2) / (counts[:, None] + prior_count)
            current = float(ll.mean())
            if current - previous < tol:
                break
            previous = current
        return cls(logits, probs)
