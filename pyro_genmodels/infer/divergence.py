"""The energy-based losses watch their own training and stop it when it diverges.

An energy trained by contrastive divergence can run away while every number stays
finite: the energies of the data fall and those of the negative chains rise without
bound (the sampler no longer keeps up with the model), or the chains wander far from
the data. ``pgm.fit``'s guard sees only non-finite values, so such a run would finish
with a useless model. :class:`DivergenceMonitor` sees the energies and the chains inside
the loss and raises :class:`EnergyDivergenceError` — naming the quantity that ran away
and the knobs that control it — when one of them stays out of bounds for ``patience``
consecutive steps.
"""

from __future__ import annotations

import torch

from pyro_genmodels._checks import check_int, check_positive_float


class EnergyDivergenceError(RuntimeError):
    """Training of an energy-based model diverged (finite values, but running away)."""


class DivergenceMonitor:
    """Bounds on an energy loss's statistics, checked every step.

    - the energies: ``max(|mean E(x⁺)|, |mean E(x⁻)|) ≤ max_energy · D`` (``D`` the
      event size; with a base ``q``, ``E`` is the residual energy);
    - the positive/negative gap: ``|mean E(x⁻) − mean E(x⁺)| ≤ max_gap · D`` (it grows
      when the chains fall behind the model: above, the model raised the energy where the
      chains were; below, the chains sit in spurious basins away from the data);
    - the chains: at most half of the negative chains have a coordinate farther than
      ``range_factor`` data widths outside the range of the data seen so far (all
      coordinates together: a pixel that is dark in every image may still be bright in
      a chain without anything running away).

    The defaults come from the 2-D toys: with ``k=20``, ``energy_reg=0.1`` (the defaults)
    on a plain MLP energy reading ``x`` the gap stays within
    ``[−0.11, 0.60]`` nats, ``|E|`` below 0.41 and at most 6% of the chains a quarter
    width outside the data; with ``k=1``, no penalty and ULA at ``η = 0.01`` the gap
    swings between −31 and +48 and ``|E|`` reaches 157 within 300 steps.

    A bound broken for ``patience`` consecutive steps raises :class:`EnergyDivergenceError`
    naming the quantity, its value, the bound and ``knobs`` (what to change).

    Args:
        knobs: the settings named in the error (e.g. ``"energy_reg, k, the sampler's step
            size"``).
        max_energy, max_gap, range_factor: the bounds (per event dimension for the first two).
        patience: consecutive steps out of bounds before the error.

    Example:
        >>> m = DivergenceMonitor("energy_reg", patience=2)
        >>> x = torch.zeros(4, 2)
        >>> m.observe("x", torch.zeros(4), torch.full((4,), 1e6), x, x)  # one step: a strike
        >>> try:
        ...     m.observe("x", torch.zeros(4), torch.full((4,), 1e6), x, x)
        ... except EnergyDivergenceError as e:
        ...     print(str(e)[:89])
        training diverged at site 'x': the mean energy of the negative chains (1e+06) is above 50
    """

    def __init__(
        self,
        knobs: str,
        max_energy: float = 25.0,
        max_gap: float = 5.0,
        range_factor: float = 0.5,
        patience: int = 10,
    ) -> None:
        self.knobs = knobs
        self.max_energy = check_positive_float("max_energy", max_energy)
        self.max_gap = check_positive_float("max_gap", max_gap)
        self.range_factor = check_positive_float("range_factor", range_factor)
        self.patience = check_int("patience", patience, 1)
        self.strikes: dict[str, int] = {}
        self.box: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _verdicts(
        self,
        site: str,
        e_pos: torch.Tensor,
        e_neg: torch.Tensor | None,
        x_pos: torch.Tensor | None,
        x_neg: torch.Tensor | None,
        dim: int,
    ) -> list[str]:
        """What is out of bounds this step (empty: nothing)."""
        out = []
        limit = self.max_energy * dim
        means = [("data", float(e_pos.detach().mean()))]
        if e_neg is not None:
            means.append(("negative chains", float(e_neg.detach().mean())))
        for name, value in means:
            if abs(value) > limit:
                out.append(
                    f"the mean energy of the {name} ({value:.4g}) is above {limit:.4g} "
                    f"(max_energy {self.max_energy:g} per dimension x {dim})"
                )
        if e_neg is not None:
            gap = means[1][1] - means[0][1]
            if abs(gap) > self.max_gap * dim:
                out.append(
                    f"the gap mean E(x-) - mean E(x+) ({gap:.4g}) is above "
                    f"{self.max_gap * dim:.4g} in size (max_gap {self.max_gap:g} per dimension x "
                    f"{dim}): the chains no longer keep up with the model"
                )
        if x_pos is not None and x_neg is not None:
            flat = x_pos.detach().reshape(-1, dim)
            low, high = flat.min(), flat.max()  # the range of every coordinate together
            if site in self.box:
                low, high = (
                    torch.minimum(low, self.box[site][0]),
                    torch.maximum(high, self.box[site][1]),
                )
            self.box[site] = (low, high)
            pad = self.range_factor * float(high - low)
            chains = x_neg.detach().reshape(-1, dim)
            outside = ((chains < low - pad) | (chains > high + pad)).any(-1)
            share = float(outside.to(chains.dtype).mean())
            if share > 0.5:
                out.append(
                    f"{share:.0%} of the negative chains are more than {self.range_factor:g} "
                    "data widths outside the data's range"
                )
        return out

    def observe(
        self,
        site: str,
        e_pos: torch.Tensor,
        e_neg: torch.Tensor | None = None,
        x_pos: torch.Tensor | None = None,
        x_neg: torch.Tensor | None = None,
        event_dim: int = 1,
    ) -> None:
        """Checks one step's energies ``E(x⁺)``, ``E(x⁻)`` and chains of ``site`` (the monitor
        only reads: it changes no value, so a resumed run trains alike; its counts restart)."""
        dim = 1 if x_pos is None else int(x_pos.shape[x_pos.dim() - event_dim :].numel())
        found = self._verdicts(site, e_pos, e_neg, x_pos, x_neg, dim)
        self.strikes[site] = self.strikes.get(site, 0) + 1 if found else 0
        if self.strikes[site] >= self.patience:
            self.strikes[site] = 0
            raise EnergyDivergenceError(
                f"training diverged at site {site!r}: {'; '.join(found)} for {self.patience} "
                f"steps in a row; change {self.knobs}"
            )
