"""SGD as Boltzmann machines are trained: a per-datapoint rate, momentum, L2 weight decay on the
weights and a learning rate that decays linearly to its final value.

The contrastive losses sum over a batch (as ``Trace_ELBO`` does), so the step divides their
gradient ``g`` by the batch's datapoint count ``B``:

``Δθ ← μ Δθ - ε_t (g/B + λ θ)``, ``θ ← θ + Δθ``, ``ε_t = ε_0 + (ε_T - ε_0) min(t, T)/T``

(``λ`` on the coupling weights only, Hinton 2010). ``B`` comes from the training loop: the
machine counts the rows its ``model`` observed on the last call (times the number of
processes under ``torch.distributed``). A fixed ``batch_size`` instead is checked against the
loop: a batch with more rows, or a first batch with fewer (the data hold at least
``batch_size`` rows), is a ``ValueError`` naming both numbers, since it would silently rescale
the rate. The step count ``t`` and the momentum are per-parameter optimizer state, saved in
``pgm.fit`` checkpoints, so a resumed run continues the schedule exactly.

References:
    A practical guide to training restricted Boltzmann machines. G. E. Hinton, 2010.
    Training restricted Boltzmann machines using approximations to the likelihood
    gradient. T. Tieleman, 2008 (the linear decay to zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class BoltzmannSGD(torch.optim.Optimizer):
    """``Δθ ← μ Δθ - ε_t (g/B + λ θ)`` with ``ε_t`` linear from ``lr`` to ``final_lr`` over
    ``total_steps`` (constant when ``total_steps`` is None).

    Args:
        params: the parameters (or param groups) to update.
        lr: ``ε_0 > 0``, the rate per datapoint.
        momentum: ``μ`` in ``[0, 1)``.
        weight_decay: ``λ ≥ 0``.
        final_lr: ``ε_T ≥ 0`` (default ``lr``).
        total_steps: ``T``, steps of the decay.
        batch_rows: a callable returning the datapoints of the last gradient (the loop's).
        batch_size: a fixed ``B`` checked against ``batch_rows()``; None takes ``batch_rows()``.
        owner: how the error messages name the optimizer (``"rbm.sgd"``).

    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = BoltzmannSGD([w], lr=1.0, final_lr=0.0, total_steps=2, batch_rows=lambda: 4)
    >>> for _ in range(3):
    ...     w.grad = -4 * torch.ones(2)   # a summed gradient over 4 datapoints: mean -1
    ...     opt.step()
    >>> w.detach().tolist()              # rates 1, 0.5, 0
    [1.5, 1.5]
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        final_lr: float | None = None,
        total_steps: int | None = None,
        batch_rows: Callable[[], int | None] | None = None,
        batch_size: int | None = None,
        owner: str = "BoltzmannSGD",
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "final_lr": lr if final_lr is None else final_lr,
            "total_steps": total_steps,
        }
        super().__init__(params, defaults)
        self.batch_rows, self.batch_size, self.owner = batch_rows, batch_size, owner
        self._checked = False

    def rows(self) -> int:
        """``B`` of the coming step: ``batch_size`` checked against the loop, or the loop's."""
        seen = None if self.batch_rows is None else self.batch_rows()
        if self.batch_size is None:
            if seen is None:
                raise ValueError(
                    f"{self.owner} takes its batch size from the training loop, but the machine's "
                    "model has not observed a batch yet (train through machine.model, or pass "
                    "batch_size=)"
                )
            return seen
        if seen is not None and (
            seen > self.batch_size or (not self._checked and seen < self.batch_size)
        ):
            raise ValueError(
                f"{self.owner}(batch_size={self.batch_size}) was given, but the training loop's "
                f"batch has {seen} rows: the rate per datapoint would silently change by "
                f"{self.batch_size / seen:.3g}x; pass the loop's batch size (or leave batch_size "
                "unset to take it from the loop)"
            )
        self._checked = True
        return self.batch_size

    def update_growth(self) -> float:
        """``K = 1 + μ + ε(1 + λ)`` with ``ε`` the largest rate of the schedule: the new
        parameter and momentum buffer have norms at most ``K max(‖g‖, ‖θ‖, ‖Δθ‖)`` (``B ≥ 1``),
        which lets ``pgm.fit``'s guard prove an update finite without copying (``inf`` for a
        setting that is not a finite number ``≥ 0``)."""
        growth = 0.0
        for group in self.param_groups:
            values = [float(group[k]) for k in ("lr", "final_lr", "momentum", "weight_decay")]
            if not all(math.isfinite(v) and v >= 0 for v in values):
                return math.inf
            lr, final_lr, mu, wd = values
            growth = max(growth, 1 + mu + max(lr, final_lr) * (1 + wd))
        return growth

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter with a gradient: fused ``_foreach`` operations over
        the parameters that share a rate, momentum, weight decay, device and dtype."""
        loss = None if closure is None else closure()
        rows = self.rows()
        buckets: dict[tuple, tuple[list, list, list, list]] = {}
        for group in self.param_groups:
            total = group["total_steps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                if group["momentum"] and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                lr = group["lr"]
                if total:
                    lr = lr + (group["final_lr"] - lr) * min(float(state["step"]), total) / total
                key = (lr, group["momentum"], group["weight_decay"], p.device, p.dtype)
                params, grads, bufs, steps = buckets.setdefault(key, ([], [], [], []))
                params.append(p)
                grads.append(p.grad)
                bufs.append(state.get("momentum_buffer"))
                steps.append(state["step"])
        for (lr, momentum, decay, _, _), (params, grads, bufs, steps) in buckets.items():
            if momentum:
                updates = torch._foreach_div(grads, rows)
                if decay:
                    torch._foreach_add_(updates, params, alpha=decay)
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, updates, alpha=-lr)
                torch._foreach_add_(params, bufs)
            else:  # θ ← (1 − ελ)θ − (ε/B)g: the same update in two passes, no temporary
                if decay:
                    torch._foreach_mul_(params, 1 - lr * decay)
                torch._foreach_add_(params, grads, alpha=-lr / rows)
            torch._foreach_add_(steps, 1)
        return loss
