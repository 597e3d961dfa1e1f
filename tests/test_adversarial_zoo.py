"""The adversarial zoo entries train through the zoo and score by samples, not likelihood."""

import math

from pyro_genmodels import zoo


def test_adversarial_zoo_entries_score_by_samples():
    family = [n for n, e in zoo.ZOO.items() if e.family == "adversarial"]
    assert set(family) == {"gan", "wgan-gp", "bigan"}
    assert not any(zoo.ZOO[n].binarize for n in family)  # dequantized images
    names = ["gan", "bigan"]
    table, runs = zoo.run("digits", names, epochs=1, batch_size=512, progress=False, hidden=8)
    assert table["model"].tolist() == names
    assert table["test_nll_nats"].map(math.isnan).all()
    assert (table["estimator"] == "samples").all()
    assert (table["mmd"] > 0).all() and (table["energy_distance"] > 0).all()
    setup, history, data = runs["gan"]
    assert list(history.columns[:3]) == ["epoch", "loss_0", "loss_1"]
    assert setup.sample(5).shape == (5, data.num_dims)
    assert bool(((setup.sample(5) >= 0) & (setup.sample(5) <= 1)).all())  # sigmoid images
