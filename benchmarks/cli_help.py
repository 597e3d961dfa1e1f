"""Wall time of ``python -m pyro_genmodels --help`` (the parser is built without torch).

Times the command in fresh processes, interleaving the checkouts given (``--compare`` adds
another checkout of the package, e.g. the main branch, as a baseline), and reports the
median and range of the wall and CPU seconds per checkout. Writes
``benchmarks/results/cli_help.csv``.

Usage::

    python benchmarks/cli_help.py                              # this checkout, 5 runs
    python benchmarks/cli_help.py --compare /path/to/main --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _results import RESULTS, save

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "pyro_genmodels", "--help"]


def once(root: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``--help`` with ``root`` on the path."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(COMMAND, env=env, cwd=root, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per checkout")
    parser.add_argument("--compare", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    roots = {"this checkout": ROOT}
    if args.compare is not None:
        roots = {"baseline": args.compare.resolve(), **roots}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in roots}
    for root in roots.values():  # one untimed run each: the file system's caches warm
        once(root)
    for _ in range(args.runs):
        for name, root in roots.items():
            times[name].append(once(root))
    rows = []
    for name, runs in times.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        rows.append(
            dict(
                checkout=name,
                path=str(roots[name]),
                runs=len(runs),
                wall_median_s=statistics.median(wall),
                wall_min_s=min(wall),
                wall_max_s=max(wall),
                cpu_median_s=statistics.median(cpu),
                load_average=os.getloadavg()[0],
                machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
            )
        )
        print(
            f"{name:14s} wall {statistics.median(wall):5.2f} s (range {min(wall):.2f}-"
            f"{max(wall):.2f}), CPU {statistics.median(cpu):5.2f} s, {len(runs)} runs",
            flush=True,
        )
    save(pd.DataFrame(rows), RESULTS / "cli_help.csv")


if __name__ == "__main__":
    main()
