"""Where every benchmark script writes its table: ``benchmarks/results/<name>.csv``."""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd
import pyro
import torch

RESULTS = Path(__file__).parent / "results"


def save(table: pd.DataFrame, out: str | Path) -> None:
    """Write ``table`` to ``out`` (its folder created) and say so."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")


def stamp(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with this process's torch, Pyro and machine (its thread count) in the rows
    that have none: the rows measured now. Rows kept from an earlier run keep the record of
    the run that measured them."""
    now = {
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    table = table.copy()
    for key, value in now.items():
        table[key] = table[key].fillna(value) if key in table else value
    return table
