"""A character-level LSTM on sentences from a small random grammar (generated here, no download).

    python examples/lstm_sequences.py --epochs 30

Sentences such as ``"the small cat sees a dog."`` have different lengths; they
are padded into one ``(N, T)`` tensor of character ids and the true lengths
are passed to ``pgm.distributions.AutoregressiveDistribution(rnn,
"categorical", lengths=...)``, which ignores the padding. The model is
trained with ``Trace_ELBO`` and an empty guide (``= -log p(x)``) and reports
the test NLL in nats per character beside a unigram baseline; samples at two
temperatures are cut at the first full stop.
Reference: Graves, "Generating Sequences With Recurrent Neural Networks", 2013.
"""

from __future__ import annotations

import argparse
import random

import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import AutoregressiveDistribution

SUBJECTS = ["the cat", "a dog", "the small cat", "my old dog", "a bird", "the tall man"]
VERBS = ["sees", "likes", "chases", "finds", "hears"]
OBJECTS = ["the ball", "a fish", "the red car", "a cat", "her friend", "the moon"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences ``subject verb object[ and verb object].`` from a fixed random grammar."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        if rng.random() < 0.3:
            s += f" and {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        out.append(s + ".")
    return out


def encode(texts: list[str], vocab: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids ``(N, T)`` padded with 0, and lengths ``(N,)``."""
    length = max(map(len, texts))
    ids = torch.zeros(len(texts), length)
    for i, text in enumerate(texts):
        ids[i, : len(text)] = torch.tensor([vocab.index(c) for c in text], dtype=ids.dtype)
    return ids, torch.tensor([len(t) for t in texts])


def make_model(rnn: pgm.nn.RNN, length: int):
    def model(x: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        pyro.module("rnn", rnn)
        with pyro.plate("data", lengths.shape[0]):
            d = AutoregressiveDistribution(rnn, "categorical", length=length, lengths=lengths)
            return pyro.sample("x", d, obs=x)

    return model


def main(quick: bool = False, epochs: int = 30, hidden: int = 64) -> dict:
    """Trains and evaluates; returns ``{"history", "nats_per_char", "unigram", "samples"}``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    n_train, n_test = (64, 32) if quick else (2000, 500)
    if quick:
        epochs, hidden = 2, 16
    train_text, test_text = sentences(n_train, seed=0), sentences(n_test, seed=1)
    vocab = "".join(sorted(set("".join(train_text + test_text))))
    train, train_len = encode(train_text, vocab)
    test, test_len = encode(test_text, vocab)
    length = max(train.shape[1], test.shape[1])
    train = torch.nn.functional.pad(train, (0, length - train.shape[1]))
    test = torch.nn.functional.pad(test, (0, length - test.shape[1]))
    rnn = pgm.nn.RNN(hidden, num_params=len(vocab), vocab_size=len(vocab))
    model = make_model(rnn, length)
    history = pgm.fit(
        model,
        lambda x, lengths: None,
        (train, train_len),
        loss=pyro.infer.Trace_ELBO(),
        optim=pgm.optim.Adam({"lr": 3e-3}),
        epochs=epochs,
        batch_size=64,
        progress=False,
    )
    with torch.no_grad():
        d = AutoregressiveDistribution(rnn, "categorical", length=length, lengths=test_len)
        nats_per_char = float(-d.log_prob(test).sum() / test_len.sum())
        counts = (
            torch.bincount(
                torch.cat([t[:n] for t, n in zip(train.long(), train_len)]), minlength=len(vocab)
            ).double()
            + 1
        )
        freq = counts / counts.sum()
        test_chars = torch.cat([t[:n] for t, n in zip(test.long(), test_len)])
        unigram = float(-freq.log()[test_chars].mean())
        samples = {}
        for temp in (1.0, 0.5):
            ids = AutoregressiveDistribution(rnn, "categorical", length=length, temperature=temp)
            texts = ["".join(vocab[int(i)] for i in row) for row in ids.sample((4,))]
            samples[temp] = [t.split(".")[0] + "." for t in texts]
    print(f"test NLL {nats_per_char:.3f} nats/char (unigram baseline {unigram:.3f})")
    for temp, texts in samples.items():
        print(f"T={temp}: " + " | ".join(texts))
    return {
        "history": history,
        "nats_per_char": nats_per_char,
        "unigram": unigram,
        "samples": samples,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args()
    main(quick=args.quick, epochs=args.epochs, hidden=args.hidden)
