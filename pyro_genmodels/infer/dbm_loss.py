"""The training loss of deep Boltzmann machines: mean-field positive phase, PCD negative phase.

References:
    Deep Boltzmann machines. R. Salakhutdinov, G. E. Hinton, 2009.
    Training restricted Boltzmann machines using approximations to the likelihood
    gradient. T. Tieleman, 2008.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from pyro.util import warn_if_nan

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.infer._energy_sites import replayed_traces


class DBMLoss(ELBO):
    """One SVI loss for a DBM: mean-field positive phase + persistent-chain negative phase.

    ``loss = Σ_n [E(v_n, μ_n) - H(q_n)] - N · mean_c E(x_c)``, where ``μ_n`` comes from the
    guide's sites and ``x_c`` are ``num_chains`` persistent Gibbs chains advanced ``k`` sweeps
    per step; its gradient is ``-Σ_n ∇ELBO(v_n)`` with ``∇ log Z`` estimated by the chains.
    The value is a surrogate (``-ELBO - log Z`` minus the chains' mean energy).

    Args:
        num_chains: persistent chains (fantasy particles).
        k: Gibbs sweeps per step.

    ``state_dict()``/``load_state_dict()`` hold the chains, so ``fit`` resumes exactly; the
    chains start at random, or where ``load_state_dict({"x0": v, "x1": h1, ...})`` puts them
    (:class:`~pyro_genmodels.infer.DBMRecipe` starts them at training rows and their sampled
    mean-field hiddens).
    """

    def __init__(self, num_chains: int = 100, k: int = 1) -> None:
        super().__init__()
        self.num_chains = check_positive_int("num_chains", num_chains)
        self.k = check_positive_int("k", k)
        self.chains: list[torch.Tensor] | None = None
        self._saved: list[torch.Tensor] | None = None

    def begin_step(self) -> None:
        """Remember the chains before a step (sweeps make new tensors: nothing is copied)."""
        self._saved = self.chains

    def undo_step(self) -> None:
        """Put back the chains of :meth:`begin_step` (``pgm.fit`` does after a failed step)."""
        self.chains = self._saved

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
        """``(model_trace, guide_trace)``: the model replayed against the guide."""
        return replayed_traces(model, guide, args, kwargs)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        sites = [s for s in model_trace.nodes.values() if "boltzmann_machine" in s.get("infer", {})]
        if len(sites) != 1 or guide_trace.nodes.get("h1") is None:
            raise ValueError(
                "DBMLoss needs a model that runs dbm.model(v) once and the guide dbm.guide(v) "
                f"(a DBM's observed site 'v' and mean-field sites 'h1', ...); found {len(sites)}"
            )
        machine, v = sites[0]["infer"]["boltzmann_machine"], sites[0]["value"]
        mu = [v] + [
            guide_trace.nodes[f"h{l}"]["fn"].base_dist.probs.detach()
            for l in range(1, len(machine.layer_sizes))
        ]
        positive = machine.variational_free_energy(mu)
        if self.chains is None:
            self.chains = machine.random_states((self.num_chains,))
        if [c.shape[-1] for c in self.chains] != list(machine.layer_sizes):
            raise ValueError(
                f"DBMLoss chains have layer sizes {[c.shape[-1] for c in self.chains]}, the "
                f"machine {list(machine.layer_sizes)}"
            )
        self.chains = [c.to(v) for c in self.chains]
        params = machine.gibbs_params()
        for _ in range(self.k):
            self.chains = machine.gibbs_sweep(self.chains, parity_first=1, params=params)
        negative = machine.energy(self.chains).mean()
        loss = positive.sum() - v.shape[0] * negative
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return torch_item(loss)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.chains is None else {f"x{l}": x for l, x in enumerate(self.chains)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.chains = [state[f"x{l}"].clone() for l in range(len(state))] if state else None
