"""The semi-supervised VAE "M2" of Kingma et al. (2014).

Generative model ``y ~ Cat(1/C)``, ``z ~ N(0, I)``, ``x | y, z ~ p_theta(x | y, z)``.
Guide ``q(y | x) = Cat(pi(x))`` (the classifier) and ``q(z | x, y)``. For a
labeled pair the ELBO is ``L(x, y)``; for an unlabeled ``x`` the label is
marginalized exactly by enumeration:
``U(x) = sum_y q(y|x) L(x, y) + H(q(y|x))``, which is what
``pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)`` computes from the guide's
``infer={"enumerate": "parallel"}`` site.

References:
    Semi-Supervised Learning with Deep Generative Models. D. P. Kingma,
    D. J. Rezende, S. Mohamed, M. Welling, 2014.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method

from pyro_genmodels._checks import (
    check_choice,
    check_hidden_dims,
    check_positive_int,
    check_real,
    validating,
)
from pyro_genmodels.models import _likelihoods as L
from pyro_genmodels.nn import MLP

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class SSVAE(L.LikelihoodSettings, PyroModule):
    """M2: ``J = sum_labeled [L(x,y) + alpha log q(y|x)] + sum_unlabeled U(x)`` (maximized).

    Args:
        x_dim: size of a flat datapoint.
        z_dim: size of the continuous latent ``z``.
        num_classes: number of classes ``C`` of the label ``y``.
        hidden_dims: hidden layers of the classifier, encoder and (reversed) decoder.
        likelihood: ``"bernoulli"``, ``"continuous_bernoulli"`` or ``"gaussian"``.
        alpha: weight of the classification term ``alpha * log q(y | x)`` per labeled
            datapoint (Kingma et al.'s ``alpha * N / N_labeled`` in their notation,
            where the classifier loss is an average over labeled data). A plain
            mutable attribute.

    ``model(x, y=None)`` and ``guide(x, y=None)``: ``x`` ``(N, x_dim)``; ``y`` long
    ``(N,)`` with ``-1`` marking an unknown label (``None``: all unknown). The batch
    is split in two: unlabeled datapoints live in ``pyro.plate("data")`` with sites
    ``"y"`` (latent, enumerated), ``"z"`` and ``"x"``; labeled ones in
    ``pyro.plate("data_labeled")`` with sites ``"y_labeled"`` (observed),
    ``"z_labeled"``, ``"x_labeled"``. Train with
    ``TraceEnum_ELBO(max_plate_nesting=1)``.

    The classification term is a ``pyro.factor("classifier_loss", ...)`` added to the
    model on labeled data only while ``self.training`` is true: after
    ``ssvae.eval()`` the model is the plain generative model, so losses and
    importance-sampled ``log p(x)`` are clean (``ssvae.train()`` turns it back on).

    >>> import torch, pyro
    >>> m2 = SSVAE(4, 2, num_classes=3, hidden_dims=(8,))
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    >>> loss = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(
    ...     m2.model, m2.guide, x, torch.tensor([2, -1]))
    >>> m2.classify(x).shape
    torch.Size([2])

    References:
        Semi-Supervised Learning with Deep Generative Models. D. P. Kingma,
        D. J. Rezende, S. Mohamed, M. Welling, 2014.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (256, 256),
        likelihood: str = "bernoulli",
        alpha: float = 50.0,
    ) -> None:
        super().__init__()
        self.x_dim = check_positive_int("x_dim", x_dim)
        self.z_dim = check_positive_int("z_dim", z_dim)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.likelihood = check_choice("likelihood", likelihood, L.LIKELIHOODS)
        self.alpha = check_real("alpha", alpha, minimum=0.0)
        hidden = check_hidden_dims(hidden_dims)
        c = self.num_classes
        self.classifier = MLP(x_dim, hidden, c)
        self.encoder, self.decoder = L.mlp_pair(
            x_dim, z_dim, hidden, likelihood, x_dim + c, z_dim + c
        )

    def _check_y(self, y: object, n: int, allow_unknown: bool = True) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.dtype not in _INT_DTYPES:
            got = y.dtype if isinstance(y, torch.Tensor) else type(y)
            raise TypeError(f"y must be a long tensor of labels of shape (N,), got {got}")
        if y.dim() != 1 or (n >= 0 and y.shape[0] != n):
            expected = "(N,)" if n < 0 else f"(N,) = ({n},) (that of x)"
            raise ValueError(f"y must have shape {expected}, got {tuple(y.shape)}")
        low = -1 if allow_unknown else 0
        if validating() and y.numel() and (y.min() < low or y.max() >= self.num_classes):
            known = " or -1 (unknown)" if allow_unknown else ""
            raise ValueError(
                f"y must hold labels in [0, {self.num_classes}){known}, got values in "
                f"[{y.min().item()}, {y.max().item()}]"
            )
        return y.long()

    def _check(
        self, x: torch.Tensor, y: torch.Tensor | None, allow_unknown: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = L.check_x(x, self.x_dim, self.likelihood)
        if y is None:
            if not allow_unknown:
                raise ValueError("y must be a tensor of labels, got None")
            return x, None
        return x, self._check_y(y, x.shape[0], allow_unknown)

    def _split(self, x, y):
        """``(x_labeled, y_labeled, x_unlabeled)``; ``None`` for an empty part."""
        if y is None:
            return None, None, x
        known = y >= 0
        if known.all():
            return x, y, None
        if not known.any():
            return None, None, x
        return x[known], y[known], x[~known]

    def _onehot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return L.one_hot(y, self.num_classes, like)

    def distribution_x(self, z: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z, y)`` for ``z`` ``(*, z_dim)`` and labels ``y`` broadcastable to ``*``."""
        return L.observation(self.likelihood, self.decoder(L.cat(z, self._onehot(y, z))))

    def _model_part(self, x: torch.Tensor, y: torch.Tensor | None, suffix: str) -> None:
        n = x.shape[0]
        prior_logits = x.new_zeros(self.num_classes)
        with pyro.plate("data" + suffix, n):
            z = pyro.sample("z" + suffix, dist.Normal(x.new_zeros(n, self.z_dim), 1.0).to_event(1))
            y = pyro.sample("y" + suffix, dist.Categorical(logits=prior_logits), obs=y)
            pyro.sample("x" + suffix, self.distribution_x(z, y), obs=x)
            if suffix and self.training and self.alpha > 0:
                log_q = dist.Categorical(logits=self.classifier(x)).log_prob(y)
                pyro.factor("classifier_loss", self.alpha * log_q)

    def _guide_part(self, x: torch.Tensor, y: torch.Tensor | None, suffix: str) -> None:
        with pyro.plate("data" + suffix, x.shape[0]):
            if y is None:
                y = pyro.sample(
                    "y",
                    dist.Categorical(logits=self.classifier(x)),
                    infer={"enumerate": "parallel"},
                )
            loc, scale = self.encoder(L.cat(x, self._onehot(y, x)))
            pyro.sample("z" + suffix, dist.Normal(loc, scale).to_event(1))

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """``p(x, y, z) = Cat(y; 1/C) N(z; 0, I) p(x | y, z)`` (+ the classifier term)."""
        xl, yl, xu = self._split(*self._check(x, y))
        if xl is not None:
            self._model_part(xl, yl, "_labeled")
        if xu is not None:
            self._model_part(xu, None, "")

    @pyro_method
    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """``q(y | x) q(z | x, y)``; ``y`` is sampled (enumerated) only where unknown."""
        xl, yl, xu = self._split(*self._check(x, y))
        if xl is not None:
            self._guide_part(xl, yl, "_labeled")
        if xu is not None:
            self._guide_part(xu, None, "")

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``argmax_y q(y | x)``: ``x`` ``(N, x_dim)`` -> long labels ``(N,)``."""
        x, _ = self._check(x, None)
        with torch.no_grad():
            return self.classifier(x).argmax(-1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of ``classify(x)`` equal to the labels ``y`` (long ``(N,)``, all known)."""
        x, labels = self._check(x, y, allow_unknown=False)  # raises for y=None
        return (self.classify(x) == cast(torch.Tensor, labels)).to(x.dtype).mean().item()

    def sample(self, y: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """``z ~ N(0, I)`` decoded for labels ``y`` (long ``(N,)``) to ``E[x | z, y]``
        (``mean=True``) or a draw ``x ~ p(x | z, y)``; returns ``(N, x_dim)``."""
        like = L.first_param(self)
        y = self._check_y(y, -1, allow_unknown=False).to(like.device)
        z = torch.randn(y.shape[0], self.z_dim, dtype=like.dtype, device=like.device)
        d = self.distribution_x(z, y)
        return d.mean if mean else d.sample()
