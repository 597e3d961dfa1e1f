"""The adversarial zoo entries train through the zoo and score by samples, not likelihood."""

import math

import pytest
import torch

from pyro_genmodels import zoo
from pyro_genmodels.zoo.adversarial import MinibatchStdCritic, PackedCritic, _generator


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
    assert table["class_coverage"].between(1, 10).all() and (table["frechet_distance"] > 0).all()
    setup, history, data = runs["gan"]
    assert list(history.columns[:3]) == ["epoch", "loss_0", "loss_1"]
    assert setup.sample(5).shape == (5, data.num_dims)
    assert bool(((setup.sample(5) >= 0) & (setup.sample(5) <= 1)).all())  # sigmoid images


def test_packed_critic_scores_packs_and_pads_cyclically():
    inner = torch.nn.Linear(3 * 2, 1)
    critic = PackedCritic(inner, pack=3)
    x = torch.randn(7, 2)
    out = critic(x)
    assert out.shape == (7,)
    packs = inner(torch.cat([x, x[:2]]).reshape(3, 6)).reshape(-1)  # rows 7, 8 = rows 0, 1
    assert torch.allclose(out, packs.repeat_interleave(3)[:7])
    with pytest.raises(ValueError, match="pack must be a positive int"):
        PackedCritic(inner, 0)
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        PackedCritic(lambda v: v, 2)


def test_minibatch_std_critic_feature():
    critic = MinibatchStdCritic(2, 8)
    x = torch.randn(64, 2)
    h = critic.body(x)
    s = h.std(0, unbiased=False).mean()
    expected = critic.head(torch.cat([h, s.expand(64, 1)], -1))
    assert torch.allclose(critic(x), expected)
    same = x[:1].expand(64, 2)  # a collapsed batch: s = 0
    zero = critic.head(torch.cat([critic.body(same), torch.zeros(64, 1)], -1))
    assert torch.allclose(critic(same), zero)


def test_batch_norm_generator_samples_alike_in_train_and_eval_mode():
    g = _generator(4, 8, 3, "batch")
    z = torch.randn(16, 4)
    g.train()
    for _ in range(3):
        g(torch.randn(16, 4) * 5 + 3)  # running averages, were there any, would move
    a = g(z)
    g.eval()
    assert torch.allclose(a, g(z))
    with pytest.raises(ValueError, match="norm must be None, 'batch' or 'layer'"):
        _generator(4, 8, 3, "group")
