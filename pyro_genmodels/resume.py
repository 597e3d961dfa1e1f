"""The training state that :func:`pyro_genmodels.fit` checkpoints, and its exact restoration.

:func:`training_payload` gathers everything a run depends on: the parameters
*and buffers* of every module the model, guide and loss use (their
``state_dict``, keyed by position, not by param-store name), the param-store
parameters that belong to no module, the optimizer state (keyed stably), the
RNG states, the history, the ``state_dict`` of a stateful loss or callback
(tensors only), and what the run was configured with (optimizer kind and
learning rate, data fingerprint, batch size, shuffling, seed).
:func:`restore_training_state` puts it back in place, so that modules and the
param store stay the same tensor objects, and refuses with a clear
``ValueError`` anything that would make the continuation differ from an
uninterrupted run (another optimizer kind, other data, batch size, shuffling
or seed, other modules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine

from pyro_genmodels._compat import guess_max_plate_nesting, optim_args_of, store_params
from pyro_genmodels.checkpoint import (
    FORMAT_VERSION,
    get_rng_state,
    payload_checksum,
    set_rng_state,
    to_cpu,
)
from pyro_genmodels.optim import optim_kind
from pyro_genmodels.params import own_params, param_keys
from pyro_genmodels.resume_rules import check_resume

__all__ = [
    "TRAINING_KEYS",
    "data_fingerprint",
    "needs_priming",
    "non_finite_entries",
    "prime_loss",
    "restore_training_state",
    "saved_settings",
    "training_payload",
]

TRAINING_KEYS = (
    "epoch",
    "step",
    "seed",
    "history",
    "rng",
    "modules",
    "module_types",
    "params",
    "optim",
    "optim_kind",
    "run",
)
"""Entries every training checkpoint holds (checked when resuming)."""


def data_fingerprint(tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool) -> dict:
    """What a resumed run must share with the original: data (shapes, dtypes, SHA-256), batching.

    >>> fp = data_fingerprint([torch.zeros(3, 2)], 2, True)
    >>> fp["num_data"], fp["shapes"], fp["batch_size"]
    (3, [[2]], 2)
    """
    return {
        "num_data": int(tensors[0].shape[0]),
        "shapes": [list(t.shape[1:]) for t in tensors],
        "dtypes": [str(t.dtype) for t in tensors],
        "sha256": payload_checksum(list(tensors)),
        "batch_size": int(batch_size),
        "shuffle": bool(shuffle),
    }


def _stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def training_payload(
    *,
    epoch: int,
    step: int,
    history: Sequence[Mapping[str, Any]],
    seed: int,
    optim: pyro.optim.PyroOptim,
    modules: Sequence[torch.nn.Module] = (),
    loss: Any = None,
    callbacks: Sequence[Any] = (),
    epoch_step: int | None = None,
    run: Mapping[str, Any] | None = None,
    param_names: set[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The training state as a checkpoint payload (everything detached, on the CPU).

    Keys: ``format_version``, ``epoch`` (epochs completed), ``step`` (global
    steps), ``epoch_step`` (steps completed inside an unfinished epoch, or
    ``None``), ``modules`` (each module's ``state_dict``: parameters and
    buffers), ``module_types``, ``params`` (param-store name → unconstrained
    tensor, for every param of no module), ``params_used`` (the sorted
    ``param_names`` the training steps traced, or ``None``: the params a
    resumed run must recreate; others are restored when present), ``optim``
    (state per stable parameter key), ``optim_kind``,
    ``rng`` (:func:`~pyro_genmodels.checkpoint.get_rng_state`), ``history``,
    ``seed``, ``run`` (:func:`data_fingerprint`), ``loss_state`` and
    ``callback_states`` (their ``state_dict()`` where they have one), ``settings``
    (:func:`~pyro_genmodels.resume_rules.run_settings`, checked on resume) and
    ``run_id`` (the run's identity, shared by its ``best.pt``).

    >>> import pyro
    >>> pyro.clear_param_store(); _ = pyro.param("w", torch.ones(2))
    >>> payload = training_payload(epoch=1, step=3, history=[], seed=0, optim=pyro.optim.Adam({}))
    >>> payload["params"], payload["epoch"]
    ({'w': tensor([1., 1.])}, 1)
    >>> pyro.clear_param_store()
    """
    store = pyro.get_param_store()
    keys = param_keys(list(modules))
    params = {name: to_cpu(p) for name, p in store_params(store).items() if p not in keys}
    optim_state = {}
    for name, state in optim.get_state().items():
        tensor = store_params(store).get(name) if name is not None else None
        if tensor is not None:
            optim_state[keys.get(tensor, name)] = to_cpu(state)
    return {
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "step": int(step),
        "epoch_step": epoch_step,
        "modules": [to_cpu(m.state_dict()) for m in modules],
        "module_types": [type(m).__qualname__ for m in modules],
        "params": params,
        "params_used": None if param_names is None else sorted(param_names),
        "optim": optim_state,
        "optim_kind": optim_kind(optim),
        "rng": get_rng_state(),
        "history": [dict(row) for row in history],
        "seed": int(seed),
        "run": dict(run or {}),
        "loss_state": to_cpu(loss.state_dict()) if _stateful(loss) else None,
        "callback_states": [to_cpu(cb.state_dict()) if _stateful(cb) else None for cb in callbacks],
        "settings": None if settings is None else dict(settings),
        "run_id": run_id,
    }


def non_finite_entries(payload: dict) -> list[str]:
    """Paths of floating tensors holding NaN/inf in the trained state of ``payload``."""
    found: list[str] = []

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                found.append(where)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, f"{where}.{key}")
        elif isinstance(obj, list | tuple):
            for j, value in enumerate(obj):
                walk(value, f"{where}[{j}]")

    for key in ("modules", "params", "optim", "loss_state"):
        walk(payload.get(key), key)
    return found


def needs_priming(loss: Any) -> bool:
    """Whether ``loss`` runs a trial pass (guessing its plate nesting) on its first call."""
    if getattr(loss, "max_plate_nesting", None) != math.inf:
        return False
    from pyro.infer import TraceEnum_ELBO, TraceTMC_ELBO

    from pyro_genmodels.infer import IWAELoss

    always = isinstance(loss, IWAELoss | TraceEnum_ELBO | TraceTMC_ELBO)
    return always or bool(getattr(loss, "vectorize_particles", False))


def prime_loss(loss: Any, model: Callable, guide: Callable, batch: tuple) -> None:
    """Do now the first-call work of ``loss`` (the plate-nesting trial pass), if it has any.

    A resumed run primes its loss *before* restoring the RNG states, so the
    random numbers that the trial pass draws do not shift the continuation; a fresh
    ``fit`` primes it before its first step with the RNG states restored afterwards,
    so that the first step draws the same numbers whether or not the loss was
    primed before ``fit`` (:func:`pyro_genmodels.distributed.prime`).
    """
    if not needs_priming(loss):
        return
    from pyro_genmodels.infer import IWAELoss
    from pyro_genmodels.infer.weights import max_plate_nesting

    with torch.no_grad(), poutine.block(), own_params():
        if isinstance(loss, IWAELoss):
            loss.max_plate_nesting = max_plate_nesting(model, guide, *batch)
        else:
            guess_max_plate_nesting(loss, model, guide, batch)


def _create_params(
    model: Callable,
    guide: Callable,
    loss: Any,
    batch: tuple,
    payload: Mapping[str, Any],
    keys: dict,
) -> None:
    """Run guide and model (and, if params are still missing, the loss) once on ``batch``."""
    store = pyro.get_param_store()
    names = set(payload["params"])
    if payload.get("params_used") is not None:  # untraced leftovers need not be recreated
        names &= set(payload["params_used"])

    def missing() -> list[str]:
        unnamed = [k for k in payload["optim"] if k in keys and store.param_name(keys[k]) is None]
        return sorted(names - set(store_params(store))) + unnamed

    with torch.no_grad(), poutine.block(), own_params():
        guide_trace = poutine.trace(guide).get_trace(*batch)
        poutine.replay(model, trace=guide_trace)(*batch)
        if missing() and callable(getattr(loss, "loss", None)):
            loss.loss(model, guide, *batch)
    if missing():
        raise ValueError(f"checkpoint params {missing()} are not created by this model/guide/loss")


def saved_settings(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~pyro_genmodels.resume_rules.run_settings` a checkpoint was written with;
    for a checkpoint written before settings were recorded, the part it holds (seed,
    optimizer, data and batching)."""
    if payload.get("settings") is not None:
        return dict(payload["settings"])
    kind = payload["optim_kind"]
    old = {"seed": payload["seed"], "optim.kind": kind["kind"], "optim.lr": kind["lr"]}
    old.update({f"data.{k}": v for k, v in payload["run"].items()})
    return old


def _load_modules(payload: Mapping[str, Any], modules: Sequence[torch.nn.Module]) -> None:
    saved, types = payload["modules"], payload["module_types"]
    now = [type(m).__qualname__ for m in modules]
    if list(types) != now:
        raise ValueError(
            f"the checkpoint holds the state of modules {list(types)} but this model, guide "
            f"and loss use {now}"
        )
    for i, (module, state) in enumerate(zip(modules, saved)):
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"the checkpoint's module {i} ({types[i]}) does not fit this one: {error}"
            ) from error


def _load_params(payload: Mapping[str, Any]) -> None:
    store = pyro.get_param_store()
    with torch.no_grad():
        for name, value in payload["params"].items():
            target = store_params(store).get(name)
            if target is None:  # a param no training step used (see _create_params)
                continue
            if target.shape != value.shape:
                raise ValueError(
                    f"checkpoint param {name!r} has shape {tuple(value.shape)} but the model's "
                    f"has shape {tuple(target.shape)}"
                )
            target.copy_(value)


def _optim_state_by_name(
    payload: Mapping[str, Any], optim: Any, modules: Sequence[torch.nn.Module]
) -> dict:
    """The checkpoint's optimizer state keyed by the param-store names of this process."""
    store = pyro.get_param_store()
    tensors = {key: p for p, key in param_keys(list(modules)).items()}
    plain_pyro = type(optim) is pyro.optim.PyroOptim
    state = {}
    for key, value in payload["optim"].items():
        tensor = tensors.get(key)
        name = store.param_name(tensor) if tensor is not None else key
        if name is None:
            raise ValueError(f"optimizer state for {key!r} has no parameter in the param store")
        if plain_pyro and "param_groups" in value:
            # The arguments given now (e.g. a new lr) apply, as with pgm.optim.GroupedOptim.
            args = optim_args_of(optim, store_params(store)[name])
            value = dict(value)
            value["param_groups"] = [{**g, **args} for g in value["param_groups"]]
        state[name] = value
    return state


def _set_optim_state(optim: pyro.optim.PyroOptim, state: Mapping[str, Any]) -> None:
    """``optim.set_state(state)``, also for params this optimizer has already stepped.

    Pyro's base ``set_state`` only queues states for params it has not seen; if
    the same optimizer object is reused, states of seen params are loaded now
    and entries for params no longer in the param store are dropped.
    """
    state = dict(state)
    if type(optim).set_state is pyro.optim.PyroOptim.set_state and optim.optim_objs:
        store = pyro.get_param_store()
        for param in list(optim.optim_objs):
            name = store.param_name(param)
            if name is None:
                del optim.optim_objs[param]
                optim.grad_clip.pop(param, None)
            elif name in state:
                _load_optimizer_state(optim.optim_objs[param], state.pop(name))
    optim.set_state(state)


def _load_optimizer_state(optimizer: Any, state: Mapping[str, Any]) -> None:
    if hasattr(optimizer, "optimizer"):  # an LR scheduler wrapping its optimizer
        optimizer.load_state_dict(state["scheduler"])
        optimizer.optimizer.load_state_dict(state["optimizer"])
    else:
        optimizer.load_state_dict(state)


def restore_training_state(
    payload: Mapping[str, Any],
    model: Callable,
    guide: Callable,
    loss: Any,
    optim: pyro.optim.PyroOptim,
    callbacks: Sequence[Any],
    batch: tuple,
    settings: Mapping[str, Any],
    modules: Sequence[torch.nn.Module] = (),
) -> None:
    """Put a :func:`training_payload` back: modules and params in place, optimizer, RNGs.

    Order: check the configuration (``settings``, the
    :func:`~pyro_genmodels.resume_rules.run_settings` of this run, against the
    checkpoint's: :func:`~pyro_genmodels.resume_rules.check_resume`); create the
    params by running ``guide`` and ``model``
    once on ``batch`` (a tuple of tensors ``(B, ...)``); do the loss's
    first-call work (:func:`prime_loss`); load every module's ``state_dict``
    and the other params in place; the optimizer, loss and callback states;
    and the RNG states last, so nothing above shifts the random numbers of
    the continuation.

    >>> import pyro
    >>> model = lambda x: pyro.param("w", torch.zeros(2))
    >>> pyro.clear_param_store(); _ = model(None)
    >>> with torch.no_grad(): _ = pyro.param("w").unconstrained().fill_(5.0)
    >>> payload = training_payload(epoch=1, step=1, history=[], seed=0, optim=pyro.optim.Adam({}))
    >>> pyro.clear_param_store()
    >>> optim, guide = pyro.optim.Adam({}), lambda x: None
    >>> now = saved_settings(payload)
    >>> restore_training_state(payload, model, guide, None, optim, [], (None,), now)
    >>> pyro.param("w")
    tensor([5., 5.], requires_grad=True)
    >>> pyro.clear_param_store()
    """
    saved = saved_settings(payload)
    if payload.get("settings") is None:  # an older checkpoint: check what it recorded
        settings = {k: v for k, v in settings.items() if k in saved}
    check_resume(saved, settings)
    keys = {key: p for p, key in param_keys(list(modules)).items()}
    _create_params(model, guide, loss, batch, payload, keys)
    prime_loss(loss, model, guide, batch)
    _load_modules(payload, modules)
    _load_params(payload)
    _set_optim_state(optim, _optim_state_by_name(payload, optim, modules))
    if payload.get("loss_state") is not None and _stateful(loss):
        loss.load_state_dict(payload["loss_state"])
    # the states of the stateful callbacks, in order (their kinds were checked to match)
    states = [state for state in payload.get("callback_states") or [] if state is not None]
    for cb, state in zip([cb for cb in callbacks if _stateful(cb)], states):
        cb.load_state_dict(state)
    set_rng_state(payload["rng"])
