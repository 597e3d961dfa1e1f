"""Where every benchmark script writes its table: ``benchmarks/results/<name>.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"


def save(table: pd.DataFrame, out: str | Path) -> None:
    """Write ``table`` to ``out`` (its folder created) and say so."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")
