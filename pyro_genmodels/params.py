"""Which parameters and buffers a training run owns, independently of Pyro's global param store.

Pyro keys its global param store by name. Two models built in one process
(two ``VAE`` objects, two flows) register their networks under the same names,
and ``pyro.param(name, own_tensor)`` then returns the *first* model's tensor: a
training loop that optimizes the traced parameters silently moves the first
model while the second one computes its loss. :class:`own_params` fixes this
at the root: inside it, a ``pyro.param`` call that passes a module's own
``nn.Parameter`` makes that parameter the store's entry for its name, so the
traced (and optimized) tensor is always the one the model computes with.
:func:`pyro_genmodels.fit` runs every step inside it; wrap your own SVI loop
with it (``with own_params(): svi.step(x)``) to get the same rule.

:func:`find_modules` lists the ``nn.Module`` objects a model, guide and loss
use (so checkpoints hold their parameters *and* buffers), and
:func:`param_keys` names their parameters stably (``"module0.encoder.0.weight"``),
independently of the names under which the param store happens to hold them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import pyro
import torch
from pyro.distributions import constraints
from pyro.poutine.messenger import Messenger

from pyro_genmodels._compat import rebind_param, store_params

__all__ = ["find_modules", "own_params", "param_keys"]


class own_params(Messenger):
    """Handler: ``pyro.param(name, p)`` with a module's own ``nn.Parameter`` ``p`` stores ``p``.

    Outside this handler Pyro returns whatever tensor the param store already
    holds under ``name`` (possibly another model's), and a *new* name stores
    ``p.contiguous()``: a copy when ``p`` is not contiguous (the LU factor of
    Pyro's ``GeneralizedChannelPermute`` is column-major), which the optimizer
    then updates while the module computes with ``p``. Inside it, when the
    initial value passed is an ``nn.Parameter`` (as ``pyro.module`` and
    ``PyroModule`` pass their own parameters), the store entry under that name
    is ``p`` itself: a different tensor already stored is replaced, and a new
    name (with the default constraint ``real``) stores ``p``, whatever its
    memory layout, so the first step trains the same tensors whether or not
    the params existed before it (a priming forward pass, another model's
    registration). Plain tensors
    passed as initial values (``pyro.param("loc", torch.zeros(2))``) keep Pyro's
    rule: the stored value wins. (So does not ``pyro.module(name, net,
    update_module_params=True)`` after loading a param store from disk: inside
    this handler the module's own tensors win; load weights with
    ``net.load_state_dict`` instead.)

    >>> import pyro, torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> pyro.clear_param_store(); _ = pyro.module("net", a)
    >>> with own_params():
    ...     _ = pyro.module("net", b)
    >>> pyro.param("net$$$weight") is b.weight
    True
    >>> pyro.clear_param_store()
    """

    def _pyro_param(self, msg: dict) -> None:
        args = msg["args"]
        if len(args) < 2 or not isinstance(args[1], torch.nn.Parameter):
            return
        name, own = args[0], args[1]
        store = pyro.get_param_store()
        current = store_params(store).get(name)
        if current is own:
            return
        if current is None:
            if msg["kwargs"].get("constraint", constraints.real) is not constraints.real:
                return  # Pyro stores the unconstrained value: not ``own``
            own.requires_grad_(True)  # as Pyro does with the tensor it stores
        rebind_param(store, name, own)


def _closure_objects(fn: Any, seen: set[int], depth: int = 0) -> Iterable[Any]:
    """Objects a callable refers to: its bound ``self``, closure cells, partial arguments."""
    if id(fn) in seen or depth > 4:
        return
    seen.add(id(fn))
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        yield owner
    if isinstance(fn, functools.partial):
        yield from (fn.func, *fn.args, *fn.keywords.values())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        yield value
        if callable(value) and not isinstance(value, torch.nn.Module | type):
            yield from _closure_objects(value, seen, depth + 1)
    code, names = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    for name in getattr(code, "co_names", ()):
        value = names.get(name)
        if isinstance(value, torch.nn.Module):
            yield value
    if owner is not None and not isinstance(owner, torch.nn.Module):
        yield from _closure_objects(getattr(fn, "__func__", None), seen, depth + 1)


def find_modules(*objects: Any) -> list[torch.nn.Module]:
    """The ``nn.Module`` objects used by ``objects`` (model, guide, loss), outermost only.

    A module counts when an object *is* one, is a bound method of one
    (``vae.model``), refers to one through its closure or a global name (a
    ``model`` function using ``net``), or holds one as an attribute (a loss
    holding its discriminator). Submodules of a module already listed are not listed again;
    the order is deterministic (first found first).

    >>> net = torch.nn.Linear(2, 1)
    >>> def model(x):
    ...     return net(x)
    >>> find_modules(model, lambda x: None) == [net]
    True
    """
    found: list[torch.nn.Module] = []
    seen: set[int] = set()
    for obj in objects:
        candidates = [obj]
        if not isinstance(obj, torch.nn.Module) and callable(obj):
            candidates += list(_closure_objects(obj, seen))
        if not isinstance(obj, torch.nn.Module) and hasattr(obj, "__dict__"):
            if not callable(obj) or hasattr(obj, "loss_and_grads"):
                candidates += list(vars(obj).values())
        for value in candidates:
            if isinstance(value, torch.nn.Module) and all(value is not m for m in found):
                found.append(value)
    inner = {id(sub) for m in found for sub in m.modules() if sub is not m}
    return [m for m in found if id(m) not in inner]


def param_keys(modules: list[torch.nn.Module]) -> dict[torch.Tensor, str]:
    """Stable names ``"module{i}.{name}"`` of the parameters of ``modules`` (first owner wins).

    >>> keys = param_keys([torch.nn.Linear(2, 1)])
    >>> sorted(keys.values())
    ['module0.bias', 'module0.weight']
    """
    keys: dict[torch.Tensor, str] = {}
    for i, module in enumerate(modules):
        for name, p in module.named_parameters(remove_duplicate=False):
            keys.setdefault(p, f"module{i}.{name}")
    return keys
