"""Snapshots of a training run: what a checkpoint holds, and its exact restoration.

:func:`capture` gathers everything a run depends on, in named parts: the parameters
*and buffers* of every module the model, guide and loss use (their ``state_dict``,
keyed by position, not by param-store name), the param-store parameters that belong to
no module, the optimizer state (keyed stably), the loss's and the callbacks' states
(their ``state_dict()``), every rank's random and loss states, the history, and what
the run was configured with (:mod:`pyro_genmodels.training.resume_rules`). :func:`restore`
puts it back in named steps (settings checked; params created; the loss primed;
modules; params; optimizer; loss; callbacks; this rank's states; the random
generators last), so that modules and the param store stay the same tensor objects and
a resumed run continues exactly, or refuses with a ``ValueError`` what would make it
differ from an uninterrupted run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine

from pyro_genmodels._compat import optim_args_of, store_params
from pyro_genmodels.optim import optim_kind
from pyro_genmodels.params import own_params, param_keys
from pyro_genmodels.training.files import FORMAT_VERSION, to_cpu
from pyro_genmodels.training.priming import prime_loss
from pyro_genmodels.training.protocols import is_stateful
from pyro_genmodels.training.resume_rules import check_resume
from pyro_genmodels.training.rng import get_rng_state, set_rng_state
from pyro_genmodels.training.state import RunState

__all__ = ["TRAINING_KEYS", "capture", "non_finite_entries", "restore", "saved_settings"]

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


def _params(modules: Sequence[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The param-store params of no module, by name."""
    keys = param_keys(list(modules))
    return {name: to_cpu(p) for name, p in store_params().items() if p not in keys}


def _optimizer(optim: pyro.optim.PyroOptim, modules: Sequence[torch.nn.Module]) -> dict:
    """The optimizer state per stable parameter key (``module{i}.{name}``, else the name)."""
    keys, stored = param_keys(list(modules)), store_params()
    found = {}
    for name, state in optim.get_state().items():
        tensor = stored.get(name) if name is not None else None
        if tensor is not None:
            found[keys.get(tensor, name)] = to_cpu(state)
    return found


def _local_states(run: RunState) -> dict[str, Any]:
    """This rank's random states and loss state."""
    loss_state = to_cpu(run.loss.state_dict()) if is_stateful(run.loss) else None
    return {"rng": get_rng_state(), "loss_state": loss_state}


def capture(run: Any, epoch: int | None = None, epoch_step: int | None = None) -> dict[str, Any]:
    """The training state of ``run`` (a :class:`RunState` or its view) as a checkpoint
    payload (everything detached, on the CPU) after ``epoch`` completed epochs (default
    ``run.epoch``) and ``epoch_step`` steps of the next; a collective call under data
    parallelism (every rank's states are gathered to rank 0).

    Keys: ``format_version``, ``epoch`` (epochs completed), ``step`` (global steps),
    ``epoch_step`` (steps completed inside an unfinished epoch, or ``None``),
    ``modules`` (each module's ``state_dict``: parameters and buffers),
    ``module_types``, ``params`` (param-store name → unconstrained tensor, for every
    param of no module), ``params_used`` (the sorted names the training steps traced:
    the params a resumed run must recreate), ``optim`` (state per stable parameter
    key), ``optim_kind``, ``rng`` (:func:`~pyro_genmodels.training.rng.get_rng_state`),
    ``history``, ``seed``, ``run`` (the data fingerprint), ``loss_state`` and
    ``callback_states`` (their ``state_dict()`` where they have one), ``rank_states``
    (every rank's ``rng`` and ``loss_state``, in rank order), ``settings`` (checked on
    resume) and ``run_id`` (the run's identity, shared by its ``best.pt``).

    >>> import pyro
    >>> pyro.clear_param_store(); _ = pyro.param("w", torch.ones(2))
    >>> payload = capture(RunState(print, print, None, pyro.optim.Adam({})))
    >>> payload["params"], payload["epoch"]
    ({'w': tensor([1., 1.])}, 0)
    >>> pyro.clear_param_store()
    """
    local = _local_states(run)
    return {
        "format_version": FORMAT_VERSION,
        "epoch": int(run.epoch if epoch is None else epoch),
        "step": int(run.step),
        "epoch_step": epoch_step,
        "modules": [to_cpu(m.state_dict()) for m in run.modules],
        "module_types": [type(m).__qualname__ for m in run.modules],
        "params": _params(run.modules),
        "params_used": sorted(run.param_names) if run.param_names else None,
        "optim": _optimizer(run.optim, run.modules),
        "optim_kind": optim_kind(run.optim),
        "rng": local["rng"],
        "history": [dict(row) for row in run.history],
        "seed": int(run.seed),
        "run": dict(run.data),
        "loss_state": local["loss_state"],
        "callback_states": [
            to_cpu(cb.state_dict()) if is_stateful(cb) else None for cb in run.callbacks
        ],
        "rank_states": run.strategy.gather(local),
        "settings": dict(run.settings) if run.settings else None,
        "run_id": run.run_id,
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
    """The :func:`~pyro_genmodels.training.resume_rules.run_settings` a checkpoint was written with;
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


def _own_states(run: RunState, payload: Mapping[str, Any]) -> dict[str, Any]:
    """This rank's random and loss states: its own when the checkpoint was written by as
    many processes as now, else rank 0's (with a warning for a stateful loss)."""
    own = run.strategy.own(payload.get("rank_states"))
    if own is not None:
        return dict(own)
    states = payload.get("rank_states")
    if is_stateful(run.loss) and states is not None and len(states) != run.strategy.world:
        warnings.warn(
            f"the checkpoint was written by {len(states)} process(es) and this run has "
            f"{run.strategy.world}: every rank resumes from rank 0's loss state and random "
            "states",
            stacklevel=4,
        )
    return {"rng": payload["rng"], "loss_state": payload.get("loss_state")}


def restore(run: RunState, payload: Mapping[str, Any], batch: tuple) -> None:
    """Put a :func:`capture` back into ``run`` and the param store, in named steps.

    Order: check the settings (:func:`~pyro_genmodels.training.resume_rules.check_resume`
    of the checkpoint's against ``run.settings``); create the params by running
    ``guide`` and ``model`` once on ``batch`` (a tuple of tensors ``(B, ...)``); make the
    loss's first-call work (:func:`~pyro_genmodels.training.priming.prime_loss`); load
    every module's ``state_dict`` and the other params in place; the optimizer; the loss
    state; the stateful callbacks' states (in order); the epoch, step and history; the
    random generators last, so nothing above shifts the continuation's random numbers.

    >>> import pyro
    >>> model = lambda x: pyro.param("w", torch.zeros(2))
    >>> pyro.clear_param_store(); _ = model(None)
    >>> with torch.no_grad(): _ = pyro.param("w").unconstrained().fill_(5.0)
    >>> run = RunState(model, lambda x: None, None, pyro.optim.Adam({}))
    >>> payload = capture(run)
    >>> pyro.clear_param_store()
    >>> run.settings = saved_settings(payload)
    >>> restore(run, payload, (None,))
    >>> pyro.param("w")
    tensor([5., 5.], requires_grad=True)
    >>> pyro.clear_param_store()
    """
    saved = saved_settings(payload)
    now = (
        run.settings
        if payload.get("settings") is not None
        else {k: v for k, v in run.settings.items() if k in saved}
    )  # an older checkpoint: check what it recorded
    check_resume(saved, now)
    keys = {key: p for p, key in param_keys(run.modules).items()}
    _create_params(run.model, run.guide, run.loss, batch, payload, keys)
    prime_loss(run.loss, run.model, run.guide, batch)
    _load_modules(payload, run.modules)
    _load_params(payload)
    _set_optim_state(run.optim, _optim_state_by_name(payload, run.optim, run.modules))
    own = _own_states(run, payload)
    if own.get("loss_state") is not None and is_stateful(run.loss):
        run.loss.load_state_dict(own["loss_state"])
    states = [state for state in payload.get("callback_states") or [] if state is not None]
    for cb, state in zip([cb for cb in run.callbacks if is_stateful(cb)], states):
        cb.load_state_dict(state)  # in order: their kinds were checked to match
    run.epoch, run.step, run.history = payload["epoch"], payload["step"], payload["history"]
    run.run_id = str(payload.get("run_id") or run.run_id)
    set_rng_state(own["rng"])
