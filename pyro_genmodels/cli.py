"""Command line: ``python -m pyro_genmodels {train,evaluate,sample,zoo}``.

Examples::

    python -m pyro_genmodels train vae --data digits --epochs 50 --out runs/vae
    python -m pyro_genmodels train flow-maf --data features.csv --standardize --out runs/maf
    python -m pyro_genmodels evaluate --run runs/vae --num-samples 1000
    python -m pyro_genmodels sample --run runs/vae -n 64 --out runs/vae/samples.png
    python -m pyro_genmodels zoo --data digits --out report

The parser is built without torch, Pyro or the zoo (``--help`` answers at once); each
command imports what it needs, and a command's ``--help`` that lists the zoo's models
imports the zoo. The run folder's files are :mod:`pyro_genmodels.runs`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from pyro_genmodels.runs import CHECKPOINTS, CONFIG, FILE_OPTIONS, HISTORY, WEIGHTS

if TYPE_CHECKING:
    from pyro_genmodels.data import Dataset

__all__ = ["CHECKPOINTS", "CONFIG", "HISTORY", "WEIGHTS", "console", "main"]

#: The flags that prepare a data file, by :func:`~pyro_genmodels.data.load_file`'s names.
FILE_FLAGS = {name: "--" + name.replace("_", "-") for name in FILE_OPTIONS}
SAVED_AS_NUMBERS = (".csv", ".npy", ".pt")  # sample --out suffixes written as numbers


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line (the entries' defaults otherwise)."""
    given = {"z_dim": args.z_dim, "hidden": args.hidden}
    return {k: v for k, v in given.items() if v is not None}


def _data(args: argparse.Namespace) -> tuple[Dataset | str, str | dict[str, Any]]:
    """``--data`` as the zoo takes it (a bundled name, or the file loaded with the file
    options) and as ``config.json`` records it."""
    from pyro_genmodels.data import BUNDLED
    from pyro_genmodels.runs import data_config, open_data

    options = {k: getattr(args, k) for k in FILE_OPTIONS}
    given = [flag for k, flag in FILE_FLAGS.items() if options[k] not in (None, False)]
    if args.data in BUNDLED:
        if given:
            raise ValueError(
                f"{', '.join(given)} prepare a data file; the bundled dataset {args.data!r} "
                "comes in the variant each model needs"
            )
        return args.data, args.data
    config = data_config(args.data, **options)
    return open_data(config, check=False), config


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels import zoo
    from pyro_genmodels.parallel import is_main_process
    from pyro_genmodels.runs import write_run
    from pyro_genmodels.training.callbacks.best_epoch import BEST_NAME
    from pyro_genmodels.training.callbacks.checkpointing import CHECKPOINT_NAME, LAST_GOOD_NAME
    from pyro_genmodels.training.placement import check_writable

    out = Path(args.out or f"runs/{args.model}")
    check_writable(out, "--out", files=(WEIGHTS, HISTORY, CONFIG))
    check_writable(out / CHECKPOINTS, "--out", files=(CHECKPOINT_NAME, LAST_GOOD_NAME, BEST_NAME))
    data, recorded = _data(args)
    trained = zoo.train_entry(
        args.model,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        early_stopping=args.early_stopping,
        checkpoint_dir=out / CHECKPOINTS,
        resume=args.resume,
        progress=None if not args.quiet else False,
        **_model_kwargs(args),
    )
    history = trained.history
    if not is_main_process():  # under torchrun, rank 0 alone writes the run's files
        return {"out": str(out), "history": history, "trained": trained}
    config = {
        "model": args.model,
        "data": recorded,
        "seed": args.seed,
        "validation_fraction": args.validation_fraction,
        "kwargs": _model_kwargs(args),
    }
    write_run(out, trained, config)
    last = history.iloc[-1].to_dict() if len(history) else {}
    print(f"trained {args.model} on {trained.data.name} for {len(history)} epochs -> {out}")
    print(f"final loss per datapoint: {last.get('loss', float('nan')):.4f}")
    return {"out": str(out), "history": history, "trained": trained}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    import pyro

    from pyro_genmodels import zoo
    from pyro_genmodels.infer import bits_per_dim
    from pyro_genmodels.runs import restore_run

    setup, data, config, _ = restore_run(args.run)
    pyro.set_rng_seed(args.seed)
    scores = zoo.evaluate(setup, num_samples=args.num_samples)
    nll = scores["test_nll_nats"]
    bpd = float(bits_per_dim(nll, data.num_dims))
    line = f"{config['model']} on {data.name} test: NLL {nll:.3f} nats, {bpd:.4f} bits/dim"
    line += f" ({scores['estimator']})"
    if scores.get("khat_bad_fraction", float("nan")) == scores.get("khat_bad_fraction"):
        line += (
            f"; PSIS k-hat > 0.7 on {scores['khat_bad_fraction']:.0%} of the first "
            f"{zoo.KHAT_POINTS} test points"
        )
    print(line)
    return {"nll": nll, "bits_per_dim": bpd, **scores}


def cmd_sample(args: argparse.Namespace) -> dict[str, Any]:
    import pyro
    import torch

    from pyro_genmodels.runs import restore_run
    from pyro_genmodels.training.placement import check_writable

    setup, data, _, _ = restore_run(args.run)
    name = "samples.png" if data.image_shape is not None else "samples.csv"
    out = Path(args.out or Path(args.run) / name)
    check_writable(out.parent, "--out", files=(out.name,))  # before drawing: fail fast
    pyro.set_rng_seed(args.seed)
    with torch.no_grad():
        x = setup.sample(args.n)
    suffix = out.suffix.lower()
    if suffix in SAVED_AS_NUMBERS:
        _save_numbers(out, x.detach().cpu())
    else:
        from pyro_genmodels.diagnostics import plot_samples

        shape = data.image_shape or (1, data.num_dims)  # no image shape: one row of pixels
        plot_samples(x, shape, nrow=int(args.n**0.5) or 1).savefig(out, dpi=120)
    print(f"wrote {args.n} samples to {out}")
    return {"samples": x, "out": str(out)}


def _save_numbers(out: Path, x: Any) -> None:
    """Samples ``(n, D)`` as a CSV, a ``.npy`` or a ``.pt`` file, by ``out``'s suffix."""
    import numpy as np
    import torch

    suffix = out.suffix.lower()
    if suffix == ".csv":
        np.savetxt(out, x.reshape(x.shape[0], -1).numpy(), delimiter=",", fmt="%.8g")
    elif suffix == ".npy":
        np.save(out, x.numpy())
    else:
        torch.save(x, out)


def cmd_zoo(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels import zoo
    from pyro_genmodels.report import report_files, write_report
    from pyro_genmodels.training.placement import check_writable

    check_writable(Path(args.out), "--out", files=report_files(args.models or zoo.ZOO))
    data, _ = _data(args)
    table, runs = zoo.run(
        data,
        args.models,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_samples=args.num_samples,
        seed=args.seed,
        progress=False if args.quiet else None,
        quick=args.quick,
        validation_fraction=args.validation_fraction,
        early_stopping=args.early_stopping,
        **_model_kwargs(args),
    )
    path = write_report(Path(args.out), table, runs)
    if not args.quiet:
        shown = ["model", "section", "test_nll_nats", "estimator", "class_coverage"]
        shown += ["frechet_distance", "train_seconds"]
        print(
            table[[c for c in shown if c in table]].to_string(
                index=False, float_format="{:.3f}".format
            )
        )
    print(f"report written to {path} and {path.parent / 'index.html'}")
    return {"table": table}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``prog: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` where an option has a default worth stating."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


class _LazyHelp(argparse.Action):
    """Stores the option's value; ``help`` may be a function, called when help is shown
    (so that naming the zoo's models or the bundled datasets imports them only then)."""

    @property
    def help(self) -> str | None:
        return self._help() if callable(self._help) else self._help

    @help.setter
    def help(self, value: str | Callable[[], str] | None) -> None:
        self._help = value

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)


def _lazy(text: Callable[[], str]) -> str:
    """A help text computed when shown, for :class:`_LazyHelp` (typed as the text)."""
    return cast(str, text)


class _ZooNames:
    """The zoo's entry names, read from the registry when first needed (a check or help)."""

    def _names(self) -> list[str]:
        from pyro_genmodels.zoo import ZOO

        return sorted(ZOO)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float, closed_low: bool, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        above = value >= low if closed_low else value > low
        if not (math.isfinite(value) and above and value < high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


def _model_names(text: str) -> list[str]:
    from pyro_genmodels.zoo import ZOO

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ZOO]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown models {unknown or [text]}; the zoo has {','.join(ZOO)}"
        )
    return names


def _image_shape(text: str) -> list[int]:
    try:
        shape = [int(s) for s in text.split(",")]
    except ValueError:
        shape = []
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must be C,H,W or H,W (positive integers), got {text!r}")
    return shape


POSITIVE = _int_at_least(1)
LEARNING_RATE = _float_in(0.0, math.inf, False, "a finite number > 0")
FRACTION = _float_in(0.0, 1.0, True, "a number in [0, 1)")


def _data_help() -> str:
    from pyro_genmodels.data import BUNDLED

    return (
        f"a bundled dataset ({', '.join(BUNDLED)}; each model gets the variant it needs) or "
        "a data file: .npy, .npz, .pt (a tensor), .csv (numbers, optional header), IDX "
        "(.gz too) or a folder of MNIST's four IDX files"
    )


def _models_help() -> str:
    return "comma-separated subset (default: every entry that models the data): " + ",".join(
        _ZooNames()
    )


def _add_data_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--data", default="digits", action=_LazyHelp, help=_lazy(_data_help))
    q.add_argument(
        "--binarize",
        action="store_true",
        help="data file: 1[x > 0.5] for values in [0, 1], 1[p/255 > 0.5] for uint8 pixels "
        "(for the Bernoulli models)",
    )
    q.add_argument(
        "--dequantize",
        type=_int_at_least(2),
        metavar="LEVELS",
        help="data file of integer pixels in {0..LEVELS-1}: (p + u)/LEVELS, u ~ U[0, 1) "
        "(for the continuous models)",
    )
    q.add_argument(
        "--standardize",
        action="store_true",
        help="data file of real values: (x - mean)/sd per feature, from the training rows",
    )
    q.add_argument(
        "--image-shape",
        type=_image_shape,
        metavar="C,H,W",
        help="data file of flat rows that are images (3-D and 4-D arrays carry their shape)",
    )


def _common(q: argparse.ArgumentParser, training: bool = True, budget: str = "") -> None:
    q.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    q.add_argument("--quiet", action="store_true", help="no progress bar or table")
    q.add_argument(
        "--threads",
        type=POSITIVE,
        metavar="N",
        help="CPU threads for training and scoring (default: one for small models, torch's "
        "count for large ones, OMP_NUM_THREADS when set)",
    )
    if not training:
        return
    _add_data_options(q)
    q.add_argument("--epochs", type=POSITIVE, help="training epochs" + budget)
    q.add_argument("--batch-size", type=POSITIVE, help="minibatch size" + budget)
    q.add_argument("--lr", type=LEARNING_RATE, help="Adam learning rate" + budget)
    q.add_argument("--z-dim", type=POSITIVE, help="latent size (VAEs, GANs; default: the entry's)")
    q.add_argument("--hidden", type=POSITIVE, help="hidden width (default: the entry's)")
    q.add_argument(
        "--validation-fraction",
        type=FRACTION,
        default=0.0,
        help="share of the training split held out for validation (val_loss, best "
        "epoch kept); 0: none",
    )
    q.add_argument(
        "--early-stopping",
        type=POSITIVE,
        metavar="PATIENCE",
        help="stop after this many epochs without a better val_loss (needs --validation-fraction)",
    )
    scored = "importance samples K for the test NLL" + budget
    q.add_argument(
        "--num-samples",
        type=POSITIVE,
        help=scored if q.prog.endswith("zoo") else "not used by train (evaluate scores a run)",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m pyro_genmodels",
        description="Train, evaluate, sample and compare the models of pyro_genmodels' zoo.",
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do (COMMAND --help: its options)",
    )

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)

    budget = " (default: the entry's budget)"
    t = command("train", "train one model")
    t.add_argument("model", choices=_ZooNames(), metavar="MODEL", help="zoo entry: %(choices)s")
    t.add_argument("--out", help="run directory (default: runs/MODEL)")
    t.add_argument(
        "--resume", action="store_true", help="continue from --out's checkpoints/checkpoint.pt"
    )
    _common(t, budget=budget)
    e = command("evaluate", "test NLL of a trained run")
    e.add_argument("--run", required=True, help="run directory written by train")
    e.add_argument(
        "--num-samples", type=POSITIVE, default=1000, help="importance samples K for the test NLL"
    )
    _common(e, training=False)
    s = command("sample", "samples from a trained run: an image grid, or numbers")
    s.add_argument("--run", required=True, help="run directory written by train")
    s.add_argument("-n", type=POSITIVE, default=64, help="number of samples")
    s.add_argument(
        "--out",
        help="file: .csv, .npy or .pt for the numbers, else an image grid; missing folders "
        "are created (default: RUN/samples.png for images, RUN/samples.csv otherwise)",
    )
    _common(s, training=False)
    z = command("zoo", "train every model family and write a report")
    z.add_argument(
        "--models",
        type=_model_names,
        action=_LazyHelp,
        help=_lazy(_models_help),
    )
    z.add_argument("--out", default="report", help="report directory (created when missing)")
    z.add_argument(
        "--quick", action="store_true", help="one epoch per entry and small scoring samples"
    )
    _common(z, budget=" (default: each family's budget)")
    return p


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "zoo": cmd_zoo}


def _with_threads(count: int | None, command: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``command`` with ``count`` CPU threads for training (``set_threads``) and for
    everything else (``torch.set_num_threads``); both are put back afterwards. Without a
    count: one thread except for large models' steps
    (:func:`~pyro_genmodels.training.threads.one_thread_outside_large_steps`)."""
    if count is None:
        from pyro_genmodels.training.threads import one_thread_outside_large_steps

        with one_thread_outside_large_steps():
            return command()
    import torch

    from pyro_genmodels.training.threads import set_threads

    before = torch.get_num_threads()
    set_threads(count)
    torch.set_num_threads(count)
    try:
        return command()
    finally:
        set_threads(None)
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m pyro_genmodels``; returns the command's results."""
    args = _parser().parse_args(argv)  # every option checked here: exit 2 before any work
    try:
        return _with_threads(args.threads, lambda: COMMANDS[args.command](args))
    except (ValueError, OSError) as error:  # bad arguments or data, unreadable runs or files
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except FloatingPointError as error:  # training diverged: fit's guard kept the last good state
        print(f"error: training stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from error


def console() -> None:
    """The ``pyro-genmodels`` console script (results printed, not returned)."""
    main()
