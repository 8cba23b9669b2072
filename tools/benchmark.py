#!/usr/bin/env python3
"""Time fit + predict of each method for one unseen device, the way a user runs it.

For every P-X6 target: build the task (k = 3 samples + the method's probes), then time
`fit` + `predict(all 15,625 cells)`, `--repeats` times, with torch pinned to `--threads`
threads. Writes one row per (method, target, repeat) and the environment to a JSON file that the
docs load; prints the medians.

HELP meta-trains one model per set of training devices on its first fit and caches it: that first fit is timed
apart ("first_fits", with the meta-training time each model recorded when it was trained), and the repeats after it
are the adaptation a user waits for. maplex caches nothing: each of its fits starts from the measurements alone.

Then, with `--table`, times the whole P-X6 table at k (10 seeds, every method given, two worker processes) the
way `maplex evaluate` runs it, from a cold start of the runner (HELP's models come from the cache by then).

    python tools/benchmark.py --threads 2 --repeats 3 --table --out results/benchmark.json
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from maplex import __version__, data, evaluation, nb201
from maplex.core import atomic_write


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(evaluation.ORDER), help="default: every row of the P-X6 table")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method and target (default: 3)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--table", action="store_true", help="also time the full P-X6 table at k (10 seeds, 2 workers)")
    ap.add_argument("--out", type=Path, default=Path("results/benchmark.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table, devices = data.load_nb201(), data.load_devices()
    cells = np.arange(nb201.N_ARCHS)
    rows, first = [], []
    for method in args.methods:
        if method == "help":  # the first fit per training set meta-trains (or loads the cache): timed on its own
            for target in evaluation.PX6:
                m = evaluation.get_method(method)
                task = evaluation.make_task(table, devices, "P-X6", target, args.k, 0, m.probe_archs)
                t0 = time.perf_counter()
                evaluation.fit_task(m, task, seed=0)
                first.append(dict(method=method, target=target, seconds=time.perf_counter() - t0,
                                  meta_train_seconds=m.model_.info["seconds"]))  # as recorded when it was meta-trained
            meta = [r["meta_train_seconds"] for r in first]
            print(f"{method:15s} meta-training per set of training devices (recorded with each model): "
                  f"median {statistics.median(meta):.1f} s")
        for target in evaluation.PX6:
            for rep in range(args.repeats):
                m = evaluation.get_method(method)
                task = evaluation.make_task(table, devices, "P-X6", target, args.k, rep, m.probe_archs)
                t0 = time.perf_counter()
                fitted = evaluation.fit_task(m, task, seed=rep)
                fitted.predict(cells)
                rows.append(dict(method=method, target=target, repeat=rep, seconds=time.perf_counter() - t0))
        secs = [r["seconds"] for r in rows if r["method"] == method]
        print(f"{method:15s} fit + predict 15,625 cells: median {statistics.median(secs):.3f} s "
              f"(min {min(secs):.3f}, max {max(secs):.3f}, n = {len(secs)})")
    table_s = None
    if args.table:
        t0 = time.perf_counter()
        evaluation.run("P-X6", args.methods, ks=[args.k], seeds=range(10), workers=2, progress=False)
        table_s = time.perf_counter() - t0
        print(f"P-X6 table, k = {args.k}, 10 seeds, {len(args.methods)} methods: {table_s:.0f} s")
    env = dict(maplex=__version__, torch=torch.__version__, numpy=np.__version__, python=platform.python_version(),
               cpu=cpu_model(), logical_cpus=os.cpu_count(),
               torch_threads=args.threads, k=args.k, protocol="P-X6", cells_predicted=int(len(cells)))
    atomic_write(args.out, json.dumps(dict(environment=env, runs=rows, first_fits=first, table_seconds=table_s,
                                        table_methods=args.methods if args.table else None), indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
