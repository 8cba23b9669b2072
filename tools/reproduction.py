#!/usr/bin/env python3
"""How far results rows move when only the arithmetic changes: the evidence behind the reproduction tolerance.

Recomputes a few committed rows (tests/test_evaluation.py's COMMITTED list) in fresh processes under several
ways of doing the same arithmetic on this machine: one or two torch threads, torch's AVX2 or scalar kernels instead
of AVX-512 (ATEN_CPU_CAPABILITY), and oneMKL's conditional-numerical-reproducibility paths (MKL_CBWR), which
change how matrix products are summed as another CPU would. Writes the largest deviation of each metric from the
committed row to results/reproduction.json; lesson 80 states the tolerance derived from it.

    python tools/reproduction.py                 # every COMMITTED row, every variant (HELP rows meta-train: slow)
    python tools/reproduction.py --skip help     # without the HELP row
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_evaluation import COMMITTED  # noqa: E402  the rows the reproduction test recomputes

from maplex.core import atomic_write  # noqa: E402
from maplex.evaluation import load_results  # noqa: E402

VARIANTS = {  # name -> (torch threads, extra environment)
    "1 thread": (1, {}),
    "2 threads": (2, {}),
    "AVX2 kernels": (1, {"ATEN_CPU_CAPABILITY": "avx2"}),
    "scalar kernels": (1, {"ATEN_CPU_CAPABILITY": "default"}),
    "MKL compatible path": (1, {"MKL_CBWR": "COMPATIBLE"}),
    "MKL AVX2 path": (1, {"MKL_CBWR": "AVX2"}),
}
METRICS = ["acc10", "acc5", "spearman", "kendall", "mape", "help_acc10", "help_spearman"]
CHILD = """
import json, sys, torch
from maplex.evaluation import evaluate_one
torch.set_num_threads(int(sys.argv[1]))
rows = [evaluate_one(m, p, t, int(k), int(s)) for p, m, t, k, s in json.loads(sys.argv[2])]
print(json.dumps(rows))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip", nargs="*", default=[], help="methods to leave out (e.g. help: it meta-trains)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "reproduction.json")
    a = ap.parse_args(argv)
    rows = [r for r in COMMITTED if r[1] not in a.skip]
    committed = {}
    for p, m, t, k, s in rows:
        df = load_results(ROOT / "results" / p / "results.csv")
        committed[(p, m, t, k, s)] = df[(df.method == m) & (df.target == t) & (df.k == k) & (df.seed == s)].iloc[0]
    out = {}
    for name, (threads, env) in VARIANTS.items():
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", CHILD, str(threads), json.dumps(rows)], capture_output=True,
                             text=True, env={**os.environ, **env, "MAPLEX_CACHE": tempfile.mkdtemp()})  # HELP anew
        if res.returncode:
            print(res.stderr)
            return 1
        new = json.loads(res.stdout.strip().splitlines()[-1])
        dev = {m: max(abs(r[m] - committed[key][m]) for r, key in zip(new, committed)) for m in METRICS}
        out[name] = dict(threads=threads, env=env, max_abs_deviation=dev, seconds=round(time.perf_counter() - t0, 1))
        print(f"{name:22s} " + " ".join(f"{m} {v:.1e}" for m, v in dev.items()), flush=True)
    info = dict(rows=[list(r) for r in rows], variants=out, cpu=platform.processor() or platform.machine(),
                python=platform.python_version())
    try:
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                           if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    atomic_write(a.out, json.dumps(info, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
