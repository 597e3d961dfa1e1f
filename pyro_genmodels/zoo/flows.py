"""Zoo entries of the flow family: exact densities of dequantized images, scored
in the original pixel space ``[0, L)^D`` (``L = 17`` for digits, 256 for
mnist5k), so bits/dim are comparable with the literature, or of a user's
continuous data (values in ``[0, 1]`` through a logit, real values as they are);
and a VAE with an IAF posterior (importance-sampled)."""

from __future__ import annotations

import pyro
import torch

from pyro_genmodels.data import PIXEL_LEVELS, Dataset
from pyro_genmodels.parallel import map_rows
from pyro_genmodels.zoo import Setup, ZooEntry, likelihood_for, register
from pyro_genmodels.zoo.vae import BUDGET as VAE_BUDGET

LEVELS = PIXEL_LEVELS  # pixel values of the bundled image datasets
#: Training budget of the family (exact likelihoods; Glow's steps cost more).
BUDGET = {"epochs": 60, "lr": 1e-3, "batch_size": 128}


def _flow(
    data: Dataset, *, flow: str = "realnvp", num_layers: int = 4, hidden: int = 128, **kwargs
) -> Setup:
    from pyro_genmodels import flows as pgm_flows
    from pyro_genmodels.models import FlowDensity

    levels = LEVELS.get(data.name)
    if data.binarized:
        raise ValueError("flow zoo entries need continuous data, got binarized data")
    bounded = data.support == "unit_interval"  # a logit maps [0, 1] onto the real line
    if pgm_flows.check_flow("flow", flow, pgm_flows.INVERTIBLE).images:
        kwargs.setdefault("image_shape", data.image_shape)
    model = FlowDensity(
        data.num_dims,
        flow,
        num_layers=num_layers,
        hidden_dims=[hidden, hidden],
        preprocess="logit" if bounded else None,
        alpha=0.01,
        levels=levels if bounded else None,
        **kwargs,
    )
    scale = 1.0 if levels is None or not bounded else float(levels)
    train, test = data.train * scale, data.test * scale

    def score(num_samples: int) -> dict:
        nll = -map_rows(model.log_prob, test).mean().item()  # each rank scores its share
        space = f"pixel space [0, {int(scale)})" if bounded else "real values"
        return {"test_nll_nats": nll, "estimator": f"exact, {space}"}

    def sample(n: int) -> torch.Tensor:
        return model.sample(n) / scale

    return Setup(
        model,
        model.model,
        model.guide,
        train,
        (test,),
        pyro.infer.Trace_ELBO(),
        sample,
        note="exact log p(x)",
        score=score,
    )


def _iaf_vae(data: Dataset, *, z_dim: int = 8, hidden: int = 256, layers: int = 2) -> Setup:
    from pyro_genmodels.models import VAE

    vae = VAE(
        data.num_dims,
        z_dim,
        hidden_dims=(hidden, hidden),
        likelihood=likelihood_for(data),
        guide_flow="iaf",
        guide_flow_layers=layers,
    )
    # vae.loss(): Trace_ELBO, the guide's flow has no closed-form KL
    return Setup(vae, vae.model, vae.guide, data.train, (data.test,), vae.loss(), vae.sample)


for _entry in [
    ZooEntry(
        "flow-nice",
        "flow",
        "NICE, 4 additive couplings + scaling",
        _flow,
        {"flow": "nice"},
        binarize=False,
        budget=BUDGET,
    ),
    ZooEntry(
        "flow-realnvp",
        "flow",
        "Real NVP, 4 affine couplings",
        _flow,
        {"flow": "realnvp"},
        binarize=False,
        budget=BUDGET,
    ),
    ZooEntry(
        "flow-maf",
        "flow",
        "MAF, 4 MADE layers (density in one pass)",
        _flow,
        {"flow": "maf"},
        binarize=False,
        budget=BUDGET,
    ),
    ZooEntry(
        "flow-glow",
        "flow",
        "Glow, multiscale, 2 levels x 2 steps",
        _flow,
        {"flow": "glow", "num_layers": 2, "hidden": 32},
        binarize=False,
        budget={**BUDGET, "epochs": 40},
    ),
    ZooEntry(
        "vae-iaf",
        "flow",
        "VAE with an amortized IAF posterior (2 layers)",
        _iaf_vae,
        budget=VAE_BUDGET,  # its min_steps: digits -0.89 / -1.24 nats (validation) against 60
    ),
]:
    register(_entry)
