"""Orthogonal Sylvester flows, plain and amortized (context-conditional).

``y = x + Q R h(S Q^T x + b)`` with ``R``, ``S`` upper triangular (diagonals in
``(-1, 1)`` through ``tanh``), ``h = tanh`` and ``Q`` a product of Householder
reflections; by Sylvester's determinant identity
``log|det J| = sum_i log(1 + h'_i R_ii S_ii)``. Unlike Pyro's ``Sylvester`` these
create no tensor without the input's device and dtype, and the conditional
variant takes ``Q, R, S, b`` from a hypernetwork of the context (van den Berg et
al.'s amortized flow for VAE posteriors).

References:
    Sylvester Normalizing Flows for Variational Inference. R. van den Berg,
    L. Hasenclever, J. M. Tomczak, M. Welling, 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from pyro.nn import DenseNN
from torch import nn
from torch.distributions import Transform

from pyro_genmodels._checks import check_context, check_event, check_int
from pyro_genmodels._compat import transform_cached_x_y

Matrices = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (Q, R, S, b)


def householder_product(v: torch.Tensor) -> torch.Tensor:
    """``Q = prod_k (I - 2 v_k v_k^T / |v_k|^2)`` from ``v`` of shape ``(*, K, D)``;
    returns ``(*, D, D)`` orthogonal."""
    d = v.shape[-1]
    eye = torch.eye(d, dtype=v.dtype, device=v.device)
    unit = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    q = eye.expand(*v.shape[:-2], d, d)
    for k in range(v.shape[-2]):
        u = unit[..., k, :]
        q = q - 2 * (q @ u.unsqueeze(-1)) * u.unsqueeze(-2)
    return q


def triangular(dense: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    """Upper triangular ``(*, D, D)``: strict upper part of ``dense``, diagonal ``tanh(diag)``."""
    return dense.triu(1) + torch.diag_embed(torch.tanh(diag))


def sylvester_map(x, q, r, s, b) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = x + Q R tanh(S Q^T x + b)`` and ``log|det J|`` for row vectors ``x (*, D)``."""
    xq = (x.unsqueeze(-2) @ q).squeeze(-2)  # (Q^T x)^T
    pre = (xq.unsqueeze(-2) @ s.transpose(-1, -2)).squeeze(-2) + b  # (S Q^T x + b)^T
    h = torch.tanh(pre)
    y = x + ((h.unsqueeze(-2) @ r.transpose(-1, -2)) @ q.transpose(-1, -2)).squeeze(-2)
    diag = r.diagonal(dim1=-2, dim2=-1) * s.diagonal(dim1=-2, dim2=-1)
    logdet = torch.log1p((1 - h.pow(2)) * diag).sum(-1)
    return y, logdet


class _SylvesterBase:
    """Shared ``_call``/``_inverse``/``log_abs_det_jacobian`` of the two variants."""

    input_dim: int
    _cached_logdet: torch.Tensor | None

    def matrices(self) -> Matrices:
        """``(Q, R, S, b)`` of the map; the subclasses build them."""
        raise NotImplementedError

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        check_event(x, "x", (self.input_dim,))
        y, self._cached_logdet = sylvester_map(x, *self.matrices())
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "Sylvester flows have no closed-form inverse: densities are available only "
            "for the flow's own samples (cache_size=1)"
        )

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_old, y_old = transform_cached_x_y(self)
        if x is not x_old or y is not y_old or self._cached_logdet is None:
            return sylvester_map(x, *self.matrices())[1]
        return self._cached_logdet


class Sylvester(_SylvesterBase, TransformModule):
    """An orthogonal Sylvester flow with free parameters, ``(*, D) -> (*, D)``.

    Args:
        input_dim: ``D``.
        num_householder: reflections ``K`` composing ``Q``.

    >>> import torch
    >>> t = Sylvester(3)
    >>> x = torch.randn(4, 3)
    >>> t.log_abs_det_jacobian(x, t(x)).shape
    torch.Size([4])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = 1

    def __init__(self, input_dim: int, num_householder: int = 2, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.input_dim = check_int("input_dim", input_dim)
        k = check_int("num_householder", num_householder)
        self.v = nn.Parameter(torch.randn(k, input_dim))
        self.r_dense = nn.Parameter(torch.empty(input_dim, input_dim).uniform_(-0.01, 0.01))
        self.s_dense = nn.Parameter(torch.empty(input_dim, input_dim).uniform_(-0.01, 0.01))
        self.r_diag = nn.Parameter(torch.empty(input_dim).uniform_(-1.0, 1.0))
        self.s_diag = nn.Parameter(torch.empty(input_dim).uniform_(-1.0, 1.0))
        self.b = nn.Parameter(torch.empty(input_dim).uniform_(-0.01, 0.01))
        self._cached_logdet = None

    def matrices(self) -> Matrices:
        q = householder_product(self.v)
        return (
            q,
            triangular(self.r_dense, self.r_diag),
            triangular(self.s_dense, self.s_diag),
            self.b,
        )


class ConditionedSylvester(_SylvesterBase, Transform):
    """A Sylvester map with given ``Q, R, S (*, D, D)`` and ``b (*, D)``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = 1

    def __init__(self, q, r, s, b) -> None:
        super().__init__(cache_size=1)
        self.input_dim = b.shape[-1]
        self._matrices = (q, r, s, b)
        self._cached_logdet = None

    def matrices(self) -> Matrices:
        return self._matrices


class ConditionalSylvester(ConditionalTransformModule):
    """Amortized Sylvester flow: a hypernetwork maps the context ``c (*, C)`` to the
    Householder vectors, ``R``, ``S`` and ``b``; ``condition(c)`` returns the map.

    Args:
        input_dim: ``D``.
        hypernet: ``c -> (v (*, K*D), r_dense (*, D*D), s_dense (*, D*D),
            r_diag (*, D), s_diag (*, D), b (*, D))``.
        num_householder: ``K``.

    >>> import torch
    >>> t = ConditionalSylvester.build(3, context_dim=2, hidden_dims=[8])
    >>> t.condition(torch.zeros(5, 2))(torch.zeros(5, 3)).shape
    torch.Size([5, 3])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim: int, hypernet: nn.Module, num_householder: int = 2) -> None:
        super().__init__()
        self.input_dim = check_int("input_dim", input_dim)
        self.num_householder = check_int("num_householder", num_householder)
        self.nn = hypernet

    @staticmethod
    def build(
        input_dim: int, context_dim: int, hidden_dims: Sequence[int], num_householder: int = 2
    ) -> ConditionalSylvester:
        """With a ``DenseNN`` hypernetwork of the given hidden sizes."""
        d, k = input_dim, num_householder
        net = DenseNN(
            check_int("context_dim", context_dim), list(hidden_dims), [k * d, d * d, d * d, d, d, d]
        )
        return ConditionalSylvester(input_dim, net, num_householder)

    def condition(self, context: torch.Tensor) -> ConditionedSylvester:
        check_context(context)
        d, k = self.input_dim, self.num_householder
        v, r_dense, s_dense, r_diag, s_diag, b = self.nn(context)
        batch = v.shape[:-1]
        q = householder_product(v.reshape(*batch, k, d))
        r = triangular(r_dense.reshape(*batch, d, d), r_diag)
        s = triangular(s_dense.reshape(*batch, d, d), s_diag)
        return ConditionedSylvester(q, r, s, b)
