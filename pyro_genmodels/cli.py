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
import sys
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_genmodels import zoo
from pyro_genmodels.data import Dataset
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.training.placement import check_writable

CONFIG, WEIGHTS = "config.json", "model.pt"


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line (the entries' defaults otherwise)."""
    given = {"z_dim": args.z_dim, "hidden": args.hidden}
    return {k: v for k, v in given.items() if v is not None}


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels.parallel import is_main_process
    from pyro_genmodels.training import fit
    from pyro_genmodels.training.files import FORMAT_VERSION, save_checkpoint

    out = Path(args.out or f"runs/{args.model}")
    check_writable(out, "--out")
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
        checkpoint_dir=out / "checkpoints",
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
    history.to_csv(out / "history.csv", index=False)
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
    shape = data.image_shape or (1, data.num_dims)  # no image shape: one row of pixels each
    fig = plot_samples(x, shape, nrow=int(args.n**0.5) or 1)
    fig.savefig(out, dpi=120)
    print(f"wrote {args.n} samples to {out}")
    return {"samples": x, "out": str(out)}


def cmd_zoo(args: argparse.Namespace) -> dict[str, Any]:
    from pyro_genmodels.report import write_report

    names = args.models.split(",") if args.models else None
    check_writable(Path(args.out), "--out")
    table, runs = zoo.run(
        args.data,
        names,
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyro_genmodels", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser, training: bool = True) -> None:
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        if training:
            q.add_argument("--data", default="digits", choices=["digits", "mnist5k"])
            q.add_argument("--epochs", type=int, default=50)
            q.add_argument("--batch-size", type=int, default=128)
            q.add_argument("--lr", type=float, default=1e-3)
            q.add_argument("--z-dim", type=int, default=None, help="latent size (VAEs, GANs)")
            q.add_argument("--hidden", type=int, default=None, help="hidden width")
            q.add_argument(
                "--validation-fraction",
                type=float,
                default=0.0,
                help="share of the training split held out for validation (val_loss, best "
                "epoch kept); 0: none",
            )
            q.add_argument(
                "--early-stopping",
                type=int,
                default=None,
                metavar="PATIENCE",
                help="stop after this many epochs without a better val_loss",
            )
            q.add_argument(
                "--num-samples",
                type=int,
                default=1000,
                help="importance samples K for the test NLL",
            )

    t = sub.add_parser("train", help="train one model")
    t.add_argument("model", choices=sorted(zoo.ZOO))
    t.add_argument("--out", default=None, help="run directory (default runs/MODEL)")
    t.add_argument("--resume", action="store_true")
    common(t)
    e = sub.add_parser("evaluate", help="test NLL of a trained run")
    e.add_argument("--run", required=True)
    e.add_argument("--num-samples", type=int, default=1000)
    common(e, training=False)
    s = sub.add_parser("sample", help="a grid of samples from a trained run")
    s.add_argument("--run", required=True)
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--out", default=None)
    common(s, training=False)
    z = sub.add_parser("zoo", help="train every model family and write a report")
    z.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(zoo.ZOO))
    z.add_argument("--out", default="report")
    z.add_argument(
        "--quick", action="store_true", help="one epoch per entry and small scoring samples"
    )
    common(z)
    # each entry trains with its family's budget unless these are given
    z.set_defaults(epochs=None, lr=None, batch_size=None, num_samples=None)
    return p


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "zoo": cmd_zoo}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m pyro_genmodels``; returns the command's results."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError) as error:  # bad arguments, unreadable runs or checkpoints
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def console() -> None:
    """The ``pyro-genmodels`` console script (results printed, not returned)."""
    main()
