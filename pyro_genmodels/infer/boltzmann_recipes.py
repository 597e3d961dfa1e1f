"""The training recipes of the Boltzmann-machine papers, as documented defaults in one place.

A recipe says everything a run needs besides the data: the loss (CD-k, PCD, or a DBM's
mean field + persistent chains), the optimizer (:meth:`~pyro_genmodels.models.RBM.sgd`: a
rate per datapoint, momentum, weight decay on the weights), the learning-rate schedule
(linear decay to ``final_lr`` over the run), the persistent chains, the epochs and the
batch size; for a DBM also the greedy pretraining. ``recipe.fit_kwargs(machine, data)``
hands the loss, optimizer, epochs and batch size to :func:`pyro_genmodels.fit`::

    recipe = RBMRecipe()                      # PCD as Tieleman (2008) ran it
    rbm = pgm.models.RBM(784, 500)
    recipe.initialize(rbm, data.train)
    pgm.fit(rbm.model, rbm.guide, data.train, **recipe.fit_kwargs(rbm, data.train))

The defaults were chosen on binarized digits and mnist5k (``benchmarks/boltzmann.py``; the
README shows the table): on mnist5k at 500 hidden units and 50 epochs PCD reaches about 94
nats by AIS (93-96 over seeds), CD-10 95 and CD-1 106, each at its own rate.

References:
    Training restricted Boltzmann machines using approximations to the likelihood
    gradient. T. Tieleman, 2008.
    A practical guide to training restricted Boltzmann machines. G. E. Hinton, 2010.
    Deep Boltzmann machines. R. Salakhutdinov, G. E. Hinton, 2009.
    An efficient learning procedure for deep Boltzmann machines. R. Salakhutdinov,
    G. E. Hinton, 2012 (the doubled inputs of the pretraining stack).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from pyro_genmodels._checks import check_int, check_positive_int, check_real
from pyro_genmodels.infer.contrastive import ContrastiveDivergenceLoss
from pyro_genmodels.infer.dbm_loss import DBMLoss
from pyro_genmodels.models.layered import bernoulli


def _check_data(data: Any, machine: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or data.dim() != 2:
        raise TypeError(
            f"data must be a tensor of shape (N, {machine.layer_sizes[0]}), got "
            f"{tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__}"
        )
    return machine.check_visible(data, "data")


def _marginal_logits(x: torch.Tensor) -> torch.Tensor:
    """``log p - log(1 - p)`` of the column means of ``x (N, D)``, clamped to ``[1e-3, 1-1e-3]``
    (Hinton 2010's visible-bias initialization)."""
    p = x.mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.log(p) - torch.log1p(-p)


@dataclass(frozen=True)
class SGDSchedule:
    """The optimizer half of a recipe: ``Δθ ← momentum Δθ - ε_t (g/B + weight_decay θ)`` with
    ``ε_t`` linear from ``lr`` to ``final_lr`` over the run (see
    :meth:`~pyro_genmodels.models.RBM.sgd`); ``batch_size`` datapoints per step, ``epochs``
    passes over the data."""

    lr: float = 0.2
    final_lr: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 1e-4
    batch_size: int = 100
    epochs: int = 50

    def __post_init__(self) -> None:
        check_real("lr", self.lr, minimum=0.0, strict=True)
        check_real("final_lr", self.final_lr, minimum=0.0)
        check_real("momentum", self.momentum, minimum=0.0, maximum=0.999)
        check_real("weight_decay", self.weight_decay, minimum=0.0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("epochs", self.epochs)

    def steps(self, num_data: int) -> int:
        """Optimizer steps of the run: ``epochs · ⌈num_data / batch_size⌉``.

        >>> SGDSchedule(batch_size=100, epochs=3).steps(1437)
        45
        """
        return self.epochs * math.ceil(check_positive_int("num_data", num_data) / self.batch_size)

    def optim(self, machine: Any, num_data: int) -> Any:
        """``machine.sgd(...)`` with this schedule over ``num_data`` datapoints."""
        return machine.sgd(
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            final_lr=self.final_lr,
            total_steps=self.steps(num_data),
        )


@dataclass(frozen=True)
class RBMRecipe(SGDSchedule):
    """How an RBM is trained: PCD as Tieleman (2008) ran it, by default.

    ``k`` Gibbs sweeps per step from persistent chains (``persistent=True``: one chain per
    batch row, all advanced every step, never restarted) or from the data (CD-k); SGD with a
    rate of ``lr = 0.15`` per datapoint decaying linearly to 0 over 50 epochs of batches of
    100, no momentum (0.5 trained worse, 0.9 diverged), weight decay ``1e-4`` on ``W``;
    visible biases start at the logits of the data's pixel marginals (Hinton 2010). On
    mnist5k at 500 hidden units (AIS test NLL, seeds 0 / 1 / 2) the rate decides how often a
    run collapses: 0.1 gave 95.3 / 97.8 / 96.3, 0.15 92.96 / 96.37 / 93.88, 0.2 93.4 / 99.8 /
    95.3 and 0.3 104.9 / 140.1.
    :meth:`cd` is CD-k with its own rate (0.05, momentum 0.5) on the same schedule.

    >>> recipe = RBMRecipe.cd(10)
    >>> recipe.k, recipe.persistent, recipe.lr, recipe.momentum
    (10, False, 0.05, 0.5)
    """

    lr: float = 0.15
    k: int = 1
    persistent: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("k", self.k)
        if not isinstance(self.persistent, bool):
            raise TypeError(f"persistent must be a bool, got {type(self.persistent).__name__}")

    @classmethod
    def cd(cls, k: int = 1, **kwargs: Any) -> RBMRecipe:
        """CD-k (Hinton 2002): a rate of 0.05 per datapoint with momentum 0.5 (Hinton 2010),
        decaying linearly to 0, the rest as the default recipe (``kwargs`` override).

        On mnist5k PCD's old rate of 0.2 without momentum made CD-1 worse and unstable across
        seeds (120.5 and 115.5 against 104.5 at this setting; CD-10 110.0 against 94.8)."""
        return cls(k=k, persistent=False, **{"lr": 0.05, "momentum": 0.5, **kwargs})

    def replace(self, **changes: Any) -> RBMRecipe:
        """A copy with ``changes`` (e.g. ``epochs=10``)."""
        return dataclasses.replace(self, **changes)

    def loss(self) -> ContrastiveDivergenceLoss:
        """CD-k, or PCD with one persistent chain per row of the loop's batch (never
        restarted: :class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss`'s default for a
        Boltzmann machine)."""
        return ContrastiveDivergenceLoss(k=self.k, persistent=self.persistent)

    @torch.no_grad()
    def initialize(self, rbm: Any, data: torch.Tensor) -> None:
        """Visible biases at the logits of ``data``'s pixel marginals (Bernoulli visibles)."""
        data = _check_data(data, rbm)
        if rbm.visible == "bernoulli":
            rbm.visible_bias.copy_(_marginal_logits(data))

    def fit_kwargs(self, rbm: Any, data: torch.Tensor) -> dict[str, Any]:
        """``{"loss", "optim", "epochs", "batch_size"}`` for :func:`pyro_genmodels.fit`."""
        data = _check_data(data, rbm)
        return {
            "loss": self.loss(),
            "optim": self.optim(rbm, data.shape[0]),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
        }


class GreedyLayer:
    """One RBM of a DBM's greedy pretraining stack (Salakhutdinov & Hinton 2009, 2012).

    Its hiddens see ``up`` copies of its visibles and its visibles ``down`` copies of its
    hiddens: ``p(h | x) = σ(up · xW + c)``, ``p(x | h) = σ(down · hWᵀ + b)``. The bottom
    RBM has ``up = 2`` (two tied copies of the visible layer: in the DBM its hiddens also
    hear the layer above), the top one ``down = 2``, the ones between ``1, 1`` and their
    weights are halved when copied into the DBM (each of their layers hears two neighbours).

    Args:
        W: weights ``(n_in, n_out)``; b, c: visible ``(n_in,)`` and hidden ``(n_out,)`` biases.
        up, down: the input multiplicities (int: 1 or 2).

    >>> layer = GreedyLayer(torch.ones(2, 1), torch.zeros(2), torch.zeros(1), up=2, down=1)
    >>> layer.hidden_probs(torch.tensor([[1.0, 0.0]])).tolist()   # σ(2 · 1)
    [[0.8807970285415649]]
    """

    def __init__(
        self, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, up: int, down: int
    ) -> None:
        self.W, self.b, self.c = W, b, c
        self.up, self.down = check_positive_int("up", up), check_positive_int("down", down)

    def hidden_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``σ(up · xW + c)``, shape ``(N, n_out)``."""
        return torch.sigmoid(self.up * (x @ self.W) + self.c)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``σ(down · hWᵀ + b)``, shape ``(N, n_in)``."""
        return torch.sigmoid(self.down * (h @ self.W.T) + self.b)

    def cd1_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The CD-1 ascent direction ``(ΔW, Δb, Δc)`` per datapoint of the batch ``x (N, n_in)``:
        ``⟨x hᵀ⟩_data - ⟨x' h'ᵀ⟩_recon`` with ``h ~ p(h | x)``, ``x' ~ p(x | h)``, ``h' =
        p(h | x')`` (probabilities in the statistics)."""
        ph = self.hidden_probs(x)
        x_neg = bernoulli(self.visible_probs(bernoulli(ph)))
        ph_neg = self.hidden_probs(x_neg)
        n = x.shape[0]
        return (
            (x.T @ ph - x_neg.T @ ph_neg) / n,
            (x - x_neg).mean(0),
            (ph - ph_neg).mean(0),
        )


@dataclass(frozen=True)
class DBMRecipe(SGDSchedule):
    """How a DBM is trained, after Salakhutdinov & Hinton (2009).

    Greedy pretraining (:meth:`pretrain`): a stack of CD-1 RBMs with the doubled
    inputs of :class:`GreedyLayer`, ``pretrain_epochs`` each, SGD at ``pretrain_lr`` per
    datapoint with momentum ``pretrain_momentum`` and weight decay ``pretrain_weight_decay``;
    layer ``l`` learns from the (sampled) probabilities of the layer below. Then joint
    training (:meth:`fit_kwargs`): :class:`~pyro_genmodels.infer.DBMLoss` (mean-field
    positive phase, ``chains`` persistent Gibbs chains started from the data and advanced
    ``k`` sweeps a step) with :meth:`~pyro_genmodels.models.DBM.sgd` at ``lr`` decaying
    linearly to ``final_lr``.

    >>> DBMRecipe().chains, DBMRecipe().k
    (100, 5)
    """

    #: 0.05 with weight decay 5e-3: on binarized mnist5k (500-500, 50 epochs) the test bounds of
    #: seeds 0-3 were 92.97 / 97.52 / 95.75 / 91.48 at 0.1 and 2e-4, 90.99 / 91.74 / 93.15 /
    #: 93.72 at 0.05 and 1e-3, and lower again at 5e-3 (benchmarks/results/boltzmann.csv):
    #: 4 000 images overfit the DBM, whose training bound is 20-30 nats below its test bound
    lr: float = 0.05
    weight_decay: float = 5e-3
    chains: int = 100
    k: int = 5
    pretrain_epochs: int = 20
    pretrain_lr: float = 0.05
    pretrain_momentum: float = 0.5
    pretrain_weight_decay: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("chains", self.chains)
        check_positive_int("k", self.k)
        check_int("pretrain_epochs", self.pretrain_epochs, minimum=0)
        check_real("pretrain_lr", self.pretrain_lr, minimum=0.0, strict=True)
        check_real("pretrain_momentum", self.pretrain_momentum, minimum=0.0, maximum=0.999)
        check_real("pretrain_weight_decay", self.pretrain_weight_decay, minimum=0.0)

    def replace(self, **changes: Any) -> DBMRecipe:
        """A copy with ``changes`` (e.g. ``epochs=10``)."""
        return dataclasses.replace(self, **changes)

    def layers(self, dbm: Any) -> list[GreedyLayer]:
        """The pretraining stack for ``dbm``: fresh weights (``N(0, 0.01²)``), zero biases, and
        the input multiplicities of the paper (bottom ``up = 2``, top ``down = 2``)."""
        sizes, L = dbm.layer_sizes, len(dbm.layer_sizes) - 1
        like = dbm.layer_biases()[0]
        kw = {"dtype": like.dtype, "device": like.device}
        return [
            GreedyLayer(
                0.01 * torch.randn(sizes[l - 1], sizes[l], **kw),
                torch.zeros(sizes[l - 1], **kw),
                torch.zeros(sizes[l], **kw),
                up=2 if l == 1 else 1,
                down=2 if l == L else 1,
            )
            for l in range(1, L + 1)
        ]

    @torch.no_grad()
    def pretrain(self, dbm: Any, data: torch.Tensor, seed: int = 0) -> list[list[float]]:
        """Greedy layer-wise pretraining, then the stack copied into ``dbm``: ``W_l`` as learned
        for the bottom and top RBMs, halved for those between; ``b_0`` the bottom RBM's visible
        biases, ``b_l`` the hidden biases of RBM ``l``. Each RBM's visible biases start at the
        logits of its input's means; the momentum rises to 0.9 after 5 epochs. Returns each
        layer's per-epoch mean squared reconstruction error. A non-finite update stops it with a
        ``FloatingPointError`` naming ``pretrain_lr``; ``dbm`` is then left unchanged."""
        x = _check_data(data, dbm)
        g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, minimum=0))
        stack, errors = self.layers(dbm), []
        for l, layer in enumerate(stack, start=1):
            layer.b.copy_(_marginal_logits(x))
            errors.append(self._train_layer(layer, x, g, sampled=l > 1, name=f"layer {l}"))
            x = layer.hidden_probs(x)
        L = len(stack)
        for l, layer in enumerate(stack, start=1):
            getattr(dbm, f"W{l}").copy_(layer.W * (1.0 if l in (1, L) else 0.5))
            getattr(dbm, f"b{l}").copy_(layer.c)
        dbm.b0.copy_(stack[0].b)
        return errors

    def _train_layer(
        self, layer: GreedyLayer, x: torch.Tensor, g: torch.Generator, sampled: bool, name: str
    ) -> list[float]:
        params = [layer.W, layer.b, layer.c]
        velocity = [torch.zeros_like(p) for p in params]
        n, errors = x.shape[0], []
        for epoch in range(self.pretrain_epochs):
            order = torch.randperm(n, generator=g).to(x.device)
            total = 0.0
            momentum = self.pretrain_momentum if epoch < 5 else max(self.pretrain_momentum, 0.9)
            for i in range(0, n, self.batch_size):
                batch = x[order[i : i + self.batch_size]]
                if sampled:
                    batch = bernoulli(batch)
                grads = layer.cd1_gradient(batch)
                for p, v, grad in zip(params, velocity, grads, strict=True):
                    decay = self.pretrain_weight_decay * p if p is layer.W else 0.0
                    v.mul_(momentum).add_(grad - decay, alpha=self.pretrain_lr)
                    p.add_(v)
                total += float(
                    ((batch - layer.visible_probs(layer.hidden_probs(batch))) ** 2).sum()
                )
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise FloatingPointError(
                    f"DBM pretraining of {name} diverged in epoch {epoch + 1} (non-finite "
                    f"weights): lower pretrain_lr (now {self.pretrain_lr:g}) or pretrain_momentum"
                )
            errors.append(total / n)
        return errors

    def loss(self, dbm: Any, data: torch.Tensor) -> DBMLoss:
        """:class:`~pyro_genmodels.infer.DBMLoss` whose ``chains`` persistent chains start at
        random training rows (hiddens drawn from their mean field)."""
        data = _check_data(data, dbm)
        index = torch.randint(0, data.shape[0], (self.chains,), device=data.device)
        mu = dbm.mean_field(data[index])
        loss = DBMLoss(num_chains=self.chains, k=self.k)
        loss.load_state_dict({f"x{l}": bernoulli(m) for l, m in enumerate(mu)})
        return loss

    def fit_kwargs(self, dbm: Any, data: torch.Tensor) -> dict[str, Any]:
        """``{"loss", "optim", "epochs", "batch_size"}`` for :func:`pyro_genmodels.fit`."""
        data = _check_data(data, dbm)
        return {
            "loss": self.loss(dbm, data),
            "optim": self.optim(dbm, data.shape[0]),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
        }
