"""CPU time of the quick zoo on a quiet machine and beside two busy processes.

torch's intra-op workers spin while they wait; for the small matrices of the zoo's
models a second thread barely helps, and on a machine shared with other work its
spinning multiplies the CPU time a run takes (the default zoo took 53 min of CPU over
2 h of wall time beside other jobs on 2 cores, against 6.8 min quiet). ``fit`` trains
small models with one thread, and the CLI runs everything else on one thread too (data,
pretraining, scoring, the report), keeping torch's count for large models' steps
(:mod:`pyro_genmodels.training.threads`).
This script runs ``python -m pyro_genmodels zoo --data digits --quick`` in a
subprocess, with the thread count chosen from the work (the default) and with torch's
own count (``--threads`` set to the number of cores, the behaviour before), each once on
the machine as it is and once beside two busy processes (pure-Python loops, one per
core), and writes the CPU and wall seconds to ``benchmarks/results/threads.csv``. Run it
on an otherwise quiet machine: the figure of merit is CPU time beside the busy
processes over quiet CPU time (target: at most 1.3).

Usage::

    PYTHONPATH=. python benchmarks/threads.py
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import pandas as pd
from _results import RESULTS, save

BUSY = "while True: pass"


def run_zoo(threads: str | None, busy: int) -> dict[str, float]:
    """CPU and wall seconds of one quick zoo in a child, beside ``busy`` spinning children."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "pyro_genmodels", "zoo", "--data", "digits",
                       "--quick", "--quiet", "--out", out]  # fmt: skip
            if threads is not None:
                command += ["--threads", threads]
            subprocess.run(command, check=True, env=env, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_seconds": cpu, "wall_seconds": wall}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(RESULTS / "threads.csv"))
    p.add_argument("--variants", nargs="+", default=["chosen", "torch"],
                   choices=["chosen", "torch"],
                   help="which runs (the others' rows are kept)")  # fmt: skip
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    variants = {
        "chosen": ("chosen from the work", None),
        "torch": (f"{cores} (torch's)", str(cores)),
    }
    rows = []
    if os.path.exists(args.out):
        labels = {variants[v][0] for v in args.variants}
        kept = pd.read_csv(args.out)
        rows = kept[~kept["threads"].isin(labels)].to_dict("records")
    for label, threads in (variants[v] for v in args.variants):
        quiet = run_zoo(threads, busy=0)
        loaded = run_zoo(threads, busy=2)
        for beside, result in (("none", quiet), ("two busy processes", loaded)):
            rows.append({"threads": label, "beside": beside, **result})
        ratio = loaded["cpu_seconds"] / quiet["cpu_seconds"]
        rows.append({"threads": label, "beside": "CPU ratio, busy / quiet", "cpu_seconds": ratio,
                     "wall_seconds": loaded["wall_seconds"] / quiet["wall_seconds"]})  # fmt: skip
        print(f"threads {label}: quiet {quiet}, beside two busy processes {loaded}, "
              f"CPU ratio {ratio:.2f}")  # fmt: skip
    table = pd.DataFrame(rows)
    save(table, args.out)
    return table


if __name__ == "__main__":
    main()
