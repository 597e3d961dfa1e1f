"""The command line and the zoo on a user's data files: every format trains, every
problem is one line with exit status 2 and nothing trained, real values train the
families that model them (CLI and ``pgm.zoo.run``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from data_file_helpers import FORMATS, PIXELS, write_csv, write_format
from sklearn.datasets import load_breast_cancer

import pyro_genmodels as pgm
from pyro_genmodels import zoo
from pyro_genmodels.cli import main
from pyro_genmodels.data import from_tensors, load_file

QUIET = ["--quiet", "--seed", "0"]
#: Test NLL (nats) of N(0, I) on standardized data, per feature: 0.5 log(2πe). A density
#: that learned anything of the 30 breast-cancer features' correlations is below 30 of them.
STANDARD_NORMAL_NATS = 0.5 * math.log(2 * math.pi * math.e)


@pytest.mark.parametrize("kind", FORMATS)
def test_train_and_evaluate_on_every_format(kind, tmp_path):
    path, extra = write_format(kind, tmp_path)
    flags = ["--image-shape", "3,3"] if extra else []
    run = tmp_path / "run"
    result = main(["train", "flow-nice", "--data", str(path), "--dequantize", "256", *flags,
                   "--epochs", "1", "--hidden", "8", "--out", str(run), *QUIET])  # fmt: skip
    assert len(result["history"]) == 1 and (run / "model.pt").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["path"] == str(path.resolve()) and config["data"]["dequantize"] == 256
    scores = main(["evaluate", "--run", str(run), "--num-samples", "4"])
    # the exact NLL of the dequantized test rows, as the restored setup computes it
    setup = pgm.load_run(run)
    expected = load_file(path, dequantize=256, **extra)
    assert torch.equal(setup.test[0], expected.test)
    assert scores["nll"] == pytest.approx(zoo.evaluate(setup)["test_nll_nats"], rel=1e-6)


def _real(path, n=40, d=3, shift=0.0):
    np.save(path, np.random.RandomState(0).randn(n, d) + shift)
    return path


def _unit(path):
    np.save(path, np.random.RandomState(0).rand(40, 16))
    return path


def _nan(path):
    x = np.random.RandomState(0).rand(40, 4)
    x[3, 2] = np.nan
    np.save(path, x)
    return path


def _text(path):
    path.write_text("these are notes\nnot data\n")
    return path


def _ragged(path):
    path.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    return path


def _ints(path):
    np.save(path, PIXELS)
    return path


ERRORS = [
    (["train", "fvsbn"], None, [], "no such file or folder"),
    (["train", "fvsbn"], _text, [], "is not a data file this package reads"),
    (["train", "fvsbn"], _ragged, [], "line 3: 2 values, but the rows above have 3"),
    (["train", "flow-maf"], _nan, [], "must be finite, but 1 of 160 values are NaN or inf"),
    (["train", "made"], _real, [], "autoregressive zoo entries need binarized data"),
    (["train", "rbm-cd1"], _real, [], "Boltzmann zoo entries need binarized data"),
    (["train", "gan"], _real, [], "generators draw values in (0, 1)"),
    (["train", "flow-maf"], _ints, [], "holds integers (torch.uint8, values in [0, 255])"),
    (["train", "flow-maf"], _ints, ["--binarize"], "flow zoo entries need continuous data"),
    (["train", "vae-conv"], _unit, [], "encoder='conv' needs image_shape"),
    (["train", "pixelcnn"], _unit, ["--binarize"], "pixelcnn needs image data"),
    (["train", "cvae"], _unit, [], "this zoo entry needs class labels"),
    (["train", "flow-maf"], _real, ["--binarize"], "binarize needs train in [0, 1]"),
    (["train", "vae"], _unit, ["--image-shape", "3,3"], "must have C*H*W equal to"),
    (["zoo", "--models", "made,flow-nice"], _real, [], "zoo entries refuse"),
]  # fmt: skip


@pytest.mark.parametrize("command, make, flags, message", ERRORS, ids=[e[3][:40] for e in ERRORS])
def test_a_bad_file_or_the_wrong_model_is_one_line_and_nothing_trains(
    command, make, flags, message, tmp_path, monkeypatch, capsys
):
    import pyro_genmodels.training

    def refuse(*args, **kwargs):
        raise AssertionError("a model started training")

    monkeypatch.setattr(pyro_genmodels.training, "fit", refuse)
    suffix = ".csv" if make is _ragged else ".txt" if make is _text else ".npy"
    path = tmp_path / f"data{suffix}"
    if make is not None:
        make(path)
    argv = [*command, "--data", str(path), *flags, "--out", str(tmp_path / "out"), *QUIET]
    with pytest.raises(SystemExit) as error:
        main(argv)
    err = capsys.readouterr().err
    assert error.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and message in err, err


def test_file_options_with_a_bundled_dataset_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as error:
        main(["train", "vae", "--data", "digits", "--binarize", "--out", str(tmp_path), *QUIET])
    err = capsys.readouterr().err
    assert error.value.code == 2 and "--binarize prepare a data file" in err, err


def test_a_changed_data_file_is_refused_when_the_run_is_loaded(tmp_path, capsys):
    path = _real(tmp_path / "x.npy")
    run = tmp_path / "run"
    main(["train", "flow-nice", "--data", str(path), "--epochs", "1", "--out", str(run), *QUIET])
    _real(path, shift=1.0)
    with pytest.raises(SystemExit) as error:
        main(["evaluate", "--run", str(run)])
    err = capsys.readouterr().err
    assert error.value.code == 2 and "changed since the run was trained" in err, err
    with pytest.raises(ValueError, match="changed since the run was trained"):
        pgm.load_run(run)


@pytest.fixture(scope="module")
def breast_cancer_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("bc") / "breast_cancer.csv"
    write_csv(path, load_breast_cancer().data)
    return path


def test_real_valued_end_to_end_on_the_command_line(breast_cancer_csv, tmp_path):
    run = tmp_path / "maf"
    trained = main(["train", "flow-maf", "--data", str(breast_cancer_csv), "--standardize",
                    "--epochs", "5", "--validation-fraction", "0.2", "--out", str(run),
                    *QUIET])  # fmt: skip
    assert "val_loss" in trained["history"]
    scores = main(["evaluate", "--run", str(run)])
    assert scores["estimator"] == "exact, real values"
    # the flow learned the features' correlations: below N(0, I) on the standardized data
    assert scores["nll"] < 30 * STANDARD_NORMAL_NATS
    # load_run rebuilds the standardized test split and gives the same exact NLL
    setup = pgm.load_run(run)
    raw = load_file(breast_cancer_csv, dtype=torch.float32)
    mu, sd = raw.train.mean(0), raw.train.std(0, unbiased=False)
    torch.testing.assert_close(setup.test[0], (raw.test - mu) / sd)
    direct = -setup.module.log_prob(setup.test[0]).mean().item()
    assert scores["nll"] == pytest.approx(direct, rel=1e-5)
    sampled = main(["sample", "--run", str(run), "-n", "7"])
    numbers = np.loadtxt(run / "samples.csv", delimiter=",")
    assert numbers.shape == (7, 30) and sampled["out"].endswith("samples.csv")
    np.testing.assert_allclose(numbers, sampled["samples"].numpy(), rtol=1e-6)


def test_zoo_run_trains_the_real_valued_families_on_standardized_features(breast_cancer_csv):
    """Standardized breast-cancer features through ``pgm.zoo.run``: the flows (which
    failed with "x must hold in [0, 1]"), a Gaussian-likelihood VAE and an EBM."""
    data = load_file(breast_cancer_csv, standardize=True)
    table, runs = zoo.run(data, ["flow-maf", "vae", "ebm-ssm"], quick=True, progress=False,
                          sample_steps=50)  # fmt: skip
    assert list(table["section"]) == ["real-valued"] * 3
    assert table["test_nll_nats"].map(math.isfinite).all()
    assert runs["vae"][0].module.likelihood == "gaussian"


def test_zoo_run_skips_the_entries_that_do_not_model_the_data():
    x = np.random.RandomState(0).randn(60, 3) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]])
    table, runs = zoo.run(from_tensors(x, dtype=torch.float32), quick=True, progress=False,
                          hidden=8, sample_steps=20)  # fmt: skip
    skipped = table.attrs["skipped"]
    families = {zoo.ZOO[n].family for n in table["model"]}
    assert families == {"flow", "vae", "energy"} and set(runs) == set(table["model"])
    assert set(skipped) | set(table["model"]) == set(zoo.ZOO)
    assert "binarized data" in skipped["made"] and "(0, 1)" in skipped["gan"]
    assert "class labels" in skipped["cvae"] and "image_shape" in skipped["vae-conv"]


def test_zoo_command_on_a_data_file(breast_cancer_csv, tmp_path):
    out = tmp_path / "report"
    main(["zoo", "--data", str(breast_cancer_csv), "--standardize", "--models",
          "flow-nice,wae", "--quick", "--out", str(out), *QUIET])  # fmt: skip
    table = pd.read_csv(out / "zoo.csv")
    assert list(table["model"]) == ["flow-nice", "wae"] and set(table["dataset"]) == {
        "breast_cancer.csv"
    }
    assert "Real-valued data: log-likelihood" in (out / "summary.md").read_text()
