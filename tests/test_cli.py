"""End-to-end tests of ``python -m pyro_genmodels`` with tiny budgets."""

import argparse
import json
import subprocess
import sys

import pandas as pd
import pyro
import pytest
import torch

from pyro_genmodels import zoo
from pyro_genmodels.cli import _parser, main
from pyro_genmodels.infer import bits_per_dim, log_likelihood

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "16", "--num-samples", "8", "--quiet"]


def _direct_nll(run, state_dict, num_samples):
    """Mean test NLL (nats) of the model in ``run``, built and scored without the CLI."""
    config = json.loads((run / "config.json").read_text())
    data = zoo.dataset_for(config["model"], config["data"])
    pyro.clear_param_store()
    setup = zoo.build(config["model"], data, **config["kwargs"])
    setup.module.load_state_dict(state_dict)
    setup.module.eval()
    pyro.set_rng_seed(0)
    with torch.no_grad():
        log_p = log_likelihood(setup.model, setup.guide, *setup.test, num_samples=num_samples)
    return float(-log_p.mean())


def test_train_evaluate_sample_round_trip(tmp_path):
    run = tmp_path / "vae"
    trained = main(["train", "vae", "--out", str(run), *TINY])
    assert (run / "config.json").exists() and (run / "model.pt").exists()
    assert len(trained["history"]) == 1
    # weights load without unpickling arbitrary objects
    state = torch.load(run / "model.pt", weights_only=True)
    assert any(k.endswith("weight") for k in state["state_dict"])
    first = main(["evaluate", "--run", str(run), "--num-samples", "16"])
    again = main(["evaluate", "--run", str(run), "--num-samples", "16"])
    assert first["nll"] == pytest.approx(again["nll"])  # same seed, same restored weights
    # The CLI's number is the importance-sampled NLL of the saved weights: recompute it
    # directly on a model loaded from model.pt, with the CLI's default seed (0).
    assert first["nll"] == pytest.approx(_direct_nll(run, state["state_dict"], 16), rel=1e-6)
    assert first["bits_per_dim"] == pytest.approx(bits_per_dim(first["nll"], 64), rel=1e-12)
    sampled = main(["sample", "--run", str(run), "-n", "4", "--out", str(tmp_path / "s.png")])
    assert sampled["samples"].shape == (4, 64)
    assert (tmp_path / "s.png").stat().st_size > 0
    # --out into folders that do not exist yet: created, as train --out creates its folder
    deep = tmp_path / "new" / "folder" / "s.png"
    main(["sample", "--run", str(run), "-n", "4", "--out", str(deep)])
    assert deep.stat().st_size > 0


def test_zoo_writes_report(tmp_path):
    out = tmp_path / "report"
    result = main(["zoo", "--models", "vae,cvae", "--out", str(out), *TINY])
    table = pd.read_csv(out / "zoo.csv")
    assert list(table["model"]) == ["vae", "cvae"]
    assert table["test_nll_nats"].notna().all()
    for nll, bpd in zip(table["test_nll_nats"], table["bits_per_dim"]):
        assert bpd == pytest.approx(bits_per_dim(nll, 64), rel=1e-9)
    assert (out / "summary.md").read_text().startswith("# Model zoo")
    assert (out / "vae_samples.png").exists() and (out / "cvae_samples.png").exists()
    # one epoch: no curve of single points; the values are stated instead
    assert not (out / "cvae_history.png").exists()
    assert (out / "summary.md").read_text().count("1 epoch, no curve to draw: training loss") == 2
    assert len(result["table"]) == 2


def test_every_zoo_entry_builds():
    for name, entry in zoo.ZOO.items():
        data = zoo.dataset_for(name, "digits")
        assert data.binarized == entry.binarize
        setup = zoo.build(name, data)
        assert sum(p.numel() for p in setup.module.parameters()) > 0, name
        assert setup.test and setup.test[0].shape[0] == data.test.shape[0], name


def test_cli_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "no-such-model"])
    with pytest.raises(SystemExit) as error:
        main(["evaluate", "--run", str(tmp_path / "missing")])
    assert error.value.code == 2
    assert "train a model first" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model"):
        zoo.build("nope", None)


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "pyro_genmodels", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "zoo" in out.stdout


def test_zoo_registry_rules():
    entry = zoo.ZOO["vae"]
    assert zoo.register(entry) is entry  # re-registering the same entry is a no-op
    clash = zoo.ZooEntry("vae", "vae", "another", entry.build)
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(clash)
    assert zoo.dataset_for("vae", "digits").binarized
    with pytest.raises(ValueError, match="unknown models"):
        zoo.run("digits", ["vae", "nope"])


def test_zoo_options_are_checked_per_entry(tmp_path):
    with pytest.raises(ValueError, match="takes options"):
        zoo.build("vae", zoo.dataset_for("vae", "digits"), no_such_option=1)
    # the CLI passes --z-dim only to the entries that have a latent
    out = main(["zoo", "--models", "vae,flow-nice", "--out", str(tmp_path), *TINY])
    assert list(out["table"]["model"]) == ["vae", "flow-nice"]


def _subcommands():
    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_option_has_help_and_shows_its_default():
    parser, commands = _subcommands()
    for name, sub in {"": parser, **commands}.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    train = commands["train"].format_help()
    assert train.count("(default: the entry's budget)") == 3  # --epochs, --batch-size, --lr
    assert "(default: None)" not in train and "(default: False)" not in train
    assert train.count("(default: runs/MODEL)") == 1 and "random seed (default: 0)" in train
    assert "(default: each family's budget)" in commands["zoo"].format_help()


def _nothing_runs(monkeypatch):
    """Loading data (the first work of every command) or training fails the test."""
    import pyro_genmodels.runs
    import pyro_genmodels.training
    import pyro_genmodels.zoo.runner

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(pyro_genmodels.zoo.runner, "dataset_for", refuse)
    monkeypatch.setattr(pyro_genmodels.runs, "open_data", refuse)
    monkeypatch.setattr(pyro_genmodels.training, "fit", refuse)


BAD_ARGUMENTS = [
    (["train", "vae", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["train", "vae", "--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
    (["train", "vae", "--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
    (["train", "vae", "--lr", "-0.1"], "--lr: must be a finite number > 0, got -0.1"),
    (["train", "vae", "--batch-size", "1.5"], "--batch-size: must be an integer >= 1"),
    (["train", "vae", "--validation-fraction", "1"], "--validation-fraction: must be a number"),
    (["train", "vae", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
    (["zoo", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["zoo", "--models", "vae,nope"], "--models: unknown models ['nope']; the zoo has gan,"),
    (["zoo", "--early-stopping", "0"], "--early-stopping: must be an integer >= 1, got 0"),
    (["evaluate", "--run", "r", "--num-samples", "0"], "--num-samples: must be an integer >= 1"),
    (["sample", "--run", "r", "-n", "0"], "-n: must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(
    "argv, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS]
)
def test_bad_values_exit_2_in_one_line_before_any_work(argv, message, monkeypatch, capsys):
    _nothing_runs(monkeypatch)
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert err.startswith(f"python -m pyro_genmodels {argv[0]}: error: argument ")


def _error_line(argv, capsys, code=2):
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_unknown_model_or_data_in_a_run_config(tmp_path, capsys):
    for key, value in (("model", "no-such-model"), ("data", "no-such-data")):
        config = {"model": "vae", "data": "digits", "seed": 0, "kwargs": {}, key: value}
        (tmp_path / "config.json").write_text(json.dumps(config))
        err = _error_line(["evaluate", "--run", str(tmp_path)], capsys)
        assert f"names the {key} '{value}'" in err, err
        known = "vae" if key == "model" else "mnist5k"
        assert known in err.split("known: ")[1], err


@pytest.mark.parametrize("where", ["checkpoints/checkpoint.pt", "checkpoints/best.pt", "model.pt"])
def test_a_run_file_that_is_a_directory_fails_before_training(where, tmp_path, monkeypatch, capsys):
    (tmp_path / where).mkdir(parents=True)
    _nothing_runs(monkeypatch)
    err = _error_line(["train", "fvsbn", "--out", str(tmp_path), "--quiet"], capsys)
    assert f"{where.split('/')[-1]}' is a directory" in err and "--out" in err, err


def test_zoo_checks_its_report_files_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "fvsbn_history.png").mkdir()
    _nothing_runs(monkeypatch)
    err = _error_line(["zoo", "--models", "fvsbn", "--out", str(tmp_path), "--quiet"], capsys)
    assert "fvsbn_history.png' is a directory" in err, err


def test_sample_out_that_is_a_directory(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "fvsbn", "--out", str(run), "--epochs", "1", "--quiet"])
    (tmp_path / "grid.png").mkdir()
    err = _error_line(["sample", "--run", str(run), "--out", str(tmp_path / "grid.png")], capsys)
    assert "grid.png' is a directory" in err, err


def test_diverged_training_is_one_line_with_exit_status_1(tmp_path, monkeypatch, capsys):
    import pyro_genmodels.training

    def diverge(*args, **kwargs):
        raise FloatingPointError("the update of step 1 made parameter(s) ['w'] non-finite")

    monkeypatch.setattr(pyro_genmodels.training, "fit", diverge)
    err = _error_line(["train", "fvsbn", "--out", str(tmp_path), "--quiet"], capsys, code=1)
    assert err.startswith("error: training stopped: the update of step 1"), err


@pytest.mark.parametrize(
    "option, value",
    [("epochs", 0), ("batch_size", 0), ("lr", float("inf")), ("num_samples", 0),
     ("early_stopping", 0), ("epochs", 2.0)],
)  # fmt: skip
def test_zoo_run_checks_its_budget_before_training(option, value, monkeypatch):
    _nothing_runs(monkeypatch)
    with pytest.raises((ValueError, TypeError), match=option):
        zoo.run("digits", ["fvsbn", "made"], **{option: value}, progress=False)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.0, -0.1, "0.1"])
def test_zoo_run_checks_validation_fraction_before_training(value, monkeypatch):
    """Also when the dataset already has a validation split (a NaN passed silently)."""
    _nothing_runs(monkeypatch)
    data = zoo.dataset_for("fvsbn", "digits").split_validation(0.1)
    for given in (data, "digits"):
        with pytest.raises((ValueError, TypeError), match="validation_fraction"):
            zoo.run(given, ["fvsbn"], validation_fraction=value, progress=False)
        with pytest.raises((ValueError, TypeError), match="validation_fraction"):
            zoo.train_entry("fvsbn", given, validation_fraction=value, progress=False)


@pytest.mark.parametrize("name", ["made", "gan"])
def test_the_cli_and_zoo_run_train_an_entry_identically(name, tmp_path):
    """One recipe (``zoo.train_entry``): the same budget, optimizer arguments (a GAN's
    betas) and seed give the same history and weights."""
    cli = main(["train", name, "--epochs", "1", "--hidden", "16", "--out", str(tmp_path),
                "--quiet"])  # fmt: skip
    table, runs = zoo.run("digits", [name], quick=True, hidden=16, progress=False)
    setup, history, _ = runs[name]
    columns = [c for c in history.columns if c.startswith("loss")]
    assert cli["history"][columns].equals(history[columns])
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    for key, value in setup.module.state_dict().items():
        assert torch.equal(saved[key], value), key
    spent = table.iloc[0]
    assert (spent["lr"], spent["batch_size"]) == (cli["trained"].budget["lr"],
                                                  cli["trained"].budget["batch_size"])  # fmt: skip


def test_train_gan_uses_the_entrys_optimizer_arguments_and_budget(tmp_path, monkeypatch):
    import pyro_genmodels.training

    seen = {}

    def record(model, guide, data, **kwargs):
        seen.update(kwargs)
        return pd.DataFrame({"epoch": [], "loss_0": [], "loss_1": []})

    monkeypatch.setattr(pyro_genmodels.training, "fit", record)
    main(["train", "gan", "--out", str(tmp_path), "--quiet"])
    entry = zoo.ZOO["gan"].budget
    assert (seen["epochs"], seen["batch_size"]) == (entry["epochs"], entry["batch_size"])
    assert seen["optim"].pt_optim_args == {
        "betas": (0.5, 0.999),
        "lr": entry["lr"],
        "foreach": True,
    }
    main(["train", "gan", "--out", str(tmp_path), "--epochs", "3", "--lr", "0.01", "--quiet"])
    args = {"betas": (0.5, 0.999), "lr": 0.01, "foreach": True}
    assert seen["epochs"] == 3 and seen["optim"].pt_optim_args == args


def test_threads_sets_the_thread_count_of_training_and_scoring(tmp_path, monkeypatch):
    import pyro_genmodels.training.trainer as trainer
    from pyro_genmodels.training.threads import choose_threads

    before, want = torch.get_num_threads(), torch.get_num_threads() + 1
    chosen, scoring = [], []
    budget, evaluate = trainer.thread_budget, zoo.evaluate

    def spy_budget(count):
        chosen.append(count)
        return budget(count)

    def spy_evaluate(*args, **kwargs):
        scoring.append(torch.get_num_threads())
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "thread_budget", spy_budget)
    monkeypatch.setattr(zoo, "evaluate", spy_evaluate)
    run = tmp_path / "run"
    main(["train", "fvsbn", "--threads", str(want), "--epochs", "1", "--out", str(run), "--quiet"])
    main(["evaluate", "--run", str(run), "--threads", str(want)])
    assert chosen == [want] and scoring == [want]
    # the command's choice ends with it
    assert torch.get_num_threads() == before
    assert choose_threads(1, 1, torch.device("cpu")) != want


def test_help_builds_without_torch_pyro_or_the_zoo():
    code = (
        "import sys; from pyro_genmodels.cli import _parser; _parser().format_help(); "
        "print(sorted(m for m in ('torch', 'pyro', 'pyro_genmodels.zoo', 'numpy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
