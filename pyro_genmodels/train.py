"""The training loop: :func:`fit` runs minibatch stochastic optimization of a Pyro loss.

One step is exactly ``pyro.infer.SVI.step`` — trace the params, call
``loss.loss_and_grads(model, guide, *batch)``, update the unconstrained
params, zero their gradients — except that the loss and the gradients are
checked for non-finite values *before* the update, so the parameters are
never corrupted. Around the steps, :func:`fit` shuffles reproducibly, keeps a
per-epoch history, shows a progress bar, runs callbacks, writes atomic
checkpoints and resumes from them exactly.

Reference: Bingham et al., "Pyro: Deep Universal Probabilistic Programming",
JMLR 2019 (the SVI step mirrored here).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer.util import torch_item, zero_grads
from tqdm.auto import tqdm

from pyro_genmodels import distributed as ddp
from pyro_genmodels.batches import TensorBatches, make_batches
from pyro_genmodels.checkpoint import (
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
    training_payload,
)
from pyro_genmodels.jit import with_jit
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.precision import check_precision, with_precision

__all__ = ["FitState", "fit", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
LAST_GOOD_NAME = "last_good.pt"


@dataclass
class FitState:
    """What callbacks see: the training loop's state at an epoch boundary.

    Attributes:
        epoch: current epoch, 0-based.
        epochs: total number of epochs requested.
        step: global optimization step count so far.
        history: rows (dicts) of the epochs already finished.
        row: the current epoch's row being built (``loss``, ``time``, ... at epoch end).
        model, guide, loss, optim: the objects passed to :func:`fit`.
        device: the device training runs on.
        stop: a callback may set this to ``True`` to end training after this epoch.
    """

    epoch: int
    epochs: int
    step: int
    history: list[dict[str, Any]]
    model: Callable
    guide: Callable
    loss: Any
    optim: pyro.optim.PyroOptim
    device: torch.device
    row: dict[str, Any] = field(default_factory=dict)
    stop: bool = False


class _NonFinite(Exception):
    """Internal: a step produced a non-finite loss or gradient (params untouched)."""


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _check_callbacks(callbacks: Iterable[Any]) -> list[Any]:
    if callable(callbacks) or not isinstance(callbacks, Iterable):
        raise TypeError(
            f"callbacks must be a sequence of callbacks, got {type(callbacks).__name__}"
        )
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or _has_hooks(cb)):
            raise TypeError(
                f"callbacks[{i}] must be callable cb(state) or have on_epoch_start/on_epoch_end "
                f"methods, got {type(cb).__name__}"
            )
    return callbacks


def _has_hooks(cb: Any) -> bool:
    return hasattr(cb, "on_epoch_start") or hasattr(cb, "on_epoch_end")


def _check_objects(model: Any, guide: Any, loss: Any, optim: Any, progress: Any) -> None:
    for name, fn in (("model", model), ("guide", guide)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if not callable(getattr(loss, "loss_and_grads", None)):
        raise TypeError(
            "loss must have a loss_and_grads(model, guide, *args) method (e.g. "
            f"pyro.infer.Trace_ELBO()), got {type(loss).__name__}"
        )
    if not isinstance(optim, pyro.optim.PyroOptim):
        raise TypeError(
            "optim must be a pyro.optim.PyroOptim (e.g. pyro.optim.Adam({'lr': 1e-3})) or a "
            f"pyro.optim.PyroLRScheduler, got {type(optim).__name__}"
        )
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")


# ----------------------------------------------------------------------------- devices


def _bound_modules(*fns: Callable) -> list[torch.nn.Module]:
    """The distinct ``nn.Module`` instances that ``fns`` are bound methods of."""
    modules: list[torch.nn.Module] = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module) and all(owner is not m for m in modules):
            modules.append(owner)
    return modules


def _resolve_device(device: Any, modules: Sequence[torch.nn.Module], batches: Any) -> torch.device:
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(
                f"device must be a torch.device or a string like 'cpu', got {device!r}"
            ) from e
    for module in modules:
        for p in module.parameters():
            return p.device
    for p in pyro.get_param_store()._params.values():
        return p.device
    if isinstance(batches, TensorBatches):
        return batches.tensors[0].device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- one step


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(torch_item(v)) for v in values)


def _train_step(
    model: Callable, guide: Callable, loss: Any, optim: pyro.optim.PyroOptim, batch: tuple
) -> tuple[float, ...]:
    """``pyro.infer.SVI.step`` with a non-finite check of loss and gradients before the update."""
    with poutine.trace(param_only=True) as param_capture:
        value = loss.loss_and_grads(model, guide, *batch)
    params = list(
        dict.fromkeys(site["value"].unconstrained() for site in param_capture.trace.nodes.values())
    )
    values = _as_floats(value)
    if not all(math.isfinite(v) for v in values):
        zero_grads(params)
        shown = values[0] if len(values) == 1 else values
        raise _NonFinite(f"non-finite loss {shown}")
    bad = _non_finite_grads(params)
    if bad:
        zero_grads(params)
        raise _NonFinite(f"loss {values} has non-finite gradients for parameter(s) {bad}")
    optim(params)
    zero_grads(params)
    return values


def _non_finite_grads(params: list[torch.Tensor]) -> list[str]:
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return []
    finite = torch.stack([torch.isfinite(p.grad).all() for p in with_grad])
    if bool(finite.all()):
        return []
    store = pyro.get_param_store()
    return [str(store.param_name(p)) for p, ok in zip(with_grad, finite.tolist()) if not ok]


def _read_lr(optim: pyro.optim.PyroOptim) -> float | None:
    """The learning rate in use, when every parameter's optimizer shares one."""
    lrs = set()
    for obj in optim.optim_objs.values():
        opt = getattr(obj, "optimizer", obj)
        lrs.update(float(group["lr"]) for group in opt.param_groups if "lr" in group)
    return lrs.pop() if len(lrs) == 1 else None


def _scheduler_step(optim: pyro.optim.PyroOptim, epoch_loss: float) -> None:
    if isinstance(optim, pyro.optim.PyroLRScheduler):
        if optim.pt_scheduler_constructor is torch.optim.lr_scheduler.ReduceLROnPlateau:
            optim.step(epoch_loss)
        else:
            optim.step()


@dataclass
class _Run:
    model: Callable
    guide: Callable
    loss: Any
    optim: pyro.optim.PyroOptim
    callbacks: list[Any]
    seed: int
    checkpoint_dir: Path | None
    batches: Any = None


def _payload(ctx: _Run, state: FitState, epoch: int, epoch_step: int | None = None) -> dict:
    payload = training_payload(
        epoch=epoch,
        step=state.step,
        history=state.history,
        seed=ctx.seed,
        optim=ctx.optim,
        loss=ctx.loss,
        callbacks=ctx.callbacks,
        epoch_step=epoch_step,
    )
    if ctx.batches is not None:
        payload["batches"] = ctx.batches.state_dict()
    return payload


# ----------------------------------------------------------------------------- epochs


def _run_callbacks(callbacks: list[Any], hook: str, state: FitState) -> None:
    for i, cb in enumerate(callbacks):
        if _has_hooks(cb):
            method = getattr(cb, hook, None)
            result = method(state) if method is not None else None
        else:
            result = cb(state) if hook == "on_epoch_end" else None
        if hook == "on_epoch_end" and result is not None:
            _merge_metrics(state.row, result, i)


def _merge_metrics(row: dict[str, Any], metrics: Any, index: int) -> None:
    if not isinstance(metrics, dict):
        raise TypeError(
            f"callbacks[{index}] must return a dict of metrics or None, "
            f"got {type(metrics).__name__}"
        )
    for key, value in metrics.items():
        if key in row:
            raise ValueError(
                f"callbacks[{index}] returned metric {key!r}, which is already a column"
            )
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise TypeError(
                f"callbacks[{index}] metric {key!r} must be a scalar, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        if isinstance(value, torch.Tensor | np.generic):
            value = value.item()
        if not isinstance(value, int | float | str):
            raise TypeError(
                f"callbacks[{index}] metric {key!r} must be an int, float or str, got "
                f"{type(value).__name__}"
            )
        row[str(key)] = value


def _loss_columns(totals: list[float], n: int) -> dict[str, float]:
    if len(totals) == 1:
        return {"loss": totals[0] / n}
    return {f"loss_{i}": total / n for i, total in enumerate(totals)}


def _run_epoch(ctx: _Run, state: FitState, batches: Any) -> dict:
    """Train one epoch; returns the row with loss columns and time."""
    n = batches.num_data
    totals: list[float] = []
    start = time.perf_counter()
    for i, batch in enumerate(batches.epoch(state.epoch)):
        try:
            values = _train_step(ctx.model, ctx.guide, ctx.loss, ctx.optim, batch)
        except _NonFinite as e:
            _fail(ctx, state, i, batches.num_batches(state.epoch), str(e))
        totals = list(values) if not totals else [a + b for a, b in zip(totals, values)]
        state.step += 1
    row = {"epoch": state.epoch + 1, **_loss_columns(totals, n)}
    row["time"] = time.perf_counter() - start
    lr = _read_lr(ctx.optim)
    if lr is not None:
        row["lr"] = lr
    return row


def _fail(ctx: _Run, state: FitState, i: int, num_batches: int, reason: str) -> None:
    where = "no checkpoint_dir was given, so nothing was saved"
    if ctx.checkpoint_dir is not None:
        path = ctx.checkpoint_dir / LAST_GOOD_NAME
        save_checkpoint(path, _payload(ctx, state, state.epoch, i))
        where = f"the last good state (before this step) was saved to {str(path)!r}"
    raise FloatingPointError(
        f"{reason} at epoch {state.epoch + 1} of {state.epochs} (1-based), step {i + 1} of "
        f"{num_batches} within the epoch (1-based; global step {state.step + 1}); the "
        f"parameters were not updated by this step and {where}"
    )


def _load_for_resume(checkpoint_dir: Path) -> dict[str, Any] | None:
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.is_file():
        warnings.warn(
            f"resume=True but there is no checkpoint at {str(path)!r}; starting from scratch",
            stacklevel=3,
        )
        return None
    return load_checkpoint(path)


def _history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    if not history:
        return pd.DataFrame(columns=["epoch", "loss", "time"])
    return pd.DataFrame(history)


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    return {k: f"{v:.4g}" for k, v in row.items() if k.startswith("loss")}


def fit(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    loss: Any = None,
    optim: pyro.optim.PyroOptim | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    progress: bool | None = None,
    precision: str = "fp32",
    distributed: bool | None = None,
    jit: bool = False,
) -> pd.DataFrame:
    """Minimize ``loss`` by minibatch steps θ ← update(θ, ∇θ loss(model, guide, *batch)) per epoch.

    Each step mirrors ``pyro.infer.SVI.step`` but checks the loss and the
    gradients for non-finite values *before* the optimizer update: on a
    non-finite value it saves the still-good state to
    ``checkpoint_dir/last_good.pt`` (when given) and raises
    ``FloatingPointError`` naming the epoch and step. Epoch ``e`` visits the
    data in an order drawn from a generator seeded by ``(seed, e)``.

    History convention: one row per epoch with ``epoch`` (1-based), ``loss``
    = (sum of the step losses over the epoch) / N — the mean per datapoint for
    losses that sum over the ``"data"`` plate such as ``Trace_ELBO`` — or
    ``loss_0, loss_1, ...`` when the loss returns a tuple, ``time`` (wall
    seconds of the epoch's steps, callbacks excluded), ``lr`` (when all
    parameters share one learning rate; the rate used during the epoch), and
    the entries returned by callbacks.

    Args:
        model, guide: Pyro callables, called as ``model(*batch)``; if one is a
            bound method of an ``nn.Module`` (e.g. ``vae.model``), that module is
            moved to ``device``.
        data: a tensor ``(N, ...)`` (called as ``model(batch)``), a tuple/list of
            tensors ``(N, ...)`` (``model(*batch)``), a dataset with ``.train``, a
            map-style ``torch.utils.data.Dataset`` or a ``DataLoader`` over one (its
            workers, ``collate_fn`` and pinned memory are used; its sampler is replaced
            by the seeded order, so the history equals the tensor path's for the same
            rows); see :mod:`pyro_genmodels.batches`.
        loss: object with ``loss_and_grads(model, guide, *args)`` returning a float
            or a tuple of floats; default ``pyro.infer.Trace_ELBO()``. If it has
            ``state_dict``/``load_state_dict`` (e.g. persistent chains) that state
            is checkpointed too.
        optim: ``pyro.optim.PyroOptim`` (default ``pgm.optim.Adam({"lr": 1e-3})``,
            Pyro's Adam trajectory through one torch optimizer) or a
            ``pyro.optim.PyroLRScheduler``, whose ``.step()`` is called once per
            epoch (with the epoch loss for ``ReduceLROnPlateau``).
        epochs: total number of epochs (including those restored on resume).
        batch_size: datapoints per step (all processes together); the last batch of
            an epoch may be smaller. ``None``: the DataLoader's, else 128.
        shuffle: reshuffle every epoch; otherwise batches are taken in order.
            ``None``: as the DataLoader was built (``shuffle=True``), else True.
        device: where to train; default: device of the bound module's first
            parameter, else of the first param in the param store, else of ``data``.
        seed: seeds all generators at start (``pyro.set_rng_seed``) and the batch order.
        checkpoint_dir: folder for ``checkpoint.pt`` (atomic; every
            ``checkpoint_every`` epochs and at the end) and ``last_good.pt``.
        resume: continue exactly from ``checkpoint_dir/checkpoint.pt`` (params,
            optimizer, RNG states, history); warns and starts fresh if absent.
        callbacks: each either ``cb(state) -> dict | None`` called at epoch end,
            or an object with optional ``on_epoch_start(state)`` /
            ``on_epoch_end(state) -> dict | None``; ``state`` is a
            :class:`FitState`. Returned entries become history columns.
            Callbacks with ``state_dict``/``load_state_dict`` are checkpointed.
        progress: tqdm bar over epochs; ``None`` shows it only if stderr is a TTY.
        precision: ``"fp32"``, or ``"bf16"``: each loss evaluation runs under
            ``torch.autocast`` in bfloat16 (CUDA; on a CPU the same recipe, usually
            slower) while params, gradients and optimizer state stay float32; see
            :mod:`pyro_genmodels.precision`.
        distributed: data-parallel over a ``torch.distributed`` process group (see
            :mod:`pyro_genmodels.distributed`): each process trains on its shard of
            every batch, gradients and losses are summed over processes, so a step
            equals one single-process step on the whole batch; only rank 0 writes
            checkpoints and shows progress. ``None``: when launched by ``torchrun``
            with more than one process, or when a process group is initialized.
        jit: compile the loss (``Trace_ELBO`` → ``JitTrace_ELBO``, ...), once per
            batch shape; data checks inside model and guide then run once per shape
            (see :mod:`pyro_genmodels.jit`). Not combined with ``precision="bf16"``.
    Returns:
        The history as a ``pandas.DataFrame``, one row per epoch (all epochs on resume).

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> pyro.clear_param_store()
        >>> def model(x):
        ...     loc = pyro.param("loc", torch.zeros(1))
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
        >>> x = torch.full((8,), 3.0)
        >>> opt = pyro.optim.Adam({"lr": 0.5})
        >>> h = fit(model, lambda x: None, x, optim=opt, epochs=20, batch_size=4, progress=False)
        >>> list(h.columns), len(h), round(pyro.param("loc").item())
        (['epoch', 'loss', 'time', 'lr'], 20, 3)
        >>> pyro.clear_param_store()

    References:
        Hoffman, Blei, Wang, Paisley, "Stochastic Variational Inference", JMLR 2013.
        Bingham et al., "Pyro: Deep Universal Probabilistic Programming", JMLR 2019.
    """
    loss = pyro.infer.Trace_ELBO() if loss is None else loss
    optim = GroupedAdam({"lr": 1e-3}) if optim is None else optim
    _check_objects(model, guide, loss, optim, progress)
    epochs = _check_int("epochs", epochs, 0)
    batch_size = None if batch_size is None else _check_int("batch_size", batch_size, 1)
    if shuffle is not None and not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True, False or None, got {shuffle!r}")
    precision = check_precision(precision)
    checkpoint_every = _check_int("checkpoint_every", checkpoint_every, 1)
    seed = _check_int("seed", seed, 0)
    batches = make_batches(data, batch_size, shuffle, seed)
    callbacks = _check_callbacks(callbacks)
    if resume and checkpoint_dir is None:
        raise ValueError(
            "resume=True needs checkpoint_dir (the folder holding checkpoint.pt), got None"
        )

    modules = _bound_modules(model, guide)
    device = None if device is None else _resolve_device(device, modules, batches)
    rank, world, device = ddp.setup(distributed, device)
    device = _resolve_device(device, modules, batches)
    for module in modules:
        module.to(device)
    batches.to(device)
    batches.set_rank(rank, world)
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if jit and precision != "fp32":
        raise ValueError(f"jit=True runs in float32 only, got precision={precision!r}")
    step_loss = with_precision(with_jit(loss, jit), precision, device)
    if world > 1:
        step_loss = ddp.DataParallelLoss(step_loss, device)
        progress = progress if rank == 0 else False
    writer_dir = ckpt_dir if rank == 0 else None
    ctx = _Run(model, guide, step_loss, optim, callbacks, seed, writer_dir, batches)
    state = FitState(0, epochs, 0, [], model, guide, loss, optim, device)

    pyro.set_rng_seed(seed)
    payload = _load_for_resume(ckpt_dir) if resume and rank == 0 else None
    if resume and world > 1:  # rank 0 reads; other machines need no shared file system
        payload = ddp.broadcast_object(payload)
    if payload is not None:
        batches.check_state(payload.get("batches"))
        batch = batches.take(torch.arange(min(batches.batch_size, batches.num_data)))
        restore_training_state(payload, model, guide, loss, optim, callbacks, batch, seed)
        state.epoch, state.step, state.history = (
            payload["epoch"],
            payload["step"],
            payload["history"],
        )
    if world > 1 and state.epoch < epochs:
        first = batches.take(batches.global_batches(state.epoch)[0])
        ddp.prime_and_broadcast(model, guide, loss, first, device)
    _train(ctx, state, batches, checkpoint_every, progress)
    if world > 1:
        ddp.barrier()  # rank 0's last checkpoint is on disk before any rank returns
    return _history_frame(state.history)


def _train(
    ctx: _Run, state: FitState, batches: Any, checkpoint_every: int, progress: bool | None
) -> None:
    show = sys.stderr.isatty() if progress is None else progress
    start = min(state.epoch, state.epochs)
    bar = tqdm(total=state.epochs, initial=start, disable=not show, desc="fit", unit="epoch")
    try:
        for epoch in range(start, state.epochs):
            state.epoch, state.row = epoch, {}
            _run_callbacks(ctx.callbacks, "on_epoch_start", state)
            state.row = _run_epoch(ctx, state, batches)
            _run_callbacks(ctx.callbacks, "on_epoch_end", state)
            state.history.append(state.row)
            _scheduler_step(
                ctx.optim, next(v for k, v in state.row.items() if k.startswith("loss"))
            )
            bar.update(1)
            bar.set_postfix(_postfix(state.row))
            last = epoch + 1 == state.epochs or state.stop
            if ctx.checkpoint_dir is not None and ((epoch + 1) % checkpoint_every == 0 or last):
                payload = _payload(ctx, state, epoch + 1)
                save_checkpoint(ctx.checkpoint_dir / CHECKPOINT_NAME, payload)
            if state.stop:
                break
    finally:
        bar.close()
