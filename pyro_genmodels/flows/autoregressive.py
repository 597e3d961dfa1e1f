"""Pyro's affine autoregressive layer with a soft-clamped log-scale and a dtype-
and device-safe inverse.

Pyro's ``AffineAutoregressive._inverse`` starts from ``torch.zeros`` in the
default dtype, so float64 flows fail in the sampling direction of MAF, and its
hard clamp of the log-scale to ``[-5, 3]`` passes gradients through values it
has cut. These subclasses keep Pyro's log-det and caching, soft-clamp the
log-scale (:func:`~pyro_genmodels.flows.coupling.soft_clamp`, as ``zuko`` does)
and fix the inverse.

References:
    Masked Autoregressive Flow for Density Estimation. G. Papamakarios,
    T. Pavlakou, I. Murray, 2017.
    Improved Variational Inference with Inverse Autoregressive Flow.
    D. P. Kingma et al., 2016.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from pyro.distributions.transforms import AffineAutoregressive, ConditionalAffineAutoregressive
from pyro.distributions.util import copy_docs_from
from pyro.nn.auto_reg_nn import AutoRegressiveNN, ConditionalAutoRegressiveNN

from pyro_genmodels._checks import check_context, check_event, check_positive_float
from pyro_genmodels.flows.coupling import soft_clamp


class MaskedAffineAutoregressive(AffineAutoregressive):
    """``y_i = mu_i(x_{<i}) + exp(a_i(x_{<i})) x_i`` (Pyro's ``AffineAutoregressive``,
    ``stable=False``) with ``a`` soft-clamped to ``(-bound, bound)``; the inverse,
    ``D`` MADE passes, keeps ``y``'s dtype and device.

    Args:
        autoregressive_nn: a ``pyro.nn.AutoRegressiveNN`` with ``param_dims=[1, 1]``.
        log_scale_bound: the soft clamp's bound.

    Shapes ``(*, D) -> (*, D)``.

    >>> import torch
    >>> from pyro.nn import AutoRegressiveNN
    >>> t = MaskedAffineAutoregressive(AutoRegressiveNN(3, [8])).double()
    >>> y = t(torch.randn(2, 3, dtype=torch.float64))
    >>> t.inv(y.clone()).dtype
    torch.float64
    """

    def __init__(self, autoregressive_nn, log_scale_bound: float = 7.0) -> None:
        super().__init__(autoregressive_nn)
        self.log_scale_bound = check_positive_float("log_scale_bound", log_scale_bound)

    def _log_scale(self, raw: torch.Tensor) -> torch.Tensor:
        return soft_clamp(raw, self.log_scale_bound)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        check_event(x, "x", (len(self.arn.permutation),))
        mean, raw = self.arn(x)
        self._cached_log_scale = self._log_scale(raw)
        return torch.exp(self._cached_log_scale) * x + mean

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_event(y, "y", (len(self.arn.permutation),))
        x = [torch.zeros_like(y[..., 0])] * y.size(-1)
        for idx in self.arn.permutation.tolist():
            mean, log_scale = self.arn(torch.stack(x, dim=-1))
            x[idx] = (y[..., idx] - mean[..., idx]) * torch.exp(
                -self._log_scale(log_scale[..., idx])
            )
        self._cached_log_scale = self._log_scale(log_scale)
        return torch.stack(x, dim=-1)


@copy_docs_from(ConditionalAffineAutoregressive)
class ConditionalMaskedAffineAutoregressive(ConditionalAffineAutoregressive):
    """Context-conditional :class:`MaskedAffineAutoregressive`: ``condition(c)``, ``c``
    of shape ``(*, C)``, returns the layer with ``mu, a`` computed from ``(x_{<i}, c)``.

    >>> import torch
    >>> from pyro.nn import ConditionalAutoRegressiveNN
    >>> t = ConditionalMaskedAffineAutoregressive(ConditionalAutoRegressiveNN(3, 2, [8]))
    >>> t.condition(torch.zeros(2))(torch.zeros(5, 3)).shape
    torch.Size([5, 3])
    """

    def condition(self, context: torch.Tensor) -> MaskedAffineAutoregressive:
        check_context(context)
        cond_nn: Any = partial(self.nn, context=context)  # carries the MADE's order too
        cond_nn.permutation = self.nn.permutation
        cond_nn.get_permutation = self.nn.get_permutation
        return MaskedAffineAutoregressive(cond_nn, **self.kwargs)


__all__ = [
    "AutoRegressiveNN",
    "ConditionalAutoRegressiveNN",
    "ConditionalMaskedAffineAutoregressive",
    "MaskedAffineAutoregressive",
]
