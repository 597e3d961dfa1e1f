"""``fit``: minibatch training of any Pyro loss, as a short facade over the Trainer.

:func:`fit` checks its arguments into a :class:`~pyro_genmodels.training.config.FitConfig`
and runs :class:`~pyro_genmodels.training.trainer.Trainer`. One step is exactly
``pyro.infer.SVI.step`` — trace the params, call ``loss.loss_and_grads(model, guide,
*batch)``, update the unconstrained params, zero their gradients — except that it runs
inside :class:`~pyro_genmodels.params.own_params` (each model trains its own
parameters, whatever their names in Pyro's param store), and that the loss, the
gradients and the update are guarded against non-finite values
(:mod:`pyro_genmodels.training.guard`), so the parameters are never corrupted.

Reference: Bingham et al., "Pyro: Deep Universal Probabilistic Programming",
JMLR 2019 (the SVI step mirrored here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyro.optim
import torch

from pyro_genmodels.training.config import FitConfig
from pyro_genmodels.training.trainer import Trainer

__all__ = ["fit"]


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
    jit: bool | None = None,
) -> pd.DataFrame:
    """Minimize ``loss`` by minibatch steps θ ← update(θ, ∇θ loss(model, guide, *batch)) per epoch.

    Each step mirrors ``pyro.infer.SVI.step`` but checks the loss and the
    gradients for non-finite values *before* the optimizer update, and no update
    leaves a non-finite value in the parameters or the optimizer state: an Adam
    update that its bounds prove finite runs as it is, any other is checked after
    it and undone, optimizer state included (:mod:`pyro_genmodels.training.guard`);
    a stateful loss's own state (replay buffers, a critic) is put back too, so a
    failed step changes nothing. Pyro's and torch's validation errors about NaN/inf
    values count as the same failure. On a failure it saves the still-good state to
    ``checkpoint_dir/last_good.pt`` (when given, and only if every value in it
    is finite) and raises ``FloatingPointError`` naming the epoch and step (and
    the write error too, if saving fails). Epoch ``e`` visits the data in an
    order drawn from a generator seeded by ``(seed, e)``. A loss that knows what
    ``model`` and ``guide`` compute may take the same step without running them
    (contrastive divergence on ``rbm.model``/``rbm.guide``:
    :mod:`pyro_genmodels.infer.contrastive_direct`; bit-identical results, the same
    guard; see :class:`~pyro_genmodels.training.step.Step`).

    Steps run inside :class:`~pyro_genmodels.params.own_params`: a model trains
    its own parameters even when another model in the process registered the
    same names in Pyro's param store (or when Pyro would store a copy of a
    non-contiguous one). Whether the params exist when ``fit`` starts changes
    nothing: after one loss evaluation on the first batch
    (:func:`pyro_genmodels.training.priming.prime`) ``fit`` takes the same steps; a
    loss that guesses its plate nesting on first use (``IWAELoss``) makes that
    trial pass before the first step, its random draws undone. The modules that ``fit``
    trains and checkpoints (parameters *and* buffers) are those the model, guide and loss
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
            rows); see :mod:`pyro_genmodels.training.batches`.
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
            :class:`~pyro_genmodels.training.state.FitState`. Returned entries become
            history columns. Callbacks with ``state_dict``/``load_state_dict`` are
            checkpointed. Every hook is listed in
            :mod:`pyro_genmodels.training.callbacks.base`.
        progress: tqdm bar over epochs; ``None`` shows it only if stderr is a TTY.
        validation: held-out data shaped like ``data`` (tensors ``(M, ...)``, a
            ``Dataset`` with a ``.valid`` split, a map-style
            ``torch.utils.data.Dataset`` or a ``DataLoader`` over one, read in order
            with the loader's batch size, every item once): every ``validation_every`` epochs
            the history gets ``val_loss``, ``loss.loss`` per datapoint on it (the
            same estimator as ``loss``), computed with modules in eval mode and
            forked random states, so training is unaffected
            (:class:`~pyro_genmodels.training.callbacks.validation.Validation`). Like
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
            :mod:`pyro_genmodels.training.loss_stack`.
        distributed: data-parallel over a ``torch.distributed`` process group (see
            :mod:`pyro_genmodels.parallel`): each process trains on its shard of
            every batch, gradients and losses are summed over processes, so a step
            equals one single-process step on the whole batch (sites outside the data
            plate count ``1/W`` per process and subsampled plates are rescaled, see
            :mod:`pyro_genmodels.parallel.shard_scale`; an adversarial loss's inner critic
            updates use the critic gradients summed over processes); only rank 0 writes
            checkpoints and shows progress. Rank ``r`` draws from its own random
            streams (seed ``seed + 104729 r``) and keeps its own loss state (persistent
            chains); the checkpoint holds every rank's, restored rank by rank on
            resume with the same number of processes. ``None``: when launched by ``torchrun``
            with more than one process, or when a process group is initialized.
        jit: compile the loss (``Trace_ELBO`` → ``JitTrace_ELBO``, ...), once per
            batch shape; data checks inside model and guide then run once per shape
            (see :mod:`pyro_genmodels.training.loss_stack`); a model that cannot be
            traced trains uncompiled, with a warning. ``None`` (the default): compile
            Pyro's ELBOs that have a compiled counterpart, in fp32; ``False``: never.
            ``True`` with ``precision="bf16"`` or another loss is a ``ValueError``.

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
    config = FitConfig.from_arguments(
        model,
        guide,
        data,
        loss=loss,
        optim=optim,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        device=device,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callbacks=callbacks,
        progress=progress,
        validation=validation,
        validation_every=validation_every,
        early_stopping=early_stopping,
        keep_best=keep_best,
        monitor=monitor,
        precision=precision,
        distributed=distributed,
        jit=jit,
    )
    return Trainer(config).run()
