"""KL annealing: the warm-up of a model's loss-term weight, as a :func:`pgm.fit` callback.

References:
    Generating Sentences from a Continuous Space. S. R. Bowman, L. Vilnis,
    O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio, 2016 (KL annealing).
"""

from __future__ import annotations

from typing import Any

from pyro_genmodels._checks import check_int, check_positive_int, check_real
from pyro_genmodels.training.callbacks.base import Callback


class KLAnnealing(Callback):
    """Linear warm-up of a weight: ``w(e) = start + (end - start) * min(1, e / epochs)``.

    A callback for :func:`pyro_genmodels.fit`: at the start of every epoch ``e``
    (0-based ``state.epoch``) it sets ``setattr(module, attribute, w(e))``, so the
    first epoch trains with ``start`` and every epoch from ``epochs`` on with
    ``end``. At the end of an epoch it reports ``{attribute: current value}`` as a
    history column. ``value(e)`` evaluates the schedule as a plain function.

    Under ``fit``'s compiled loss (the default for the package's VAEs) a weight the programs
    read is a constant of the trace: the VAEs declare ``beta`` by ``trace_constants()``, so
    each new value is traced anew (once per value; the run takes the uncompiled loss's
    steps). Another module's attribute must be declared the same way
    (:func:`~pyro_genmodels.training.protocols.trace_constants`), or trained with
    ``jit=False``.

    Args:
        module: the object whose weight is annealed (e.g. a :class:`VAE`).
        start, end: the weights at epoch 0 and from epoch ``epochs`` on (>= 0).
        epochs: length of the warm-up, a positive int.
        attribute: name of the weight on ``module`` (``"beta"`` for the VAEs).

    >>> from pyro_genmodels.models import VAE
    >>> vae = VAE(4, 2, hidden_dims=(8,))
    >>> schedule = KLAnnealing(vae, start=0.0, end=1.0, epochs=4)
    >>> [schedule.value(e) for e in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]

    References:
        Generating Sentences from a Continuous Space. S. R. Bowman et al., 2016.
    """

    def __init__(
        self,
        module: Any,
        start: float = 0.0,
        end: float = 1.0,
        epochs: int = 10,
        attribute: str = "beta",
    ) -> None:
        if not isinstance(attribute, str) or not hasattr(module, attribute):
            raise ValueError(
                f"attribute must name an existing attribute of module "
                f"({type(module).__name__}), got {attribute!r}"
            )
        self.module = module
        self.start = check_real("start", start, minimum=0.0)
        self.end = check_real("end", end, minimum=0.0)
        self.epochs = check_positive_int("epochs", epochs)
        self.attribute = attribute

    def value(self, epoch: int) -> float:
        """The weight at 0-based ``epoch`` (a non-negative int)."""
        check_int("epoch", epoch, minimum=0)
        if epoch >= self.epochs:
            return self.end
        return self.start + (self.end - self.start) * epoch / self.epochs

    def on_epoch_start(self, state: Any) -> None:
        setattr(self.module, self.attribute, self.value(state.epoch))

    def on_epoch_end(self, state: Any) -> dict[str, float]:
        return {self.attribute: float(getattr(self.module, self.attribute))}
