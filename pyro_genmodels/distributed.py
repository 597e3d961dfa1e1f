"""Data-parallel training of Pyro losses with ``torch.distributed`` (launched by ``torchrun``).

One distributed step equals one single-process step on the same global
batch: every rank evaluates the loss on its shard of the batch
(:mod:`pyro_genmodels.batches`), then the gradients of all Pyro params —
taken in the order of their names, so every rank reduces the same tensors in
the same order — and the loss values are **summed** over the ranks with
``all_reduce``. Model and guide run under a
:class:`~pyro_genmodels.shard_scale.ShardScale` that makes the ranks' losses sum
to the single-process loss ``L = Σ_g ℓ_g + (N/B) Σ_{i∈B} ℓ_i``: the sites outside
the data plate (priors, global latents) count ``1/W`` on each of the ``W`` ranks,
and a subsampled data plate (``pyro.plate("data", N, subsample=idx)``) scales its
sites by ``N/B`` of the global batch, not ``N/b_r`` of the shard. The data plates
are found by :func:`prime_and_broadcast`, which runs the loss on the global first
batch and on this rank's shard of it and compares their plate sizes; the factors
are recomputed every step from the step's global batch and shard sizes (the last
batch of an epoch may split unevenly). For a sum over a plate over the batch
(``pyro.plate("data", len(batch))``) the factor is 1 and the sum of the shard
gradients *is* the global gradient, whatever the shard sizes.

Losses that update parameters inside ``loss_and_grads`` — the adversarial losses
with ``critic_optim`` (GANLoss, LSGANLoss, WGANLoss, WGANGPLoss, BiGANLoss) — get
a hook (``critic_grad_sync``, installed by :class:`DataParallelLoss` for the call):
after each inner critic backward the critic gradients (and the critic loss) are
summed over the ranks *before* the finite check and the critic optimizer's step,
so every rank makes the same decision and the same update, and the critic equals
the single-process critic. Its parameters, registered under ``poutine.block``,
are in the param store and broadcast with the others at start.

Gradients are reduced after ``loss_and_grads`` returns, not inside autograd
hooks as ``DistributedDataParallel`` does, so losses that differentiate
through ``∇ₓ`` (score matching: double backward, where DDP's hooks give wrong
gradients) are reduced correctly. A parameter that no rank gave a gradient
keeps ``grad=None`` (so optimizers skip it as in one process).

Pyro creates params lazily; :func:`prime_and_broadcast` runs the loss once
on the *global* first batch (:func:`prime`: so data-dependent initializations
such as ActNorm's agree with the single-process run), with the random
generators, a stateful loss's state and the modules' other buffers (BatchNorm
statistics) put back afterwards, then broadcasts every param from rank 0.
Training after this priming equals training without it (every zoo entry is
checked), so rank 0's steps are the single process's: the param store holds
each module's own parameters from their creation on (:class:`~pyro_genmodels.params.own_params`,
also for a non-contiguous parameter, of which Pyro would store a copy), and a
loss's plate-nesting trial pass never draws from the training streams.

Every rank draws from its own random streams (:func:`rank_seed`): the noise
of one rank's shard (Monte Carlo ELBO draws, the Langevin chains of
contrastive divergence) is independent of the other ranks'. Stateful losses
keep their state per rank (persistent chains advance on the rank's own shard);
a checkpoint holds every rank's random states and loss state
(:func:`gather_rank_states`, written by rank 0 under ``"rank_states"``) and
a resumed run puts each rank's own back (:func:`restore_rank_state`).

Reference: Li et al., "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training", VLDB 2020; Sergeev & Del Balso, "Horovod: fast and easy
distributed deep learning in TensorFlow", 2018 (``pyro.optim.horovod``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from pyro import poutine

from pyro_genmodels._compat import store_params
from pyro_genmodels.checkpoint import get_rng_state, set_rng_state, to_cpu
from pyro_genmodels.params import find_modules, own_params
from pyro_genmodels.resume import _stateful
from pyro_genmodels.shard_scale import PlateRecorder, ShardScale, find_data_plates

__all__ = [
    "DataParallelLoss",
    "all_reduce_grads",
    "barrier",
    "broadcast_object",
    "gather_rank_states",
    "gather_rows",
    "is_main_process",
    "local_rows",
    "map_rows",
    "on_main_process",
    "prime",
    "prime_and_broadcast",
    "rank_seed",
    "restore_rank_state",
    "setup",
]


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(distributed: Any, device: torch.device | None) -> tuple[int, int, torch.device | None]:
    """Join (or start) the process group; returns ``(rank, world_size, device)``.

    ``distributed=None`` means: data-parallel when a process group is
    initialized or ``torchrun`` set ``WORLD_SIZE > 1``. Without an initialized
    group, one is initialized from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL when CUDA is available
    (and ``device`` is not a CPU), else gloo. With NCCL and no ``device`` given,
    each process takes ``cuda:LOCAL_RANK``.

    >>> setup(False, None)
    (0, 1, None)
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True, False or None, got {distributed!r}")
    available = dist.is_available()
    initialized = available and dist.is_initialized()
    if distributed is None:
        distributed = initialized or _env_world_size() > 1
    if not distributed:
        return 0, 1, device
    if not available:
        raise RuntimeError("distributed=True but this torch build has no torch.distributed")
    if not initialized:
        missing = [
            k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
        ]
        if missing:
            raise ValueError(
                "distributed=True needs an initialized torch.distributed process group or "
                f"torchrun's environment variables; missing {missing}"
            )
        use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if device is None and dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return dist.get_rank(), dist.get_world_size(), device


def is_main_process() -> bool:
    """True unless this process is a rank other than 0 of an initialized process group.

    >>> is_main_process()
    True
    """
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rows(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (all of them without a process group,
    or when ``n`` is smaller than the number of ranks); see :func:`gather_rows`.

    >>> local_rows(10)
    slice(0, 10, None)
    """
    rank, world = _world()
    if world == 1 or n < world:
        return slice(0, n)
    sizes = [len(part) for part in torch.arange(n).tensor_split(world)]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The ``(n, *)`` rows that the ranks computed on their :func:`local_rows` shares,
    concatenated in rank order, on every rank (``local`` itself without a process group).

    Args:
        local: ``(m, *)``, this rank's rows.
        n: the total number of rows.

    >>> gather_rows(torch.arange(3.0), 3)
    tensor([0., 1., 2.])
    """
    rank, world = _world()
    if world == 1 or n < world:
        return local
    sizes = [len(part) for part in torch.arange(n).tensor_split(world)]
    padded = local.new_zeros((sizes[0], *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams: ``seed + 104729·rank`` (``seed`` itself on
    rank 0, so rank 0 draws as a single process would).

    >>> rank_seed(3, 0), rank_seed(3, 1)
    (3, 104732)
    """
    return int(seed) + 104729 * int(rank)


def gather_rank_states(loss: Any) -> list[dict[str, Any]] | None:
    """Every rank's ``{"rng": ..., "loss_state": ...}`` (its random states and the
    ``state_dict()`` of a stateful ``loss``, on the CPU), in rank order on rank 0
    (``None`` on the other ranks). A collective call: every rank must make it."""
    rank, world = _world()
    local = {
        "rng": get_rng_state(),
        "loss_state": to_cpu(loss.state_dict()) if _stateful(loss) else None,
    }
    if world == 1:
        return [local]
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered


def restore_rank_state(payload: dict[str, Any], loss: Any) -> None:
    """Put this rank's own random states and loss state from ``payload["rank_states"]`` back
    (a checkpoint written by as many ranks as there are now). A checkpoint without them, or
    written by another number of ranks, keeps rank 0's state everywhere, with a warning when
    the loss is stateful (its chains cannot be matched to ranks)."""
    rank, world = _world()
    states = payload.get("rank_states")
    if states is None or len(states) != world:
        if _stateful(loss) and world > 1:
            written = "one process" if states is None else f"{len(states)} processes"
            warnings.warn(
                f"the checkpoint was written by {written} and this run has {world}: every rank "
                "resumes from rank 0's loss state and random states",
                stacklevel=3,
            )
        return
    own = states[rank]
    if own["loss_state"] is not None and _stateful(loss):
        loss.load_state_dict(own["loss_state"])
    set_rng_state(own["rng"])


def map_rows(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """``fn`` row by row: ``out[i] = fn(x[i:i+1])[0]`` for ``fn`` mapping ``(m, *)`` rows to
    ``(m, *)`` results (e.g. an exact ``log p(x)``). Under ``torch.distributed`` each rank
    evaluates its :func:`local_rows` share and the results are gathered in row order on
    every rank (:func:`gather_rows`, a collective call); ``chunk`` bounds the rows per call.

    Args:
        x: ``(n, *)``, the rows.

    >>> map_rows(lambda t: t.sum(-1), torch.ones(5, 2), chunk=2)
    tensor([2., 2., 2., 2., 2.])
    """
    n = x.shape[0]
    local = x[local_rows(n)]
    parts = [fn(t) for t in (local.split(chunk) if chunk else (local,))]
    return gather_rows(torch.cat(parts), n)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object, e.g. a checkpoint payload) on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank of the process group gets here."""
    dist.barrier()


def _sorted_params() -> list[tuple[str, torch.Tensor]]:
    params = store_params()
    return [(name, params[name]) for name in sorted(params)]


def _reduce_grads(
    params: list[torch.Tensor], device: torch.device, extra: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Sum the ``.grad`` of ``params`` over all ranks (a param without a gradient on some
    rank counts zeros there; one without a gradient on every rank keeps ``None``), and
    the float64 vector ``extra`` with them; returns ``extra`` summed."""
    n = len(params)
    flags = torch.zeros(n + (0 if extra is None else extra.numel()), dtype=torch.float64)
    flags[:n] = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    if extra is not None:
        flags[n:] = extra.detach().reshape(-1).to("cpu", torch.float64)
    flags = flags.to(device)
    dist.all_reduce(flags)
    has = flags[:n].tolist()
    for p, flag in zip(params, has):
        if flag and p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        dist.all_reduce(flat)
        for p, g in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(g.view_as(p.grad))  # type: ignore[union-attr]
    return None if extra is None else flags[n:]


def all_reduce_grads(device: torch.device, skip: set[int] | None = None, value: Any = None) -> Any:
    """Sum the ``.grad`` of every Pyro param over all ranks (params in name order), except
    those whose ``id`` is in ``skip`` (already reduced, e.g. a critic's); with ``value``
    (a loss value: a number, a tensor, or a tuple/list of them), also sum it over the
    ranks in the same small collective as the gradient flags and return it as floats
    (of ``value``'s container type).

    A param keeps ``grad=None`` only if it has none on every rank; otherwise a
    missing local gradient counts as zeros.
    """
    params = [p for _, p in _sorted_params() if skip is None or id(p) not in skip]
    if not params and value is None:
        return None
    values = value if isinstance(value, tuple | list) else (value,)
    floats = [float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values]
    extra = None if value is None else torch.tensor(floats, dtype=torch.float64)
    total = _reduce_grads(params, device, extra)
    if total is None:
        return None
    out = [float(v) for v in total.tolist()]
    return type(value)(out) if isinstance(value, tuple | list) else out[0]


def _innermost(loss: Any) -> Any:
    """The loss under its wrappers (``DataParallelLoss``, ``AutocastLoss``, ``ShapeKeyedJit``)."""
    while "wrapped" in vars(loss):
        loss = vars(loss)["wrapped"]
    return loss


class DataParallelLoss:
    """A Pyro loss whose gradients and value are summed over the ranks of a process group.

    ``loss_and_grads`` evaluates the wrapped loss on this rank's shard — model and
    guide run under ``scale`` (a :class:`~pyro_genmodels.shard_scale.ShardScale`,
    set by :func:`pyro_genmodels.fit` after :func:`prime_and_broadcast`, so that the
    ranks' losses sum to the single-process loss of the global batch) — then
    :func:`all_reduce_grads`, and returns the loss summed over ranks (floats).

    A loss that updates parameters itself inside ``loss_and_grads`` (an
    adversarial loss's inner critic updates) declares a ``critic_grad_sync``
    attribute (``None`` in one process). For the duration of the call it is set
    to a function ``sync(loss, params) -> loss summed over ranks`` that sums the
    ``.grad`` of ``params`` over the ranks; the loss calls it after each inner
    backward and before its finite check and update, so every rank takes the same
    decision and the same step. Those params are then left out of the final
    reduction (their gradients are summed once).

    Every other attribute (``loss``, ``state_dict``, ...) is the wrapped loss's:
    a stateful loss (persistent chains) keeps its own state per rank
    (see :func:`gather_rank_states`).

    Args:
        loss: a Pyro loss with ``loss_and_grads(model, guide, *args)``.
        device: where the reductions run (a CUDA device for NCCL).
        scale: the plate scaling of model and guide, or ``None`` (none).
    """

    def __init__(self, loss: Any, device: torch.device, scale: ShardScale | None = None) -> None:
        if not callable(getattr(loss, "loss_and_grads", None)):
            raise TypeError(f"loss must have a loss_and_grads method, got {type(loss).__name__}")
        self.wrapped = loss
        self.device = device
        self.scale = scale
        self._synced: set[int] = set()

    def set_step(self, global_size: int, local_size: int) -> None:
        """The coming step's global batch size and this rank's shard size (for the scale)."""
        if self.scale is not None:
            self.scale.set_step(global_size, local_size)

    def _sync_critic(self, loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        self._synced.update(id(p) for p in params)
        total = _reduce_grads(params, self.device, loss.detach().reshape(1))
        assert total is not None
        return total[0].to(loss.dtype)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.scale is not None:
            model, guide = self.scale.wrap(model), self.scale.wrap(guide)
        inner = _innermost(self.wrapped)
        hook = hasattr(inner, "critic_grad_sync")
        self._synced = set()
        if hook:
            inner.critic_grad_sync = self._sync_critic
        try:
            value = self.wrapped.loss_and_grads(model, guide, *args, **kwargs)
        finally:
            if hook:
                inner.critic_grad_sync = None
        return all_reduce_grads(self.device, skip=self._synced, value=value)

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)


def _run_loss(model: Callable, guide: Callable, loss: Any, batch: tuple) -> PlateRecorder:
    """One loss evaluation on ``batch`` (no backward), recording its plates."""
    recorder = PlateRecorder()
    model, guide = recorder(model), recorder(guide)
    if callable(getattr(loss, "loss", None)):
        loss.loss(model, guide, *batch)
    else:
        guide_trace = poutine.trace(guide).get_trace(*batch)
        poutine.replay(model, trace=guide_trace)(*batch)
    return recorder


def prime(
    model: Callable, guide: Callable, loss: Any, batch: tuple, shard: tuple | None = None
) -> tuple[dict[str, bool], set[str]]:
    """Create every lazily made Pyro param by one loss evaluation on ``batch`` (tensors
    ``(B, ...)``), leaving training as if it had not run; needs no process group.

    The evaluation runs inside ``poutine.block`` (no backward pass) and
    :class:`~pyro_genmodels.params.own_params` (the param store holds the modules' own
    parameters, as during training), with the random number generators, a stateful
    loss's state (persistent chains) and the buffers of the modules that model, guide
    and loss use (:func:`~pyro_genmodels.params.find_modules`: BatchNorm's running
    statistics) restored afterwards. What it leaves behind is what the first training
    step on ``batch`` would have done to the modules before its update: the params
    created, data-dependent initializations made from ``batch`` (the parameters and
    buffers of modules with ``data_dependent_init = True``, such as
    :class:`~pyro_genmodels.flows.ActNorm`), a loss's plate nesting guessed. ``fit``
    trained after ``prime`` therefore equals ``fit`` without it, bit for bit, when its
    first batch is ``batch`` (``tests/test_prime_zoo.py`` checks every zoo entry), except
    for a ``pyro.param`` initialized *lazily* from the random generators
    (``pyro.param("w", lambda: torch.randn(3))``): a run that creates it at its first
    step draws its initial value there, which shifts that step's later draws, while a
    primed run does not draw it again. (An initial value given as a tensor,
    ``pyro.param("w", torch.randn(3))``, is drawn at every call, so both runs agree.)

    With ``shard`` (a part of ``batch``'s rows) the loss is evaluated on it too, and the
    plates whose size changes are returned as ``(data_plates, data_sites)``
    (:func:`~pyro_genmodels.shard_scale.find_data_plates`; empty without ``shard``).

    >>> import pyro, pyro.distributions as pdist
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.zeros(()))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", pdist.Normal(loc, 1.0), obs=x)
    >>> pyro.clear_param_store()
    >>> prime(model, lambda x: None, pyro.infer.Trace_ELBO(), (torch.zeros(4),))
    ({}, set())
    >>> "loc" in pyro.get_param_store()
    True
    >>> pyro.clear_param_store()
    """
    rng = get_rng_state()
    loss_state = loss.state_dict() if _stateful(loss) else None
    buffers = _BufferSnapshot(find_modules(model, guide, loss))
    found: tuple[dict[str, bool], set[str]] = ({}, set())
    with poutine.block(), own_params():  # losses through ∇ₓ (score matching) need autograd here
        whole = _run_loss(model, guide, loss, batch)
        if shard is not None:
            set_rng_state(rng)
            found = find_data_plates(whole, _run_loss(model, guide, loss, shard))
    set_rng_state(rng)
    buffers.restore()
    if loss_state is not None:
        loss.load_state_dict(loss_state)
    return found


class _BufferSnapshot:
    """The buffers of ``modules`` (and their submodules) as they are now, to be put back —
    but for those of modules with ``data_dependent_init = True`` (ActNorm), whose first
    training batch sets them once."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.saved = [
            (sub, name, buf, buf.clone())
            for module in modules
            for sub in module.modules()
            if not getattr(sub, "data_dependent_init", False)
            for name, buf in sub.named_buffers(recurse=False)
        ]

    @torch.no_grad()
    def restore(self) -> None:
        for sub, name, buf, value in self.saved:
            buf.copy_(value)
            if getattr(sub, name) is not buf:  # replaced, not updated in place
                setattr(sub, name, buf)


def prime_and_broadcast(
    model: Callable,
    guide: Callable,
    loss: Any,
    batch: tuple,
    device: torch.device,
    shard: tuple | None = None,
) -> tuple[dict[str, bool], set[str]]:
    """:func:`prime` on ``batch`` (the global first batch, tensors ``(B, ...)``, and this
    rank's ``shard`` of it), then broadcast all params from rank 0 (a critic registered
    under ``poutine.block`` included: it is in the param store).

    Returns the data plates that :func:`prime` found (``({}, set())`` without ``shard``).
    Training continues as if the priming had not run, so the ranks together take the
    single-process steps.
    """
    found = prime(model, guide, loss, batch, shard)
    with torch.no_grad():
        for name, p in _sorted_params():
            if p.device.type != device.type:
                raise ValueError(
                    f"Pyro param {name!r} is on {p.device} but training runs on {device}"
                )
            dist.broadcast(p.data, src=0)
    return found


def _on_cpu(obj: Any) -> Any:
    """``obj`` with its tensors detached on the CPU (through dicts, lists and (named) tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_on_cpu(v) for v in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def on_main_process(fn: Callable[[], Any]) -> Any:
    """``fn()`` computed by rank 0 alone and broadcast to every rank (``fn()`` itself without
    a process group): for random quantities (an AIS estimate of ``log Z``, model samples)
    that must be identical on all ranks and equal to a single process's, which draws
    from rank 0's streams. Under a process group its tensors arrive on the CPU (through
    dicts, lists and named tuples). A collective call: every rank must make it.

    >>> on_main_process(lambda: 3)
    3
    """
    rank, world = _world()
    if world == 1:
        return fn()
    box: tuple[str, Any] = ("", None)
    if rank == 0:
        try:
            box = ("ok", _on_cpu(fn()))
        except Exception as e:  # the other ranks must not wait for a broadcast forever
            box = ("error", f"{type(e).__name__}: {e}")
            broadcast_object(box)
            raise
    box = broadcast_object(box)
    if box[0] == "error":
        raise RuntimeError(f"rank 0 failed computing the shared value: {box[1]}")
    return box[1]
