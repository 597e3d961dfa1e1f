"""Resume is exact for every entry of the zoo registry: 2 + 3 epochs equal 5 uninterrupted.

The test iterates :data:`pyro_genmodels.zoo.ZOO`, so a family registered later
is covered without an edit here. Each entry is built small (its builder's
size options, when it has them) on a few dozen digits; the resumed run is
built from another seed, so every parameter, buffer (ActNorm's data-dependent
initialization, BatchNorm statistics), optimizer moment and loss state (a
critic's optimizer, persistent chains) must come from the checkpoint.
"""

from __future__ import annotations

import pytest
from zoo_helpers import assert_same_training, build_small, train

from pyro_genmodels import zoo


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_resume_is_exact_for_every_zoo_entry(name, tmp_path):
    reference = build_small(name)
    full = train(reference, 5)
    train(build_small(name), 2, checkpoint_dir=tmp_path)
    resumed = build_small(name, seed=1)
    history = train(resumed, 5, checkpoint_dir=tmp_path, resume=True)
    assert_same_training(f"{name} after resume", reference.module, resumed.module, full, history)
