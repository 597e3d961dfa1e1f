"""Trained runs on disk, loaded in one call: :func:`load_run` and :func:`load_weights`.

A run folder written by ``python -m pyro_genmodels train ... --out RUN`` holds

- ``config.json``: the zoo entry, its options, the seed, the validation fraction and the
  data — a bundled dataset's name, or a file with the options it was loaded with and
  its SHA-256;
- ``model.pt``: the trained weights (the last epoch, or the best one with a validation
  split), a checksummed :func:`~pyro_genmodels.training.save_checkpoint` file;
- ``history.csv``: ``fit``'s history;
- ``checkpoints/``: ``fit``'s ``checkpoint.pt`` (last epoch), ``best.pt`` (best
  validation epoch) and, after a failure, ``last_good.pt``.

:func:`load_run` rebuilds such a run's zoo setup with its weights;
:func:`load_weights` puts the weights of any ``fit`` checkpoint (``checkpoint_dir``,
``best.pt``, ``checkpoint.pt``, ``last_good.pt``) or of a ``model.pt`` into fresh
modules of the same kinds, refusing modules that do not fit the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

    from pyro_genmodels.data import Dataset
    from pyro_genmodels.zoo import Setup, Trained

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "HISTORY",
    "WEIGHTS",
    "LoadedWeights",
    "Restored",
    "load_run",
    "load_weights",
    "open_data",
    "read_config",
    "restore_run",
    "write_run",
]

CONFIG, WEIGHTS, HISTORY, CHECKPOINTS = "config.json", "model.pt", "history.csv", "checkpoints"
#: What :func:`~pyro_genmodels.data.load_file` took, recorded for a file's data.
FILE_OPTIONS = ("binarize", "dequantize", "standardize", "image_shape")


class LoadedWeights(NamedTuple):
    """What :func:`load_weights` loaded: the file, and its epoch (``None`` for a
    ``model.pt``, which records none)."""

    path: Path
    epoch: int | None


class Restored(NamedTuple):
    """A CLI run rebuilt by :func:`restore_run`."""

    setup: Setup
    data: Dataset
    config: dict[str, Any]
    weights: LoadedWeights


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode() if path.is_dir() else b"")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_config(data: str, **options: Any) -> str | dict[str, Any]:
    """The ``data`` entry of ``config.json``: a bundled name as it is, a file as its
    absolute path, :data:`FILE_OPTIONS` and SHA-256."""
    from pyro_genmodels.data import BUNDLED

    if data in BUNDLED:
        return data
    path = Path(data).resolve()
    if not path.exists():
        raise FileNotFoundError(
            f"--data {data!r}: no such file or folder, and not a bundled dataset "
            f"({', '.join(BUNDLED)})"
        )
    return {"path": str(path), **options, "sha256": fingerprint(path)}


def open_data(data: str | dict[str, Any], check: bool = True) -> Dataset | str:
    """The data a config's ``data`` entry names: a bundled name, or the file loaded with
    its recorded options (a file that changed since is refused when ``check``)."""
    from pyro_genmodels.data import load_file

    if isinstance(data, str):
        return data
    path = Path(data["path"])
    if check and path.exists() and fingerprint(path) != data.get("sha256"):
        raise ValueError(
            f"the data {str(path)!r} changed since the run was trained (its SHA-256 differs); "
            "scores and samples would not be those of the trained model's data"
        )
    options: dict[str, Any] = {k: data[k] for k in FILE_OPTIONS if data.get(k) is not None}
    return load_file(path, **options)


def write_run(out: Path, trained: Trained, config: dict[str, Any]) -> None:
    """Writes ``model.pt``, ``history.csv`` and ``config.json`` of a trained entry."""
    from pyro_genmodels.training.files import FORMAT_VERSION, save_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    module = trained.setup.module
    payload = {
        "format_version": FORMAT_VERSION,
        "state_dict": module.state_dict(),
        "module_types": [type(module).__qualname__],
    }
    save_checkpoint(out / WEIGHTS, payload)
    trained.history.to_csv(out / HISTORY, index=False)
    (out / CONFIG).write_text(json.dumps(config, indent=2))


def read_config(run: Path) -> dict[str, Any]:
    """``run``'s ``config.json``, checked (model and data known to this version)."""
    from pyro_genmodels.data import BUNDLED
    from pyro_genmodels.zoo import ZOO

    path = run / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--run {str(run)!r}: no {CONFIG} there; train a model first")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--run: {str(path)!r} is not readable JSON ({error})") from error
    keys = {"model": str, "data": str | dict, "kwargs": dict}
    if not isinstance(config, dict) or any(
        not isinstance(config.get(k), t) for k, t in keys.items()
    ):
        raise ValueError(
            f"--run: {str(path)!r} must hold a JSON object with a 'model' string, a 'data' "
            f"string or object and a 'kwargs' object, got {str(config)[:200]}"
        )
    data = config["data"]
    if isinstance(data, dict) and not isinstance(data.get("path"), str):
        raise ValueError(f"--run: {str(path)!r}: the data object needs a 'path', got {data}")
    for key, known in (("model", ZOO), ("data", BUNDLED)):
        if isinstance(config[key], str) and config[key] not in known:
            raise ValueError(
                f"--run: {str(path)!r} names the {key} {config[key]!r}, which this version "
                f"does not know; known: {', '.join(known)}"
            )
    return config


def _run_folder(path: Path) -> tuple[Path, Path]:
    """``(run folder, weights file)`` of a run folder or of a file inside one."""
    if not path.exists():
        raise FileNotFoundError(
            f"--run {str(path)!r}: no such run folder or file; train a model first "
            "(python -m pyro_genmodels train MODEL --out RUN)"
        )
    if path.is_dir():
        return path, path / WEIGHTS
    for folder in (path.parent, path.parent.parent):
        if (folder / CONFIG).is_file():
            return folder, path
    raise ValueError(
        f"{str(path)!r} is not in a run folder of the command line (no {CONFIG} beside it); "
        "load a fit checkpoint with pgm.load_weights(path, *modules)"
    )


def restore_run(path: str | os.PathLike) -> Restored:
    """The zoo setup of a CLI run, built as it was trained (same data, validation split,
    options) with the weights of ``path`` (a run folder: its ``model.pt``; or a
    ``model.pt``, ``best.pt``, ``checkpoint.pt`` or ``last_good.pt`` inside one)."""
    import pyro

    from pyro_genmodels import zoo
    from pyro_genmodels.params import find_modules

    run, weights = _run_folder(Path(path))
    config = read_config(run)
    data = zoo.entry_data(
        config["model"],
        open_data(config["data"]),
        config.get("validation_fraction", 0.0),
        config.get("seed", 0),
    )
    pyro.clear_param_store()
    setup = zoo.build(config["model"], data, **config["kwargs"])
    modules = (
        [setup.module]
        if weights.name == WEIGHTS
        else find_modules(setup.model, setup.guide, setup.loss)
    )
    try:
        loaded = load_weights(weights, *modules, params=False)
    except ValueError as error:
        raise ValueError(f"--run: {error}") from error
    return Restored(setup, data, config, loaded)


def load_run(path: str | os.PathLike) -> Setup:
    """A command-line run, rebuilt with its trained weights, in one call.

    ``path`` is a run folder written by ``python -m pyro_genmodels train --out RUN``
    (its ``model.pt``: the last epoch, or the best one with a validation split) or a
    weights file inside it (``RUN/checkpoints/best.pt``, ``checkpoint.pt``, ...). The
    entry is built as it was trained — the same data (a bundled dataset, or the file
    reloaded with the recorded options, refused if it changed), validation split and
    options — and the file's weights are loaded into it.

    Returns:
        the zoo :class:`~pyro_genmodels.zoo.Setup`: ``setup.module`` (the weights),
        ``setup.model``/``setup.guide`` (Pyro programs), ``setup.sample(n)``,
        ``setup.test`` (the test split in the model's form);
        :func:`pyro_genmodels.zoo.evaluate` scores it.

    Example (``python -m pyro_genmodels train vae --out runs/vae`` first)::

        setup = pgm.load_run("runs/vae")
        x = setup.sample(16)
    """
    return restore_run(path).setup


def _weights_file(path: Path) -> Path:
    """The file a folder's weights are read from: a CLI run's ``model.pt``, else a fit
    ``checkpoint_dir``'s ``best.pt`` (when it kept a best epoch) or ``checkpoint.pt``."""
    from pyro_genmodels.training.callbacks.best_epoch import BEST_NAME
    from pyro_genmodels.training.callbacks.checkpointing import CHECKPOINT_NAME

    if not path.is_dir():
        return path
    for name in (WEIGHTS, BEST_NAME, CHECKPOINT_NAME):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(
        f"{str(path)!r} holds no weights: expected a run's {WEIGHTS} or a fit "
        f"checkpoint_dir's {BEST_NAME} or {CHECKPOINT_NAME}"
    )


def load_weights(
    path: str | os.PathLike, *modules: torch.nn.Module, params: bool = True
) -> LoadedWeights:
    """Loads trained weights into fresh ``modules``, after checking that they fit.

    ``path`` is a ``fit`` checkpoint (``best.pt``, ``checkpoint.pt``, ``last_good.pt``), a
    ``checkpoint_dir`` (its ``best.pt`` if it kept a best epoch, else ``checkpoint.pt``),
    a CLI run's ``model.pt`` or run folder. A ``fit`` checkpoint holds the
    ``state_dict`` (parameters and buffers) of each module that model, guide and loss
    used, in the order :func:`pyro_genmodels.params.find_modules` lists them: pass
    modules of the same classes in that order (for one model object, e.g. a ``VAE``,
    just that object). Nothing is loaded unless every module fits: the count, each
    class and each entry's name and shape are checked first, and a ``ValueError`` names
    the first difference. With ``params``, the checkpoint's Pyro params that belong to
    no module (a hand-written guide's ``pyro.param``) are copied into the param store,
    where they must already exist (run the guide once: their constraints live in
    the code).

    Returns:
        the file read and its epoch (``None`` for a ``model.pt``).

    >>> import tempfile, pyro, torch, pyro_genmodels as pgm
    >>> x = pgm.data.load("digits", binarize=True).train[:64]
    >>> vae = pgm.models.VAE(64, 2, hidden_dims=(16,))
    >>> d = tempfile.mkdtemp()
    >>> _ = pgm.fit(vae.model, vae.guide, x, loss=pyro.infer.Trace_ELBO(), epochs=1,
    ...             checkpoint_dir=d, progress=False)
    >>> fresh = pgm.models.VAE(64, 2, hidden_dims=(16,))
    >>> pgm.load_weights(d, fresh).epoch
    1
    >>> all(torch.equal(a, b) for a, b in zip(fresh.parameters(), vae.parameters()))
    True
    """
    import torch

    from pyro_genmodels.training.files import load_checkpoint

    file = _weights_file(Path(path))
    for i, m in enumerate(modules):
        if not isinstance(m, torch.nn.Module):
            raise TypeError(f"modules[{i}] must be a torch.nn.Module, got {type(m).__name__}")
    payload = load_checkpoint(file)
    if "modules" in payload:
        states, types = payload["modules"], payload.get("module_types")
    elif "state_dict" in payload:
        states, types = [payload["state_dict"]], payload.get("module_types")
    else:
        raise ValueError(f"{str(file)!r} holds no module weights (no 'modules' or 'state_dict')")
    _check_fit(file, states, types, modules)
    saved = _check_params(file, payload.get("params") or {}) if params else {}
    with torch.no_grad():
        for module, state in zip(modules, states):
            module.load_state_dict(state)
        for target, value in saved.values():
            target.copy_(value)
    epoch = payload.get("epoch")
    return LoadedWeights(file, None if epoch is None else int(epoch))


def _check_fit(
    file: Path, states: list[dict], types: list[str] | None, modules: tuple[Any, ...]
) -> None:
    """A ``ValueError`` naming the first way ``modules`` do not fit ``states``."""
    given = [type(m).__qualname__ for m in modules]
    stored = types if types is not None else ["?"] * len(states)
    if len(states) != len(modules):
        raise ValueError(
            f"{str(file)!r} holds the weights of {len(states)} module(s) {stored}, but "
            f"{len(modules)} were given {given} (pass the modules fit trained, in the order "
            "pgm.params.find_modules(model, guide, loss) lists them)"
        )
    for i, (module, state) in enumerate(zip(modules, states)):
        if types is not None and types[i] != given[i]:
            raise ValueError(f"{str(file)!r}: module {i} was a {types[i]}, got a {given[i]}")
        own = module.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{str(file)!r}: module {i} ({given[i]}) does not fit: entries missing from "
                f"the file {missing[:5]}, entries the module lacks {unexpected[:5]} (another "
                "architecture or options?)"
            )
        for key, value in state.items():
            if tuple(own[key].shape) != tuple(value.shape):
                raise ValueError(
                    f"{str(file)!r}: module {i} ({given[i]}) does not fit: {key} has shape "
                    f"{tuple(value.shape)} in the file and {tuple(own[key].shape)} in the "
                    "module (other sizes?)"
                )


def _check_params(file: Path, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``name -> (param-store tensor, saved value)`` of the checkpoint's params of no
    module, each checked to exist with the saved shape."""
    from pyro_genmodels._compat import store_params

    store = store_params()
    missing = sorted(set(saved) - set(store))
    if missing:
        raise ValueError(
            f"{str(file)!r} also holds Pyro params of no module, {missing}, which are not in "
            "the param store: run the guide (and model) once so that they exist with their "
            "constraints and load again, or pass params=False to load the modules only"
        )
    for name, value in saved.items():
        if store[name].shape != value.shape:
            raise ValueError(
                f"{str(file)!r}: param {name!r} has shape {tuple(value.shape)} in the file "
                f"and {tuple(store[name].shape)} in the param store"
            )
    return {name: (store[name], value) for name, value in saved.items()}
