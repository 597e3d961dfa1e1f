"""Peak memory of the README's Boltzmann machine block, as written and with ``az.from_pyro``.

The block (README, "Boltzmann machines") trains a 784-100 RBM on mnist5k by PCD, scores
it by AIS and draws 1000 block-Gibbs sweeps of 10 chains, then converts them to ArviZ.
Each variant runs in a fresh subprocess, which reports its own peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``) at the end:

* ``as written``: the README's code, converting with ``pgm.diagnostics.from_mcmc(mcmc)``;
* ``az.from_pyro``: the same code with ``az.from_pyro(mcmc)`` in its place (the README's
  conversion before ``from_mcmc``), which runs Pyro's ``mcmc.diagnostics()`` first.

Writes ``benchmarks/results/readme_memory.csv``. The README's examples must run within
2 GB.

Usage::

    python benchmarks/readme_memory.py            # the block as written (a few minutes)
    python benchmarks/readme_memory.py --quick    # 1 epoch, 100 AIS temperatures (smoke run)
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
PRELUDE = "import arviz as az\n"  # the block imports the rest itself
REPORT = (
    "\nimport resource\n"
    "print('PEAK_RSS_MIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
)
CONVERSION = "pgm.diagnostics.from_mcmc(mcmc)"
QUICK = {"epochs=5,": "epochs=1,", "num_betas=1000": "num_betas=100"}


def readme_block() -> str:
    """The first python block of the README's Boltzmann machine section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Boltzmann machines")[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    if match is None or CONVERSION not in match.group(1):
        raise SystemExit(f"the README's Boltzmann block no longer converts with {CONVERSION}")
    return match.group(1)


def peak_rss_mib(code: str) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of ``code`` run in a fresh Python process."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + REPORT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the block failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_RSS_MIB"))
    return float(line.split()[1]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 100 AIS temperatures")
    args = parser.parse_args()
    block = readme_block()
    if args.quick:
        for old, new in QUICK.items():
            block = block.replace(old, new)
    variants = {
        "as written (pgm.diagnostics.from_mcmc)": block,
        "az.from_pyro(mcmc)": block.replace(CONVERSION, "az.from_pyro(mcmc)"),
    }
    rows = []
    for name, code in variants.items():
        mib, seconds = peak_rss_mib(code)
        rows.append(
            dict(
                block="README Boltzmann machines",
                variant=name,
                budget="quick" if args.quick else "as written",
                peak_rss_mib=mib,
                seconds=seconds,
                machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
            )
        )
        print(f"{name:40s} peak RSS {mib:8.0f} MiB  {seconds:6.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        frame.to_csv(RESULTS / "readme_memory.csv", index=False)
        print(f"wrote {RESULTS / 'readme_memory.csv'}")


if __name__ == "__main__":
    main()
