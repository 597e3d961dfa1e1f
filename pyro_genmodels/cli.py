"""Command line: ``python -m pyro_genmodels {train,evaluate,sample,zoo}``.

Examples::

    python -m pyro_genmodels train vae --data digits --epochs 50 --out runs/vae
    python -m pyro_genmodels evaluate --run runs/vae --num-samples 1000
    python -m pyro_genmodels sample --run runs/vae -n 64 --out runs/vae/samples.png
    python -m pyro_genmodels zoo --data digits --out report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pyro
import torch

from pyro_genmodels import zoo
from pyro_genmodels.data import BUNDLED, Dataset
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.training.placement import check_writable

CONFIG, WEIGHTS, HISTORY, CHECKPOINTS = "config.json", "model.pt", "history.csv", "checkpoints"


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line (the entries' defaults otherwise)."""
    given = {"z_dim": args.z_dim, "hidden": args.hidden}
    return {k: v for k, v in given.items() if v is not None}


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels.parallel import is_main_process
    from pyro_genmodels.training import fit
    from pyro_genmodels.training.callbacks.best_epoch import BEST_NAME
    from pyro_genmodels.training.callbacks.checkpointing import CHECKPOINT_NAME, LAST_GOOD_NAME
    from pyro_genmodels.training.files import FORMAT_VERSION, save_checkpoint

    out = Path(args.out or f"runs/{args.model}")
    check_writable(out, "--out", files=(WEIGHTS, HISTORY, CONFIG))
    check_writable(out / CHECKPOINTS, "--out", files=(CHECKPOINT_NAME, LAST_GOOD_NAME, BEST_NAME))
    data = zoo.dataset_for(args.model, args.data)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    if args.validation_fraction:
        data = data.split_validation(args.validation_fraction, args.seed)
    setup = zoo.build(args.model, data, **_model_kwargs(args))
    valid = zoo.validation_args(args.model, data, **_model_kwargs(args))
    if args.early_stopping is not None and valid is None:
        raise ValueError(
            f"--early-stopping needs a validation split in the form {args.model} trains on: "
            "give --validation-fraction (an SSVAE, scored without labels, and the GANs, with two "
            "losses, have none)"
        )
    history = fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        optim=GroupedAdam({"lr": args.lr}),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_dir=out / CHECKPOINTS,
        resume=args.resume,
        progress=None if not args.quiet else False,
        validation=valid,
        early_stopping=args.early_stopping,
        keep_best=valid is not None,
    )
    if not is_main_process():  # under torchrun, rank 0 alone writes the run's files
        return {"out": str(out), "history": history}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / WEIGHTS,
        {"format_version": FORMAT_VERSION, "state_dict": setup.module.state_dict()},
    )
    history.to_csv(out / HISTORY, index=False)
    config = {
        "model": args.model,
        "data": args.data,
        "seed": args.seed,
        "kwargs": _model_kwargs(args),
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    last = history.iloc[-1].to_dict() if len(history) else {}
    print(f"trained {args.model} on {args.data} for {len(history)} epochs -> {out}")
    print(f"final loss per datapoint: {last.get('loss', float('nan')):.4f}")
    return {"out": str(out), "history": history}


def _read_config(run: Path) -> dict:
    path = run / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--run {str(run)!r}: no {CONFIG} there; train a model first")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--run: {str(path)!r} is not readable JSON ({error})") from error
    keys = {"model": str, "data": str, "kwargs": dict}
    if not isinstance(config, dict) or any(
        not isinstance(config.get(k), t) for k, t in keys.items()
    ):
        raise ValueError(
            f"--run: {str(path)!r} must hold a JSON object with 'model' and 'data' strings and "
            f"a 'kwargs' object, got {str(config)[:200]}"
        )
    for key, known in (("model", zoo.ZOO), ("data", BUNDLED)):
        if config[key] not in known:
            raise ValueError(
                f"--run: {str(path)!r} names the {key} {config[key]!r}, which this version "
                f"does not know; known: {', '.join(known)}"
            )
    return config


def _restore(run: Path) -> tuple[zoo.Setup, Dataset, dict]:
    from pyro_genmodels.training.files import load_checkpoint

    config = _read_config(run)
    data = zoo.dataset_for(config["model"], config["data"])
    pyro.clear_param_store()
    setup = zoo.build(config["model"], data, **config["kwargs"])
    weights = run / WEIGHTS
    try:
        setup.module.load_state_dict(
            load_checkpoint(weights, required=("state_dict",))["state_dict"]
        )
    except RuntimeError as error:
        raise ValueError(
            f"--run: the weights in {str(weights)!r} do not fit the model of {CONFIG} ({error})"
        ) from error
    return setup, data, config


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels.infer import bits_per_dim

    setup, data, config = _restore(Path(args.run))
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
    from pyro_genmodels.diagnostics import plot_samples

    setup, data, _ = _restore(Path(args.run))
    pyro.set_rng_seed(args.seed)
    with torch.no_grad():
        x = setup.sample(args.n)
    out = Path(args.out or Path(args.run) / "samples.png")
    check_writable(out.parent, "--out", files=(out.name,))  # before drawing: fail fast
    shape = data.image_shape or (1, data.num_dims)  # no image shape: one row of pixels each
    fig = plot_samples(x, shape, nrow=int(args.n**0.5) or 1)
    fig.savefig(out, dpi=120)
    print(f"wrote {args.n} samples to {out}")
    return {"samples": x, "out": str(out)}


def cmd_zoo(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels.report import report_files, write_report

    check_writable(Path(args.out), "--out", files=report_files(args.models or zoo.ZOO))
    table, runs = zoo.run(
        args.data,
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
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in zoo.ZOO]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown models {unknown or [text]}; the zoo has {','.join(zoo.ZOO)}"
        )
    return names


POSITIVE = _int_at_least(1)
LEARNING_RATE = _float_in(0.0, math.inf, False, "a finite number > 0")
FRACTION = _float_in(0.0, 1.0, True, "a number in [0, 1)")


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

    def common(q: argparse.ArgumentParser, training: bool = True, budget: str = "") -> None:
        q.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
        q.add_argument("--quiet", action="store_true", help="no progress bar or table")
        if not training:
            return
        q.add_argument(
            "--data", default="digits", choices=BUNDLED, help="bundled dataset to train on"
        )
        q.add_argument("--epochs", type=POSITIVE, default=50, help="training epochs" + budget)
        q.add_argument("--batch-size", type=POSITIVE, default=128, help="minibatch size" + budget)
        q.add_argument("--lr", type=LEARNING_RATE, default=1e-3, help="Adam learning rate" + budget)
        q.add_argument(
            "--z-dim", type=POSITIVE, help="latent size (VAEs, GANs; default: the entry's)"
        )
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
            help="stop after this many epochs without a better val_loss (needs "
            "--validation-fraction)",
        )
        scored = "importance samples K for the test NLL" + budget
        q.add_argument(
            "--num-samples",
            type=POSITIVE,
            help=scored if q.prog.endswith("zoo") else "not used by train (evaluate scores a run)",
        )

    t = command("train", "train one model")
    t.add_argument("model", choices=sorted(zoo.ZOO), metavar="MODEL", help="zoo entry: %(choices)s")
    t.add_argument("--out", help="run directory (default: runs/MODEL)")
    t.add_argument(
        "--resume", action="store_true", help="continue from --out's checkpoints/checkpoint.pt"
    )
    common(t)
    e = command("evaluate", "test NLL of a trained run")
    e.add_argument("--run", required=True, help="run directory written by train")
    e.add_argument(
        "--num-samples", type=POSITIVE, default=1000, help="importance samples K for the test NLL"
    )
    common(e, training=False)
    s = command("sample", "a grid of samples from a trained run")
    s.add_argument("--run", required=True, help="run directory written by train")
    s.add_argument("-n", type=POSITIVE, default=64, help="number of samples")
    s.add_argument(
        "--out", help="image file; missing folders are created (default: RUN/samples.png)"
    )
    common(s, training=False)
    z = command("zoo", "train every model family and write a report")
    z.add_argument(
        "--models",
        type=_model_names,
        help="comma-separated subset (default: all): " + ",".join(zoo.ZOO),
    )
    z.add_argument("--out", default="report", help="report directory (created when missing)")
    z.add_argument(
        "--quick", action="store_true", help="one epoch per entry and small scoring samples"
    )
    common(z, budget=" (default: each family's budget)")
    # each entry trains with its family's budget unless these are given
    z.set_defaults(epochs=None, lr=None, batch_size=None, num_samples=None)
    return p


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "zoo": cmd_zoo}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m pyro_genmodels``; returns the command's results."""
    args = _parser().parse_args(argv)  # every option checked here: exit 2 before any work
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError) as error:  # bad arguments, unreadable runs or checkpoints
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except FloatingPointError as error:  # training diverged: fit's guard kept the last good state
        print(f"error: training stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from error


def console() -> None:
    """The ``pyro-genmodels`` console script (results printed, not returned)."""
    main()
