"""Plate scaling for data-parallel training: each rank's share of the global loss.

One process trains on the global batch ``B`` the loss
``L = Σ_g ℓ_g + (N/B) Σ_{i∈B} ℓ_i``: the global sites ``g`` (priors, global
latents, anything outside the data plate) once, the datapoints of a data plate
scaled by its ``full size / subsample size`` (``N/B`` for
``pyro.plate("data", N, subsample=x)``, 1 for ``pyro.plate("data", len(x))``).
With ``W`` ranks, rank ``r`` holds the shard ``b_r`` of ``B``, and summing the
ranks' plain losses would count the global sites ``W`` times and scale the
datapoints by ``N/b_r``. :class:`ShardScale` multiplies, around model and
guide, the ``scale`` of every sample site so that the ranks' losses sum to
``L``:

``L_r = (1/W) Σ_g ℓ_g + [(N/B) / (N/b_r)] · (N/b_r) Σ_{i∈r} ℓ_i``

i.e. a site outside every data plate by ``1/W``, a site inside a data plate by
``(full_global / sub_global) / (full_local / sub_local)`` — ``b_r/B`` for a
subsampled plate whose full size ``N`` is fixed, 1 for a plate over the batch.
Every loss that reads ``site["scale"]`` sees it: ``Trace_ELBO``,
``TraceMeanField_ELBO``, ``TraceGraph_ELBO``, ``RenyiELBO`` with every site in the
data plate, the energy losses (``site_scale``), and :class:`~pyro_genmodels.infer.IWAELoss`
(which reads the factor from ``site["infer"][SCALE_KEY]``). Losses that ignore site
scales (the adversarial losses, ``DBMLoss``) sum over their shard's rows, which the
summed gradients already make right for a plate over the batch (they never scale a
subsampled plate, in one process either). What no per-site factor can fix:
``RenyiELBO`` (and any bound taking a log-mean-exp over the whole batch) with a site
outside the data plate — its batch weight couples all rows, so train it in one process.

Which plates are data plates is found from the data, not from names:
:func:`find_data_plates` compares the plate frames (``cond_indep_stack``, by
name) of a run on the global batch with a run on this rank's shard; a plate whose
subsample size changes is a data plate (its full size changing too means a plate
over the batch). A site outside every data plate whose value's shape changes
(observed data without a plate) is summed over the ranks unscaled like a data
plate site; every other site counts as global. The factors are exact for
deterministic global sites (MAP, ``AutoDelta``); a random global latent is drawn
by every rank from its own stream, so the ranks' ``1/W`` shares average ``W``
draws (unbiased, but not the single process's draw).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample

__all__ = ["SCALE_KEY", "PlateRecorder", "ShardScale", "find_data_plates"]

SCALE_KEY = "data_parallel_scale"
"""``site["infer"][SCALE_KEY]``: the factor :class:`ShardScale` put into the site's scale."""


class PlateRecorder(Messenger):
    """Records, per sample site, its plate frames ``{name: (size, full_size)}`` and value shape.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
    >>> with PlateRecorder() as rec:
    ...     model(torch.zeros(3))
    >>> rec.sites
    {'x': ({'data': (3, 3)}, (3,))}
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: dict[str, tuple[dict[str, tuple[int, Any]], tuple[int, ...]]] = {}

    def _postprocess_message(self, msg: Any) -> None:
        if msg["type"] != "sample" or site_is_subsample(msg) or msg["name"] in self.sites:
            return
        frames = {f.name: (int(f.size), f.full_size) for f in msg["cond_indep_stack"]}
        value = msg["value"]
        shape = tuple(value.shape) if hasattr(value, "shape") else ()
        self.sites[msg["name"]] = (frames, shape)


def find_data_plates(
    global_run: PlateRecorder, local_run: PlateRecorder
) -> tuple[dict[str, bool], set[str]]:
    """``(data_plates, data_sites)`` from a run on the global batch and one on a shard.

    ``data_plates`` maps each plate whose subsample size differs between the runs to
    whether its full size differs too (a plate over the batch, ``pyro.plate("data",
    len(x))``) or not (``pyro.plate("data", N, subsample=x)``). ``data_sites`` are the
    sites outside every data plate whose value shape differs (data without a plate).

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     pyro.sample("g", dist.Normal(0.0, 1.0), obs=torch.zeros(()))
    ...     with pyro.plate("data", 10, subsample=x):
    ...         pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
    >>> runs = []
    >>> for x in (torch.zeros(4), torch.zeros(2)):
    ...     with PlateRecorder() as rec:
    ...         model(x)
    ...     runs.append(rec)
    >>> find_data_plates(*runs)
    ({'data': False}, set())
    """
    plates: dict[str, bool] = {}
    for name, (frames, _) in global_run.sites.items():
        local = local_run.sites.get(name)
        if local is None:
            continue
        for plate, (size, full) in frames.items():
            other = local[0].get(plate)
            if other is not None and other[0] != size:
                plates[plate] = plates.get(plate, False) or other[1] != full
    sites = set()
    for name, (frames, shape) in global_run.sites.items():
        local = local_run.sites.get(name)
        if local is not None and not (frames.keys() & plates) and local[1] != shape:
            sites.add(name)
    return plates, sites


class ShardScale(Messenger):
    """Multiplies each sample site's ``scale`` by its share on this rank (module docstring).

    A site in data plates gets ``Π_plates (1 if the plate is over the batch else b/B)``;
    a site in ``data_sites`` gets 1; any other site ``1/world``. ``set_step(B, b)`` gives
    the global batch size ``B`` and this rank's shard size ``b`` of the coming step
    (the last batch of an epoch may be smaller).

    Args:
        data_plates: ``{plate name: whether its full size follows the batch}``
            (:func:`find_data_plates`).
        data_sites: sites outside the data plates that hold the shard's rows.
        world: the number of ranks ``W``.

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro import poutine
    >>> def model(x):
    ...     pyro.sample("g", dist.Normal(0.0, 1.0), obs=torch.zeros(()))
    ...     with pyro.plate("data", 10, subsample=x):
    ...         pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
    >>> scale = ShardScale({"data": False}, set(), world=2)
    >>> scale.set_step(4, 2)
    >>> tr = poutine.trace(scale(model)).get_trace(torch.zeros(2))
    >>> tr.nodes["g"]["scale"], tr.nodes["x"]["scale"]  # 1/2 and (10/2)·(2/4) = 10/4
    (0.5, 2.5)
    """

    def __init__(self, data_plates: Mapping[str, bool], data_sites: set[str], world: int) -> None:
        super().__init__()
        self.data_plates = dict(data_plates)
        self.data_sites = set(data_sites)
        self.world = int(world)
        self.fraction = 1.0
        self._wrapped: dict[int, _Scaled] = {}

    def set_step(self, global_size: int, local_size: int) -> None:
        """The coming step's global batch size ``B`` and this rank's shard size ``b``."""
        self.fraction = local_size / global_size

    @property
    def jit_key(self) -> tuple[int, float]:
        """What the factors depend on besides the shapes (compiled losses are keyed by it)."""
        return self.world, self.fraction

    def factor(self, plates: list[str], name: str) -> float:
        """The factor of site ``name`` inside the plates named ``plates``."""
        inside = [p for p in plates if p in self.data_plates]
        if not inside:
            return 1.0 if name in self.data_sites else 1.0 / self.world
        return math.prod(1.0 if self.data_plates[p] else self.fraction for p in inside)

    def _process_message(self, msg: Any) -> None:
        if msg["type"] != "sample" or site_is_subsample(msg):
            return
        f = self.factor([frame.name for frame in msg["cond_indep_stack"]], msg["name"])
        if f != 1.0:
            msg["scale"] = msg["scale"] * f
            msg["infer"] = {**(msg["infer"] or {}), SCALE_KEY: f}

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` run under this handler, carrying :attr:`jit_key` for compiled losses (the
        same wrapper for the same ``fn``, so that a compiled loss keyed by the program's
        identity traces it once)."""
        wrapped = self._wrapped.get(id(fn))
        if wrapped is None or wrapped.fn is not fn:
            wrapped = self._wrapped[id(fn)] = _Scaled(self, fn)
        return wrapped


class _Scaled:
    """A program run under a :class:`ShardScale` (``jit_key`` keys compiled losses)."""

    def __init__(self, scale: ShardScale, fn: Callable) -> None:
        self.scale, self.fn = scale, fn

    @property
    def jit_key(self) -> tuple[int, float]:
        return self.scale.jit_key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.scale in _PYRO_STACK:  # a program run inside the other (scaled once)
            return self.fn(*args, **kwargs)
        with self.scale:
            return self.fn(*args, **kwargs)
