"""Whether an energy's values are checked for NaN/inf (a switch the training losses turn off)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from pyro.poutine.util import is_validation_enabled

_CHECK_FINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("check_finite", default=True)


@contextlib.contextmanager
def unchecked_energies() -> Iterator[None]:
    """Inside, ``energy_of`` lets non-finite energies through (no ``ValueError``).

    The training losses and the samplers use it so that a diverging energy yields a
    non-finite loss that reaches ``pgm.fit``'s guard (which keeps the last good state), or
    a draw the sampler reports naming its step size, rather than an error in the middle
    of a step.

    >>> with unchecked_energies():
    ...     checking_energies()
    False
    """
    token = _CHECK_FINITE.set(False)
    try:
        yield
    finally:
        _CHECK_FINITE.reset(token)


def checking_energies() -> bool:
    """Whether energies are checked now: Pyro's validation is on and no
    :func:`unchecked_energies` block is open."""
    return is_validation_enabled() and _CHECK_FINITE.get()
