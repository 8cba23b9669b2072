"""Inner leave-one-device-out study: how MapleX's settings were chosen without touching a target.

For every fold of a protocol (one target held out and never read), each of the fold's training devices in turn plays
the target ("pseudo-target") and the others train. The training devices contribute cells 0..599 plus the probes; the
pseudo-target's k samples are drawn from its cells 0..599 and it is scored on its cells 900..15624, the same test
range as the real protocol, because cells measured apart from the pool can sit at another level. Scored here: the
regressor's share beta in MapleX's final blend with the probe table, for MAPLE and MAPLE-X1.

    python tools/inner_study.py --protocol P-X6 --k 3 --seeds 2 --out results/inner/P-X6_k3.csv
    python tools/inner_study.py --protocol P-HELP --k 10 --seeds 2 --out results/inner/P-HELP_k10.csv  # a later check
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from maplex import data
from maplex.descriptors import PROBES
from maplex.evaluation import get_protocol, metrics
from maplex.nb201 import N_ARCHS
from maplex.regressor import MapleX

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # beta: 0 = probe table only, 1 = regressor only
MODELS = {"maple": dict(virtual=False, spec_weighting=False), "maple-x1": dict(spec_weighting=False)}


def folds(protocol: str) -> dict[str, list[str]]:
    "Training devices of each fold; a protocol whose targets never train (P-HELP) has a single fold."
    p = get_protocol(protocol)
    if not set(p.targets) & set(p.pool): return {"(all targets)": list(p.pool)}
    return {t: p.train_devices(t) for t in p.targets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", default="P-X6")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("results/inner/P-X6_k3.csv"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    table, devices = data.load_nb201(), data.load_devices()
    train_cells = np.union1d(np.arange(600), PROBES)
    test_cells = np.arange(900, N_ARCHS)
    jobs = [(f, p, s) for f, devs in folds(a.protocol).items() for p in devs for s in range(a.seeds)]
    rows = []
    for fold, pseudo, seed in tqdm(jobs, desc=f"inner {a.protocol} k={a.k}"):
        others = [d for d in folds(a.protocol)[fold] if d != pseudo]  # the fold's target is not among them
        col = table[pseudo]
        samples = col.loc[np.sort(np.random.default_rng(seed).choice(np.arange(600), size=a.k, replace=False))]
        truth = col.loc[test_cells].to_numpy()
        for name, switches in MODELS.items():
            m = MapleX(seed=seed, regressor_share=0.5, **switches)  # any share < 1 keeps the probe table
            m.fit(table.select(others).take(train_cells), devices.select([*others, pseudo]), pseudo, samples,
                  col.loc[list(m.probe_archs)])
            for beta in SHARES:
                m.regressor_share = beta  # the share acts at predict time only
                rows.append(dict(protocol=a.protocol, k=a.k, fold=fold, pseudo_target=pseudo, seed=seed, model=name,
                                 regressor_share=beta, **metrics(m.predict(test_cells), truth)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(a.out, index=False)
    print(pd.DataFrame(rows).pivot_table(index="regressor_share", columns="model", values="acc10").round(3))


if __name__ == "__main__":
    main()
