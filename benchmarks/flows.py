"""Flow family benchmark: 2-D toys against their entropy floor, dequantized digits
and mnist5k per builder, peers ``zuko`` and ``normflows`` side by side, step-time
ratios, IAF-VAE vs diagonal VAE.

Every density model is trained by the same plain loop (Adam, lr 1e-3, minibatch
``-log p(x)``), same data, same layer count and hidden sizes, so NLL differences
compare implementations. Peers are optional (the ``bench`` extra); their rows are
skipped when they are not installed.

Rows of ``benchmarks/results/flows.csv`` (``section``):

* ``toy``: test NLL (nats) on two_moons, 8gaussians, checkerboard, mean of
  ``--seeds`` runs (``nll_sd``); ``floor`` is the data's entropy (FFJORD
  generators); ``gap = nll - floor``. ``spline-ar-best`` is one longer run.
* ``images``: test NLL of uniformly dequantized digits (``[0, 17)^64``) and
  mnist5k (``[0, 256)^784``) in the pixel space (nats and bits/dim), logit
  preprocessing for every model (peers get the same preprocessing with its log-det).
* ``speed``: seconds per step of ours over the peer, interleaved on one minibatch
  (the step-time figures; ``sec_per_step`` of the other rows is a whole-run average
  that moves with the machine's load).
* ``ablation``: RealNVP on digits with Pyro's affine coupling or ours
  (:class:`~pyro_genmodels.flows.AffineCoupling`), halves or alternating masks; the
  spline flow with Pyro's rational-linear coupling (the former default).
* ``curve``: train and test NLL of the two spline couplings on digits every 200
  steps (one seed): the rational-quadratic flow's best test NLL comes early, then
  it overfits.
* ``tabular``: test NLL per dimension on wine and breast cancer with validation
  and early stopping, against the Gaussian and a KDE (``flows_tabular.py``).
* ``vae``: IW-K test NLL of a VAE with an amortized IAF posterior and of a
  diagonal-Gaussian VAE on binarized mnist5k.

``nll_vs_peer`` is ``nll - nll_peer`` (nats; NLLs can be negative, so a difference).
A run of some sections or ``--models`` replaces only its own rows of the CSV.

Usage::

    python benchmarks/flows.py                      # everything (about an hour, 2 cores)
    python benchmarks/flows.py --sections speed     # step-time ratios (3 minutes)
    python benchmarks/flows.py --sections mnist5k --models maf MAF --mnist5k-seeds 3
    python benchmarks/flows.py --quick              # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial
from pathlib import Path

import pandas as pd
import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.models import VAE, FlowDensity

RESULTS = Path(__file__).resolve().parent / "results" / "flows.csv"
FLOORS = {"two_moons": 2.39, "8gaussians": 2.834, "checkerboard": math.log(32)}
ALPHA = 0.01


# ---------------------------------------------------------------- models (log_prob fns)


def ours(dim, flow, layers, hidden, **kw):
    m = FlowDensity(dim, flow, num_layers=layers, hidden_dims=[hidden, hidden], **kw)
    return m, m.log_prob


def zuko_flow(kind, dim, layers, hidden):
    import zuko

    cls = {"MAF": zuko.flows.MAF, "NSF": zuko.flows.NSF, "RealNVP": zuko.flows.RealNVP}[kind]
    m = cls(dim, transforms=layers, hidden_features=(hidden, hidden))
    return m, lambda x: m().log_prob(x)


def normflows_realnvp(dim, layers, hidden):
    import normflows as nf

    blocks = []
    for _ in range(layers):
        net = nf.nets.MLP([dim // 2, hidden, hidden, 2 * (dim - dim // 2)], init_zeros=True)
        blocks += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(dim, mode="swap")]
    m = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), blocks)
    return m, m.log_prob


def normflows_glow(layers, hidden):
    """Single-scale Glow on 8x8 digits: squeeze to (4, 4, 4), then Glow blocks."""
    import normflows as nf

    blocks = [
        nf.flows.GlowBlock(4, hidden, split_mode="channel", scale=True) for _ in range(layers)
    ]
    m = nf.NormalizingFlow(
        nf.distributions.DiagGaussian((4, 4, 4), trainable=False), blocks + [nf.flows.Squeeze()]
    )
    return m, lambda x: m.log_prob(x.reshape(-1, 1, 8, 8))


# ---------------------------------------------------------------- training loop


def logit_preprocess(x, levels=17):
    """``z = logit(a + (1 - 2a) x / levels)`` and ``log|dz/dx|`` per row (for peers)."""
    p = ALPHA + (1 - 2 * ALPHA) * x / levels
    ldj = (math.log((1 - 2 * ALPHA) / levels) - torch.log(p) - torch.log1p(-p)).sum(-1)
    return torch.logit(p), ldj


def train(module, log_prob, x, x_test, steps, batch, pre=None, cosine=False):
    """Adam on minibatch ``-log p`` (lr 1e-3, cosine-annealed to 0 over ``steps`` with
    ``cosine``); returns test NLL (nats) and seconds per step."""
    pyro.clear_param_store()
    gen = torch.Generator().manual_seed(0)
    if pre is not None:
        log_prob(pre(x[:batch])[0])  # lazy init (ActNorm) before the optimizer sees params
    else:
        log_prob(x[:batch])
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    start = time.perf_counter()
    for _ in range(steps):
        xb = x[torch.randint(len(x), (batch,), generator=gen)]
        if pre is not None:
            zb, ldj = pre(xb)
            loss = -(log_prob(zb) + ldj).mean()
        else:
            loss = -log_prob(xb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    per_step = (time.perf_counter() - start) / steps
    module.eval()
    with torch.no_grad():
        if pre is not None:
            z, ldj = pre(x_test)
            nll = -(log_prob(z) + ldj).mean().item()
        else:
            nll = -log_prob(x_test).mean().item()
    return nll, per_step


def _peers_available():
    try:
        import normflows  # noqa: F401
        import zuko  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- sections


def toy_candidates(layers, hidden, peers, best):
    """(impl, model, make, peer) on 2-D data; ``spline-ar-best`` last."""
    b_layers, b_hidden, b_bins, _ = best
    best_kw = dict(kind="autoregressive", bound=5.0, count_bins=b_bins)
    cands = [
        ("ours", "realnvp", lambda: ours(2, "realnvp", layers, hidden), "zuko:RealNVP"),
        ("ours", "maf", lambda: ours(2, "maf", layers, hidden), "zuko:MAF"),
        (
            "ours",
            "spline-ar",
            lambda: ours(2, "spline", layers, hidden, kind="autoregressive", bound=5.0),
            "zuko:NSF",
        ),
    ]
    if peers:
        cands += [
            ("zuko", "RealNVP", lambda: zuko_flow("RealNVP", 2, layers, hidden), None),
            ("zuko", "MAF", lambda: zuko_flow("MAF", 2, layers, hidden), None),
            ("zuko", "NSF", lambda: zuko_flow("NSF", 2, layers, hidden), None),
            ("normflows", "RealNVP", lambda: normflows_realnvp(2, layers, hidden), None),
        ]
    cands.append(
        (
            "ours",
            "spline-ar-best",
            lambda: ours(2, "spline", b_layers, b_hidden, **best_kw),
            None,
        )
    )
    return cands


def toy_rows(steps, layers, hidden, n, peers, best, seeds, models=None):
    """Every candidate at the shared budget (mean over ``seeds`` runs), then
    ``spline-ar-best``: the spline flow at ``best = (layers, hidden, bins, steps)``
    with a cosine schedule, one run (the best flow we know of, for the gap to the
    floor)."""
    rows = []
    b_layers, b_hidden, _, b_steps = best
    for toy, floor in FLOORS.items():
        x = pgm.data.toy2d(toy, n=n, seed=0)
        x_test = pgm.data.toy2d(toy, n=n // 4, seed=1)
        cands = toy_candidates(layers, hidden, peers, best)
        for impl, model, make, peer in cands:
            if models is not None and model not in models:
                continue
            is_best = model == "spline-ar-best"
            n_steps = b_steps if is_best else steps
            run = dict(steps=n_steps, batch=256, seeds=1 if is_best else seeds, cosine=is_best)
            nll, sd, sec = fit_seeds(make, x, x_test, **run)
            rows.append(
                dict(
                    section="toy",
                    dataset=toy,
                    impl=impl,
                    model=model,
                    peer=peer,
                    layers=b_layers if is_best else layers,
                    hidden=b_hidden if is_best else hidden,
                    steps=n_steps,
                    seeds=run["seeds"],
                    test_nll_nats=nll,
                    nll_sd=sd,
                    floor=floor,
                    gap=nll - floor,
                    sec_per_step=sec,
                )
            )
            print(
                f"toy {toy:>12} {impl:>9} {model:>9}: NLL {nll:.3f} (sd {sd:.3f}, floor "
                f"{floor:.3f}) {1e3 * sec:.1f} ms/step",
                flush=True,
            )
    return rows


def fit_seeds(make, x, x_test, steps, batch, seeds, pre=None, cosine=False):
    """``train`` a fresh ``make()`` per seed: mean and sd of the test NLLs, and the
    fastest seconds per step."""
    nlls, secs = [], []
    for seed in range(seeds):
        torch.manual_seed(seed)
        module, lp = make()
        nll, sec = train(module, lp, x, x_test, steps, batch, pre=pre, cosine=cosine)
        nlls.append(nll)
        secs.append(sec)
    sd = float(torch.tensor(nlls).std()) if seeds > 1 else float("nan")
    return sum(nlls) / seeds, sd, min(secs)


IMAGES = {"digits": ((1, 8, 8), 17, 2), "mnist5k": ((1, 28, 28), 256, 2)}


def image_candidates(dim, shape, levels, scales, layers, hidden, peers):
    """(impl, model, make, peer) for every builder on dequantized images, logit
    preprocessing throughout (peers get it with its log-det added)."""
    common = dict(preprocess="logit", alpha=ALPHA, levels=levels)
    glow_kw = dict(image_shape=shape, num_scales=scales, **common)
    spline_ar = dict(bound=5.0, kind="autoregressive", **common)
    spline_hidden = min(hidden, 256)  # the spline hypernet's last layer is 23 D / 2 wide
    cands = [
        ("ours", "nice", lambda: ours(dim, "nice", layers, hidden, **common), None),
        ("ours", "realnvp", lambda: ours(dim, "realnvp", layers, hidden, **common), "zuko:RealNVP"),
        ("ours", "maf", lambda: ours(dim, "maf", layers, hidden, **common), "zuko:MAF"),
        (
            "ours",
            "spline",
            lambda: ours(dim, "spline", layers, spline_hidden, bound=5.0, **common),
            None,
        ),
        ("ours", "glow", lambda: ours(dim, "glow", layers, 32, **glow_kw), None),
    ]
    if dim == 64:  # on mnist5k a MADE needs >= 784 hidden units: 18k spline outputs each
        cands += [
            (
                "ours",
                "spline-ar",
                lambda: ours(dim, "spline", layers, hidden, **spline_ar),
                "zuko:NSF",
            ),
            ("ours", "glow-1level", lambda: _glow1(layers), "normflows:Glow"),
        ]
    if peers:
        cands += [
            ("zuko", "RealNVP", lambda: zuko_flow("RealNVP", dim, layers, hidden), None),
            ("zuko", "MAF", lambda: zuko_flow("MAF", dim, layers, hidden), None),
        ]
    if peers and dim == 64:
        cands += [
            ("zuko", "NSF", lambda: zuko_flow("NSF", dim, layers, hidden), None),
            ("normflows", "RealNVP", lambda: normflows_realnvp(dim, layers, hidden), None),
            ("normflows", "Glow", lambda: normflows_glow(layers, 32), None),
        ]
    return cands


def image_rows(dataset, steps, layers, hidden, peers, seeds, models=None, cands=None):
    """Test NLL of every builder (or of ``models`` only; or of ``cands``, the
    ``ablation`` section), mean over ``seeds`` training runs (``nll_sd`` their
    standard deviation), in the pixel space ``[0, levels)^D``."""
    shape, levels, scales = IMAGES[dataset]
    data = pgm.data.load(dataset, binarize=False)
    x, x_test = data.train * levels, data.test * levels
    dim = x.shape[1]
    pre = partial(logit_preprocess, levels=levels)
    rows = []
    section = "images" if cands is None else "ablation"
    if cands is None:
        cands = image_candidates(dim, shape, levels, scales, layers, hidden, peers)
    for impl, model, make, peer in cands:
        if models is not None and model not in models:
            continue
        peer_pre = None if impl == "ours" else pre
        nll, sd, sec = fit_seeds(make, x, x_test, steps, 128, seeds, pre=peer_pre)
        bpd = nll / (dim * math.log(2))
        rows.append(
            dict(
                section=section,
                dataset=dataset,
                impl=impl,
                model=model,
                peer=peer,
                layers=layers,
                hidden=hidden,
                steps=steps,
                seeds=seeds,
                test_nll_nats=nll,
                nll_sd=sd,
                bits_per_dim=bpd,
                sec_per_step=sec,
            )
        )
        print(
            f"{dataset} {impl:>9} {model:>11}: NLL {nll:.2f} (sd {sd:.2f}) nats = {bpd:.3f} "
            f"bits/dim, {1e3 * sec:.1f} ms/step",
            flush=True,
        )
    return rows


def _glow1(layers):
    """Our Glow with one level (squeeze + steps), the same shape as the normflows peer."""
    m = FlowDensity(
        64,
        "glow",
        num_layers=layers,
        hidden_dims=[32],
        image_shape=(1, 8, 8),
        levels=17,
        preprocess="logit",
        alpha=ALPHA,
    )
    m.flow = pgm.flows.glow(
        64, num_layers=layers, hidden_dims=[32], image_shape=(1, 8, 8), num_scales=1
    )
    return m, m.log_prob


def vae_rows(epochs, num_samples, test_points, z_dim, hidden, layers):
    data = pgm.data.load("mnist5k", binarize=True)
    rows = []
    for name, guide_flow in (("vae-diag", None), ("vae-iaf", "iaf")):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(
            784,
            z_dim,
            hidden_dims=(hidden, hidden),
            guide_flow=guide_flow,
            guide_flow_layers=layers,
        )
        start = time.perf_counter()
        pgm.fit(
            vae.model,
            vae.guide,
            data.train,
            loss=pyro.infer.Trace_ELBO(),
            optim=pgm.optim.Adam({"lr": 1e-3}),
            epochs=epochs,
            batch_size=100,
            progress=False,
        )
        sec = time.perf_counter() - start
        vae.eval()
        test = data.test[:test_points]
        with torch.no_grad():
            ll = pgm.infer.log_likelihood(vae.model, vae.guide, test, num_samples=num_samples)
            elbo = pyro.infer.Trace_ELBO(num_particles=10, vectorize_particles=True).loss(
                vae.model, vae.guide, test
            ) / len(test)
        nll = -ll.mean().item()
        rows.append(
            dict(
                section="vae",
                dataset="mnist5k",
                impl="ours",
                model=name,
                layers=layers,
                hidden=hidden,
                steps=epochs * 40,
                test_nll_nats=nll,
                neg_elbo=elbo,
                estimator=f"IW-{num_samples}, {test_points} test",
                train_seconds=sec,
            )
        )
        print(f"vae {name}: -ELBO {elbo:.2f}, IW-{num_samples} NLL {nll:.2f} nats", flush=True)
    return rows


def _pyro_realnvp(dim, layers, hidden, mask):
    """RealNVP from Pyro's ``AffineCoupling`` (sampling direction, hard clamp)."""
    from pyro.distributions.transforms import AffineCoupling

    from pyro_genmodels.flows._assembly import compose, couplings, dense

    def layer(d):
        return [AffineCoupling(d, dense(d, None, [hidden, hidden], [dim - d, dim - d]))]

    return compose(couplings(dim, layers, mask, layer), None)


def _pyro_spline(dim, layers, hidden, count_bins=8, bound=5.0):
    """The spline builder's former default: Pyro's rational-linear ``SplineCoupling``
    (a learnable spline on ``x_1`` too), alternating masks."""
    from pyro.distributions.transforms import SplineCoupling

    from pyro_genmodels.flows._assembly import compose, couplings, dense

    def layer(d):
        m, k = dim - d, count_bins
        net = dense(d, None, [hidden, hidden], [m * k, m * k, m * (k - 1), m * k])
        return [SplineCoupling(dim, d, net, count_bins, bound)]

    return compose(couplings(dim, layers, "alternate", layer), None)


def ablation_rows(steps, layers, hidden, seeds, models=None):
    """On dequantized digits: RealNVP with Pyro's affine coupling or ours, halves or
    alternating masks (what closed the gap to zuko's RealNVP); the spline flow with
    Pyro's rational-linear coupling (the former default) or our rational-quadratic
    one (the ``images`` section's ``spline`` row)."""
    levels = IMAGES["digits"][1]
    common = dict(preprocess="logit", alpha=ALPHA, levels=levels)

    def make(coupling, mask):
        m, lp = ours(64, "realnvp", layers, hidden, mask=mask, **common)
        if coupling == "pyro":
            m.flow = _pyro_realnvp(64, layers, hidden, mask)
        return m, lp

    def make_spline():
        m, lp = ours(64, "spline", layers, hidden, bound=5.0, **common)
        m.flow = _pyro_spline(64, layers, hidden)
        return m, lp

    cands = [
        ("ours", f"realnvp-{c}-coupling-{mask}", partial(make, c, mask), None)
        for c in ("pyro", "ours")
        for mask in pgm.flows.MASKS
    ]
    cands.append(("ours", "spline-pyro-linear-coupling-alternate", make_spline, None))
    return image_rows("digits", steps, layers, hidden, False, seeds, models, cands=cands)


def curve_rows(steps, layers, hidden, every=200):
    """Learning curves of the spline couplings on digits, one seed: train (first 500
    images) and test NLL every ``every`` Adam steps, for our rational-quadratic layer
    and Pyro's rational-linear one (the former default): where the fixed budget of
    the other rows stops each of them."""
    levels = IMAGES["digits"][1]
    data = pgm.data.load("digits", binarize=False)
    x, x_test = data.train * levels, data.test * levels
    common = dict(preprocess="logit", alpha=ALPHA, levels=levels)
    rows = []
    for name in ("spline", "spline-pyro-linear-coupling-alternate"):
        torch.manual_seed(0)
        m = FlowDensity(
            64, "spline", num_layers=layers, hidden_dims=[hidden] * 2, bound=5.0, **common
        )
        if name != "spline":
            m.flow = _pyro_spline(64, layers, hidden)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        for step in range(steps + 1):
            if step % every == 0:
                with torch.no_grad():
                    train_nll = -m.log_prob(x[:500]).mean().item()
                    nll = -m.log_prob(x_test).mean().item()
                rows.append(
                    dict(
                        section="curve",
                        dataset="digits",
                        impl="ours",
                        model=f"{name}@{step}",
                        layers=layers,
                        hidden=hidden,
                        steps=step,
                        seeds=1,
                        test_nll_nats=nll,
                        train_nll_nats=train_nll,
                    )
                )
                print(
                    f"curve {name} step {step}: train {train_nll:.1f}, test {nll:.1f}", flush=True
                )
            if step == steps:
                break
            xb = x[torch.randint(len(x), (128,), generator=gen)]
            loss = -m.log_prob(xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return rows


def _stepper(make, xb, pre):
    """One Adam step on ``-log p(xb)`` of a fresh ``make()``, as a closure."""
    torch.manual_seed(0)
    module, lp = make()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step():
        if pre is None:
            loss = -lp(xb.clone()).mean()
        else:
            z, ldj = pre(xb)
            loss = -(lp(z) + ldj).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (and ActNorm's data-dependent initialization)
        step()
    return step


def speed_rows(cfg, peers, repeats=7, models=None):
    """Seconds per training step of ours over the peer, the two interleaved on one
    minibatch: ``repeats`` rounds of ``n`` steps each, the median of the per-round
    ratios. Whole-run ``sec_per_step`` of the other sections is measured once per
    run and moves with the machine's load; these ratios are the step-time figures."""
    if not peers:
        return []
    toy_steps, layers, hidden, _, best = cfg["toy"]
    x2 = pgm.data.toy2d("two_moons", n=256, seed=0)
    setups = [("two_moons", toy_candidates(layers, hidden, peers, best), x2, None, 50)]
    for dataset in ("digits", "mnist5k"):
        shape, levels, scales = IMAGES[dataset]
        _, i_layers, i_hidden = cfg[dataset]
        xb = pgm.data.load(dataset, binarize=False).train[:128] * levels
        cands = image_candidates(xb.shape[1], shape, levels, scales, i_layers, i_hidden, peers)
        setups.append((dataset, cands, xb, partial(logit_preprocess, levels=levels), 20))
    rows = []
    for dataset, cands, xb, pre, n in setups:
        by_name = {(impl, model): make for impl, model, make, _ in cands}
        for impl, model, make, peer in cands:
            if impl != "ours" or not isinstance(peer, str) or tuple(peer.split(":")) not in by_name:
                continue
            if models is not None and model not in models:
                continue
            steps = {
                "ours": _stepper(make, xb, None),
                "peer": _stepper(by_name[tuple(peer.split(":"))], xb, pre),
            }
            secs = {"ours": [], "peer": []}
            for _ in range(repeats):
                for who, step in steps.items():
                    start = time.perf_counter()
                    for _ in range(n):
                        step()
                    secs[who].append((time.perf_counter() - start) / n)
            ratios = sorted(o / p for o, p in zip(secs["ours"], secs["peer"], strict=True))
            ratio = ratios[len(ratios) // 2]
            rows.append(
                dict(
                    section="speed",
                    dataset=dataset,
                    impl="ours",
                    model=model,
                    peer=peer,
                    sec_per_step=min(secs["ours"]),
                    peer_sec_per_step=min(secs["peer"]),
                    time_ratio=ratio,
                )
            )
            print(f"speed {dataset:>9} {model:>11} / {peer}: {ratio:.3f}", flush=True)
    return rows


def add_ratios(df):
    """``nll_vs_peer`` and whole-run ``time_ratio`` of every row naming a peer in its
    section (the speed section's interleaved ratios are kept)."""
    speed = df.section == "speed"
    df["nll_vs_peer"] = float("nan")
    df.loc[~speed, "time_ratio"] = float("nan")
    for i, row in df[~speed].iterrows():
        if not isinstance(row.get("peer"), str):
            continue
        impl, model = row["peer"].split(":")
        match = df[
            (df.section == row.section)
            & (df.dataset == row.dataset)
            & (df.impl == impl)
            & (df.model == model)
        ]
        if len(match):
            peer = match.iloc[0]
            df.loc[i, "nll_vs_peer"] = row.test_nll_nats - peer.test_nll_nats
            df.loc[i, "time_ratio"] = row.sec_per_step / peer.sec_per_step
    return df


SECTIONS = ("toy", "digits", "mnist5k", "vae", "speed", "ablation", "curve", "tabular")


KEY = ["section", "dataset", "impl", "model"]


def merge(df):
    """``df`` with the rows of earlier runs that it does not replace (same ``KEY``)."""
    if not RESULTS.exists():
        return df
    old = pd.read_csv(RESULTS)
    old = old[old.section != "digits"]  # the layout before the images section
    ran = set(df[KEY].itertuples(index=False, name=None))
    keep = [row not in ran for row in old[KEY].itertuples(index=False, name=None)]
    return pd.concat([old[keep], df], ignore_index=True)


def main(quick=False, sections=SECTIONS, seeds=3, image_seeds=None, models=None):
    torch.set_num_threads(1)
    peers = _peers_available()
    if not peers:
        print("zuko/normflows not installed (pip install -e .[bench]): peer rows skipped")
    if quick:
        cfg = dict(
            toy=(5, 2, 16, 1000, (2, 16, 4, 5)),
            digits=(3, 2, 64),
            mnist5k=(2, 1, 784),
            vae=(1, 4, 20, 4, 16, 1),
        )
        seeds = 1
    else:
        cfg = dict(
            toy=(1500, 8, 64, 20000, (8, 64, 8, 15000)),
            digits=(800, 4, 128),
            mnist5k=(800, 4, 1024),
            vae=(10, 5000, 200, 32, 300, 4),
        )
    rows = []
    if "toy" in sections:
        steps, layers, hidden, n, best = cfg["toy"]
        rows += toy_rows(steps, layers, hidden, n, peers, best, seeds, models)
    for dataset in ("digits", "mnist5k"):
        if dataset in sections:
            n_seeds = (image_seeds or {}).get(dataset, seeds if dataset == "digits" else 1)
            rows += image_rows(dataset, *cfg[dataset], peers, n_seeds, models)
    if "vae" in sections:
        rows += vae_rows(*cfg["vae"])
    if "ablation" in sections:
        rows += ablation_rows(*cfg["digits"], seeds, models)
    if "speed" in sections:
        rows += speed_rows(cfg, peers, repeats=2 if quick else 7, models=models)
    if "curve" in sections:
        steps, layers, hidden = cfg["digits"]
        rows += curve_rows(steps, layers, hidden, every=max(1, steps // 4))
    if "tabular" in sections:
        from flows_tabular import tabular_rows  # benchmarks/ is the script's folder

        rows += tabular_rows(quick, seeds)
    df = pd.DataFrame(rows)
    if not quick:
        df = merge(df)
    df = add_ratios(df)
    cols = [
        "section",
        "dataset",
        "impl",
        "model",
        "test_nll_nats",
        "nll_sd",
        "gap",
        "bits_per_dim",
        "sec_per_step",
        "nll_vs_peer",
        "time_ratio",
        "neg_elbo",
        "train_nll_nats",
    ]
    print(df[[c for c in cols if c in df]].to_string(index=False, float_format="{:.4g}".format))
    if not quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(RESULTS, index=False)
    return df


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--seeds", type=int, default=3, help="runs per toy and digits model")
    parser.add_argument("--mnist5k-seeds", type=int, default=1, help="training runs per model")
    parser.add_argument("--models", nargs="+", default=None, help="run these models only")
    args = parser.parse_args()
    image_seeds = {"mnist5k": args.mnist5k_seeds}
    main(args.quick, tuple(args.sections), args.seeds, image_seeds, args.models)
