"""What a resumed run may change: one table of rules over a record of the run's settings.

``fit(..., resume=True)`` promises that 2 + 3 epochs equal 5 uninterrupted epochs. A
checkpoint therefore records the settings that decide the trajectory
(:func:`run_settings`: seed, data and batching, optimizer, the loss and its options,
the modules' declared settings, validation and early stopping, precision, compilation,
the stateful callbacks), and a resumed run compares its own record with it key by key.
Each key is judged by the most specific rule of :data:`RESUME_RULES` whose ``key`` is
a prefix of it: a change is *refused* (``ValueError`` naming the setting, the
checkpoint's value and the new one), *warned* (it applies, with a warning: the learning
rates, ``keep_best``), or *free* (settings that do not change what is computed are not
recorded at all: ``epochs``, ``checkpoint_every``, ``progress``). The README's table of
resume rules is this table (``tests/test_resume_settings.py`` checks it row by row).

Objects are described by :func:`describe`: the values of their constructor's arguments
that they keep as attributes of the same name (a loss's ``k``, ``persistent``,
``noise_ratio``, ``n_critic``, a sampler's step size), recursively, updated with what
their ``settings()`` method returns, if they have one (options kept under other names);
an optimizer by its kind and learning rate; a tensor by its shape, dtype and a digest of
its values. Modules are described by the ``settings()`` of the module and its submodules
alone (a VAE declares its likelihood and encoder; its ``beta``, which ``KLAnnealing``
changes during training, is no setting).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyro.optim
import torch

from pyro_genmodels.optim import optim_kind
from pyro_genmodels.training.files import payload_checksum

__all__ = ["RESUME_RULES", "ResumeRule", "check_resume", "describe", "run_settings"]


@dataclass(frozen=True)
class ResumeRule:
    """How a resumed run treats a change of the settings under ``key``.

    Attributes:
        key: a dotted prefix of :func:`run_settings`' keys (``""`` matches every key).
        what: the setting in words (the README's first column).
        on_change: ``"refused"`` (a ``ValueError``) or ``"warned"`` (applies, with a warning).
        why: the reason, or what happens on a warned change.
    """

    key: str
    what: str
    on_change: str
    why: str


RESUME_RULES: tuple[ResumeRule, ...] = (
    ResumeRule("seed", "`seed`", "refused", "it seeds the batch order and every draw"),
    ResumeRule(
        "data.num_data",
        "the number of datapoints N",
        "refused",
        "the data define the trajectory",
    ),
    ResumeRule(
        "data.shapes", "the data's shapes (N, ...)", "refused", "the data define the trajectory"
    ),
    ResumeRule("data.dtypes", "the data's dtypes", "refused", "the data define the trajectory"),
    ResumeRule("data.sha256", "the data's values", "refused", "the data define the trajectory"),
    ResumeRule("data.batch_size", "`batch_size`", "refused", "the batches define the steps"),
    ResumeRule("data.shuffle", "`shuffle`", "refused", "the batches define the steps"),
    ResumeRule(
        "optim.kind",
        "the optimizer's kind (class, wrapper, scheduler)",
        "refused",
        "its state cannot be carried over",
    ),
    ResumeRule(
        "optim.lr",
        "the learning rate",
        "warned",
        "the new rate applies from the first resumed step (a restored scheduler keeps setting it)",
    ),
    ResumeRule(
        "loss",
        "the loss: its class and options (`k`, `persistent`, `buffer_size`, `energy_reg`, "
        "the sampler's step size, `noise_ratio`, `n_critic`, the critic optimizer's kind, "
        "an ELBO's `num_particles`, ...)",
        "refused",
        "they change every step",
    ),
    ResumeRule(
        "loss.critic_optim.lr",
        "the critic's learning rate",
        "warned",
        "the new rate applies to the critic from the first resumed step",
    ),
    ResumeRule(
        "modules",
        "the modules' declared settings (a VAE's `likelihood` and encoder)",
        "refused",
        "the model computes another density",
    ),
    ResumeRule(
        "validation",
        "the validation data (changed, added or dropped), `validation_every`, "
        "`early_stopping`, `monitor`",
        "refused",
        "they decide the scores, the best epoch and when to stop",
    ),
    ResumeRule(
        "keep_best",
        "`keep_best` (and the column whose best it keeps)",
        "warned",
        "it decides only what is restored at the end",
    ),
    ResumeRule("precision", "`precision`", "refused", "another arithmetic"),
    ResumeRule("jit", "`jit`", "refused", "the compiled loss rounds differently"),
    ResumeRule(
        "callbacks",
        "the callbacks that have a state (their kinds, order and options)",
        "refused",
        "their states are restored in order",
    ),
)
"""The rules, most general first; the most specific rule whose key prefixes a setting wins."""

_DERIVED = frozenset({"max_plate_nesting"})  # guessed on first use: not a user's setting
_MAX_DEPTH = 4


def _rule_for(key: str) -> ResumeRule:
    best = None
    for rule in RESUME_RULES:
        if key == rule.key or key.startswith(rule.key + "."):
            if best is None or len(rule.key) > len(best.key):
                best = rule
    if best is None:
        raise KeyError(f"no resume rule covers the setting {key!r}")
    return best


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe(obj: Any, depth: int = 0) -> Any:
    """A plain, comparable description of ``obj``'s settings (see the module docstring).

    >>> import pyro
    >>> describe(pyro.infer.Trace_ELBO(num_particles=2))["num_particles"]
    2
    >>> describe(torch.zeros(2))[:18]
    'tensor[2] float32 '
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, torch.Tensor):
        digest = payload_checksum(obj)[:16]
        return f"tensor{list(obj.shape)} {str(obj.dtype).removeprefix('torch.')} {digest}"
    if isinstance(obj, pyro.optim.PyroOptim):
        return optim_kind(obj)
    if isinstance(obj, Mapping):
        return {str(k): describe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [describe(v, depth + 1) for v in obj]
    if isinstance(obj, torch.nn.Module) or callable(obj) and not hasattr(obj, "__dict__"):
        return _qualname(obj)
    if isinstance(obj, type) or inspect.isroutine(obj) or depth >= _MAX_DEPTH:
        return _qualname(obj)
    found = _constructor_values(obj)
    settings = getattr(obj, "settings", None)
    if callable(settings):  # what the object declares itself (options kept under other names)
        found.update(settings())
    return {"type": _qualname(obj), **{k: describe(v, depth + 1) for k, v in found.items()}}


def _constructor_values(obj: Any) -> dict[str, Any]:
    """The constructor's arguments that ``obj`` keeps under the same attribute name."""
    try:
        parameters = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return {}
    values = {}
    for name, p in parameters.items():
        if name == "self" or name in _DERIVED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in vars(obj):
            values[name] = vars(obj)[name]
    return values


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    else:
        out[prefix] = value


def _module_settings(module: torch.nn.Module) -> dict[str, Any]:
    found: dict[str, Any] = {"type": _qualname(module)}
    for name, sub in module.named_modules():
        settings = getattr(sub, "settings", None)
        if callable(settings):
            found.update({f"{name}.{k}" if name else k: v for k, v in settings().items()})
    return found


def run_settings(
    *,
    seed: int,
    data: Mapping[str, Any],
    optim: pyro.optim.PyroOptim,
    loss: Any,
    modules: Sequence[torch.nn.Module],
    validation: Mapping[str, Any] | None,
    keep_best: str | bool,
    precision: str,
    jit: bool,
    callbacks: Sequence[Any],
) -> dict[str, Any]:
    """The flat record ``{dotted key: plain value}`` of what a resumed run must keep.

    Args:
        seed: ``fit``'s seed.
        data: the data fingerprint (number, shapes, dtypes, digest, batch size, shuffling).
        optim: the Pyro optimizer.
        loss: the loss as the user gave it (not the runtime's wrappers).
        modules: the modules model, guide and loss use.
        validation: the validation callback's settings, or ``None`` without validation.
        keep_best: the monitored column whose best epoch is restored, or ``False``.
        precision, jit: ``fit``'s arguments.
        callbacks: the user's callbacks that have a state.
    """
    record = {
        "seed": seed,
        "data": dict(data),
        "optim": optim_kind(optim),
        "loss": describe(loss),
        "modules": [describe(_module_settings(m)) for m in modules],
        "validation": None if validation is None else describe(dict(validation)),
        "keep_best": keep_best,
        "precision": precision,
        "jit": jit,
        "callbacks": [describe(cb) for cb in callbacks],
    }
    flat: dict[str, Any] = {}
    for key, value in record.items():
        _flatten(key, value, flat)
    return flat


def check_resume(saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse (``ValueError``) or warn about each change between two :func:`run_settings`.

    >>> check_resume({"seed": 0}, {"seed": 0})
    >>> try:
    ...     check_resume({"seed": 0}, {"seed": 1})
    ... except ValueError as e:
    ...     print(str(e)[-50:])
    the checkpoint was written with seed=0, now seed=1
    """
    refused: dict[ResumeRule, list[str]] = {}
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key, "absent"), now.get(key, "absent")
        if old == new:
            continue
        rule = _rule_for(key)
        if rule.on_change == "warned":
            if any(v is None or v == "absent" for v in (old, new)):
                continue  # per-parameter rates, or a whole group refused under another rule
            warnings.warn(
                f"resuming with {key}={new!r} but the checkpoint was written with "
                f"{key}={old!r}: {rule.why}",
                stacklevel=4,
            )
        else:
            refused.setdefault(rule, []).append(f"{key}={_shown(old)}, now {key}={_shown(new)}")
    if refused:
        parts = [
            f"{rule.what} ({rule.why}): the checkpoint was written with " + "; ".join(changes)
            for rule, changes in refused.items()
        ]
        raise ValueError("resume refuses a change of " + ". And of ".join(parts))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rules_table() -> str:
    """:data:`RESUME_RULES` as the README's markdown table (one row per rule).

    >>> rules_table().splitlines()[0]
    '| On resume, a change of ... | is | because |'
    """
    words = {"refused": "refused (`ValueError`)", "warned": "applied, with a warning"}
    rows = ["| On resume, a change of ... | is | because |", "|---|---|---|"]
    rows += [f"| {r.what} | {words[r.on_change]} | {r.why} |" for r in RESUME_RULES]
    return "\n".join(rows)
