"""The training loop: :func:`fit` runs minibatch stochastic optimization of a Pyro loss.

One step is exactly ``pyro.infer.SVI.step`` — trace the params, call
``loss.loss_and_grads(model, guide, *batch)``, update the unconstrained
params, zero their gradients — except that it runs inside
:class:`~pyro_genmodels.params.own_params` (each model trains its own
parameters, whatever their names in Pyro's param store), that the loss and
the gradients are checked for non-finite values *before* the update and the
parameters *after* it (a non-finite update is rolled back), so the
parameters are never corrupted. Around the steps, :func:`fit` shuffles
reproducibly, keeps a per-epoch history, shows a progress bar, runs
callbacks, writes atomic checkpoints and resumes from them exactly.

Reference: Bingham et al., "Pyro: Deep Universal Probabilistic Programming",
JMLR 2019 (the SVI step mirrored here).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyro
import pyro.optim
import torch
from tqdm.auto import tqdm

from pyro_genmodels import distributed as ddp
from pyro_genmodels._callbacks import check_callbacks, run_callbacks
from pyro_genmodels._checks import check_int, check_programs
from pyro_genmodels.batches import TensorBatches, make_batches
from pyro_genmodels.checkpoint import (
    get_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_state,
)
from pyro_genmodels.early_stopping import make_monitor
from pyro_genmodels.jit import with_jit
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.params import find_modules
from pyro_genmodels.placement import check_writable, model_dtype, resolve_device
from pyro_genmodels.precision import check_precision, with_precision
from pyro_genmodels.resume import (
    TRAINING_KEYS,
    needs_priming,
    non_finite_entries,
    prime_loss,
    restore_training_state,
    training_payload,
)
from pyro_genmodels.resume_rules import run_settings
from pyro_genmodels.shard_scale import ShardScale
from pyro_genmodels.step import LossUndo, NonFiniteStep, guarded_step, is_stateful

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
        run_id: the identity of the run (kept on resume; written into ``checkpoint.pt``
            and ``best.pt``).
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
    run_id: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    stop: bool = False


# ----------------------------------------------------------------------------- validation


def _check_objects(model: Any, guide: Any, loss: Any, optim: Any, progress: Any) -> None:
    check_programs(model, guide)
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


# ----------------------------------------------------------------------------- one step


def _read_lr(optim: pyro.optim.PyroOptim) -> float | None:
    """The learning rate in use, when every parameter's optimizer shares one."""
    lrs: set[float] = set()
    for obj in optim.optim_objs.values():
        opt = getattr(obj, "optimizer", obj)
        lrs.update(float(group["lr"]) for group in opt.param_groups if "lr" in group)
    return lrs.pop() if len(lrs) == 1 else None


def _plateau_value(row: dict[str, Any], monitor: str | None) -> float:
    """What ``ReduceLROnPlateau`` sees: the monitored (validation) value when there is one."""
    value = row.get(monitor) if monitor is not None else None
    if value is not None and math.isfinite(float(value)):
        return float(value)
    return next(v for k, v in row.items() if k.startswith("loss"))


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
    modules: list[torch.nn.Module] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    param_names: set[str] = field(default_factory=set)
    monitor: str | None = None
    undo: dict = field(default_factory=dict)  # reusable copies for undoing an update
    world: int = 1
    saving: bool = False  # checkpoint_dir was given (every rank; rank 0 alone writes)
    loss_undo: LossUndo | None = None  # puts a stateful loss back after a failed step
    settings: dict[str, Any] = field(default_factory=dict)  # what a resume must keep


def _payload(ctx: _Run, state: FitState, epoch: int, epoch_step: int | None = None) -> dict:
    return training_payload(
        settings=ctx.settings,
        run_id=state.run_id,
        epoch=epoch,
        step=state.step,
        history=state.history,
        seed=ctx.seed,
        optim=ctx.optim,
        modules=ctx.modules,
        loss=ctx.loss,
        callbacks=ctx.callbacks,
        epoch_step=epoch_step,
        run=ctx.run,
        param_names=ctx.param_names or None,
    )


def _save(ctx: _Run, state: FitState, epoch: int) -> None:
    """Write ``checkpoint.pt`` (rank 0), with every rank's random and loss states
    when data-parallel (a collective call: every rank makes it)."""
    rank_states = ddp.gather_rank_states(ctx.loss) if ctx.world > 1 else None
    if ctx.checkpoint_dir is None:  # a rank other than 0
        return
    payload = _payload(ctx, state, epoch)
    if rank_states is not None:
        payload["rank_states"] = rank_states
    save_checkpoint(ctx.checkpoint_dir / CHECKPOINT_NAME, payload)
    run_callbacks(ctx.callbacks, "on_checkpoint", state)


def _run_id(payload: dict[str, Any] | None, world: int) -> str:
    """The run's identity: the checkpoint's on resume, else a new random one (rank 0's)."""
    if payload is not None and payload.get("run_id"):
        return str(payload["run_id"])
    run_id = uuid.uuid4().hex  # os.urandom: draws nothing from the seeded generators
    return str(ddp.broadcast_object(run_id)) if world > 1 else run_id


# ----------------------------------------------------------------------------- epochs


def _loss_columns(totals: list[float], n: int) -> dict[str, float]:
    if len(totals) == 1:
        return {"loss": totals[0] / n}
    return {f"loss_{i}": total / n for i, total in enumerate(totals)}


def _run_epoch(ctx: _Run, state: FitState, batches: Any) -> dict:
    """Train one epoch; returns the row with loss columns and time."""
    n = batches.num_data
    totals: list[float] = []
    sizes = batches.step_sizes(state.epoch) if ctx.world > 1 else []
    start = time.perf_counter()
    for i, batch in enumerate(batches.epoch(state.epoch)):
        if sizes:  # the plate scaling of this step's global batch and shard
            ctx.loss.set_step(*sizes[i])
        try:
            values = guarded_step(
                ctx.model,
                ctx.guide,
                ctx.loss,
                ctx.optim,
                batch,
                ctx.param_names,
                ctx.undo,
                ctx.loss_undo,
            )
        except NonFiniteStep as e:
            _fail(ctx, state, i, batches.num_batches(state.epoch), e)
        totals = list(values) if not totals else [a + b for a, b in zip(totals, values)]
        state.step += 1
    row = {"epoch": state.epoch + 1, **_loss_columns(totals, n)}
    row["time"] = time.perf_counter() - start
    lr = _read_lr(ctx.optim)
    if lr is not None:
        row["lr"] = lr
    return row


def _fail(ctx: _Run, state: FitState, i: int, num_batches: int, error: Exception) -> None:
    reason = str(error)
    where = "no checkpoint_dir was given, so nothing was saved"
    if ctx.checkpoint_dir is not None:
        path = ctx.checkpoint_dir / LAST_GOOD_NAME
        payload = _payload(ctx, state, state.epoch, i)
        bad = non_finite_entries(payload)
        if bad:
            where = (
                f"the state was not saved to {str(path)!r} because it already holds non-finite "
                f"values (in {bad[:5]})"
            )
        else:
            try:
                save_checkpoint(path, payload)
                where = f"the last good state (before this step) was saved to {str(path)!r}"
            except OSError as e:
                where = (
                    f"saving the last good state to {str(path)!r} failed as well "
                    f"({type(e).__name__}: {e})"
                )
    raise FloatingPointError(
        f"{reason} at epoch {state.epoch + 1} of {state.epochs} (1-based), step {i + 1} of "
        f"{num_batches} within the epoch (1-based; global step {state.step + 1}); the "
        f"parameters were not updated by this step and {where}"
    ) from (error.__cause__ or error)


def _load_for_resume(checkpoint_dir: Path) -> dict[str, Any] | None:
    path = checkpoint_dir / CHECKPOINT_NAME
    remove_stale_temporaries(path)
    remove_stale_temporaries(checkpoint_dir / LAST_GOOD_NAME)
    if not path.is_file():
        warnings.warn(
            f"resume=True but there is no checkpoint at {str(path)!r}; starting from scratch",
            stacklevel=3,
        )
        return None
    return load_checkpoint(path, required=TRAINING_KEYS)


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
    validation: Any = None,
    validation_every: int = 1,
    early_stopping: int | None = None,
    keep_best: bool = False,
    monitor: str = "val_loss",
    precision: str = "fp32",
    distributed: bool | None = None,
    jit: bool = False,
) -> pd.DataFrame:
    """Minimize ``loss`` by minibatch steps θ ← update(θ, ∇θ loss(model, guide, *batch)) per epoch.

    Each step mirrors ``pyro.infer.SVI.step`` but checks the loss and the
    gradients for non-finite values *before* the optimizer update and the
    parameters *after* it (a non-finite update is undone, optimizer state
    included); Pyro's and torch's validation errors about NaN/inf values count
    as the same failure. On a failure it saves the still-good state to
    ``checkpoint_dir/last_good.pt`` (when given, and only if every value in it
    is finite) and raises ``FloatingPointError`` naming the epoch and step (and
    the write error too, if saving fails). Epoch ``e`` visits the data in an
    order drawn from a generator seeded by ``(seed, e)``.

    Steps run inside :class:`~pyro_genmodels.params.own_params`: a model trains
    its own parameters even when another model in the process registered the
    same names in Pyro's param store (or when Pyro would store a copy of a
    non-contiguous one). Whether the params exist when ``fit`` starts changes
    nothing: after one loss evaluation on the first batch
    (:func:`pyro_genmodels.distributed.prime`) ``fit`` takes the same steps; a
    loss that guesses its plate nesting on first use (``IWAELoss``) makes that
    trial pass before the first step, its random draws undone. The modules that ``fit`` trains and
    checkpoints (parameters *and* buffers) are those the model, guide and loss
    use (:func:`~pyro_genmodels.params.find_modules`: bound methods, closures,
    global names, attributes of the loss). Floating-point data are converted to
    the dtype of those modules' parameters (else of the param store's; else
    kept): float64 arrays from NumPy or scikit-learn train a float32 model.

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
        device: where to train (``"cuda"`` without a CUDA device is a
            ``ValueError``); default: device of the modules' first parameter,
            else of the first param in the param store, else of ``data``.
        seed: seeds all generators at start (``pyro.set_rng_seed``) and the batch order.
        checkpoint_dir: folder for ``checkpoint.pt`` (atomic, checksummed; every
            ``checkpoint_every`` epochs and at the end) and ``last_good.pt``;
            checked writable before training starts.
        resume: continue exactly from ``checkpoint_dir/checkpoint.pt`` (module
            parameters and buffers, params, optimizer, loss and callback state,
            RNG states, history); warns and starts fresh if absent. It refuses
            (``ValueError``) another optimizer kind, other data, ``batch_size``,
            ``shuffle`` or ``seed``; a new learning rate applies, with a
            warning. ``last_good.pt`` (written mid-epoch on a failure, with its
            ``epoch_step``) is never resumed from: resume continues from the
            last finished epoch in ``checkpoint.pt``.
        callbacks: each either ``cb(state) -> dict | None`` called at epoch end,
            or an object with optional ``on_epoch_start(state)`` /
            ``on_epoch_end(state) -> dict | None``; ``state`` is a
            :class:`FitState`. Returned entries become history columns.
            Callbacks with ``state_dict``/``load_state_dict`` are checkpointed.
        progress: tqdm bar over epochs; ``None`` shows it only if stderr is a TTY.
        validation: held-out data shaped like ``data`` (tensors ``(M, ...)``, a
            ``Dataset`` with a ``.valid`` split, a map-style
            ``torch.utils.data.Dataset`` or a ``DataLoader`` over one, read in order
            with the loader's batch size, every item once): every ``validation_every`` epochs
            the history gets ``val_loss``, ``loss.loss`` per datapoint on it (the
            same estimator as ``loss``), computed with modules in eval mode and
            forked random states, so training is unaffected
            (:class:`~pyro_genmodels.early_stopping.ValidationMonitor`). Like
            ``data``, it is moved to the training device and floating dtype.
        validation_every: validate every this many epochs.
        early_stopping: ``None`` or a patience: stop when ``monitor`` has not
            improved for that many epochs.
        keep_best: restore the parameters and buffers of the epoch with the lowest
            ``monitor`` at the end (they are also written to ``checkpoint_dir/best.pt``).
        monitor: the history column minimized by ``early_stopping``/``keep_best``
            and followed by ``ReduceLROnPlateau``: ``"val_loss"`` or a callback's metric.
        precision: ``"fp32"``, or ``"bf16"``: each loss evaluation runs under
            ``torch.autocast`` in bfloat16 (CUDA; on a CPU the same recipe, usually
            slower) while params, gradients and optimizer state stay float32; see
            :mod:`pyro_genmodels.precision`.
        distributed: data-parallel over a ``torch.distributed`` process group (see
            :mod:`pyro_genmodels.distributed`): each process trains on its shard of
            every batch, gradients and losses are summed over processes, so a step
            equals one single-process step on the whole batch (sites outside the data
            plate count ``1/W`` per process and subsampled plates are rescaled, see
            :mod:`pyro_genmodels.shard_scale`; an adversarial loss's inner critic
            updates use the critic gradients summed over processes); only rank 0 writes
            checkpoints and shows progress. Rank ``r`` draws from its own random
            streams (seed ``seed + 104729 r``) and keeps its own loss state (persistent
            chains); the checkpoint holds every rank's, restored rank by rank on
            resume with the same number of processes. ``None``: when launched by ``torchrun``
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
    epochs = check_int("epochs", epochs, 0)
    batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
    if shuffle is not None and not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True, False or None, got {shuffle!r}")
    precision = check_precision(precision)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    seed = check_int("seed", seed, 0)
    batches = make_batches(data, batch_size, shuffle, seed)
    callbacks = check_callbacks(callbacks)
    if resume and checkpoint_dir is None:
        raise ValueError(
            "resume=True needs checkpoint_dir (the folder holding checkpoint.pt), got None"
        )

    modules = find_modules(model, guide, loss)
    cpu = (torch.empty(0),)  # a Dataset's items are read on the CPU
    data_tensors = batches.tensors if isinstance(batches, TensorBatches) else cpu
    device = None if device is None else resolve_device(device, modules, data_tensors)
    rank, world, device = ddp.setup(distributed, device)
    device = resolve_device(device, modules, data_tensors)
    for module in modules:
        module.to(device)
    batches.to(device, model_dtype(modules))
    batches.set_rank(rank, world)
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt_dir is not None and rank == 0:
        check_writable(ckpt_dir)
    run = {} if ckpt_dir is None else batches.fingerprint()
    watcher = make_monitor(
        validation,
        batches.take(torch.arange(1)),
        batch_size=batches.batch_size,
        seed=seed,
        modules=modules,
        checkpoint_dir=ckpt_dir,
        every=validation_every,
        patience=early_stopping,
        keep_best=keep_best,
        monitor=monitor,
        writer=rank == 0,
    )
    if watcher is not None:
        callbacks = [*callbacks, watcher]  # last: it may monitor the other callbacks' metrics
    if jit and precision != "fp32":
        raise ValueError(f"jit=True runs in float32 only, got precision={precision!r}")
    step_loss = with_precision(with_jit(loss, jit), precision, device)
    if world > 1:
        step_loss = ddp.DataParallelLoss(step_loss, device)
        progress = progress if rank == 0 else False
    writer_dir = ckpt_dir if rank == 0 else None  # rank 0 alone writes
    ctx = _Run(model, guide, step_loss, optim, callbacks, seed, writer_dir, modules, run)
    ctx.monitor = None if watcher is None else watcher.monitor
    ctx.world, ctx.saving = world, ckpt_dir is not None
    ctx.loss_undo = LossUndo(step_loss)
    if ckpt_dir is not None:
        ctx.settings = run_settings(
            seed=seed,
            data=run,
            optim=optim,
            loss=loss,
            modules=modules,
            validation=None if watcher is None else watcher.settings(),
            keep_best=monitor if keep_best else False,
            precision=precision,
            jit=jit,
            callbacks=[cb for cb in callbacks if is_stateful(cb) and cb is not watcher],
        )
    state = FitState(0, epochs, 0, [], model, guide, loss, optim, device)

    pyro.set_rng_seed(ddp.rank_seed(seed, rank))  # each rank its own streams
    payload = _load_for_resume(ckpt_dir) if resume and ckpt_dir is not None and rank == 0 else None
    if resume and world > 1:  # rank 0 reads; other machines need no shared file system
        payload = ddp.broadcast_object(payload)
    state.run_id = _run_id(payload, world)
    if payload is not None:
        batch = batches.take(torch.arange(min(batches.batch_size, batches.num_data)))
        restore_training_state(
            payload, model, guide, loss, optim, callbacks, batch, ctx.settings, modules
        )
        state.epoch, state.step, state.history = (
            payload["epoch"],
            payload["step"],
            payload["history"],
        )
        if world > 1:
            ddp.restore_rank_state(payload, loss)
    if world == 1 and payload is None and epochs > 0 and needs_priming(loss):
        # the loss's first-call trial pass (its plate-nesting guess) draws nothing from the
        # training streams, as when distributed.prime made it before the first step
        rng = get_rng_state()
        prime_loss(loss, model, guide, batches.take(batches.global_batches(0)[0]))
        set_rng_state(rng)
    if world > 1 and state.epoch < epochs:
        idx = batches.global_batches(state.epoch)[0]
        first, shard = batches.take(idx), batches.take(batches.shard(idx))
        plates, sites = ddp.prime_and_broadcast(model, guide, loss, first, device, shard)
        step_loss.scale = ShardScale(plates, sites, world)
    _train(ctx, state, batches, checkpoint_every, progress)
    run_callbacks(ctx.callbacks, "on_train_end", state)
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
            run_callbacks(ctx.callbacks, "on_epoch_start", state)
            if state.stop:  # set at epoch start: end before training this epoch
                break
            state.row = _run_epoch(ctx, state, batches)
            run_callbacks(ctx.callbacks, "on_epoch_end", state)
            state.history.append(state.row)
            _scheduler_step(ctx.optim, _plateau_value(state.row, ctx.monitor))
            bar.update(1)
            bar.set_postfix(_postfix(state.row))
            last = epoch + 1 == state.epochs or state.stop
            if ctx.saving and ((epoch + 1) % checkpoint_every == 0 or last):
                _save(ctx, state, epoch + 1)
            if state.stop:
                break
    finally:
        bar.close()
