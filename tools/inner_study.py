#!/usr/bin/env python3
"""Inner leave-one-device-out studies: the evidence behind the defaults, from training devices' pool cells only.

For every fold of a protocol (one target held out and never read), each of the fold's training devices in turn
plays the target. It gives k samples from its cells 0..599 (and the five probes) and is scored on its cells
600..899; the other training devices keep their cells 0..899. No cell from 900 on and no fold target is read:
the studies receive a table with those replaced by NaN.

    python tools/inner_study.py maplex --protocol P-X6 --k 3 5 10 20            # lesson 75: maplex's floor, per fold
    python tools/inner_study.py maple --protocol P-X6 --k 3 --seeds 1           # lesson 70: MapleX's settings
    python tools/inner_study.py help --protocol P-HELP --k 10 --seeds 10        # lesson 85: HELP's de-normalisation

The HELP study follows HELP's own split instead: its four meta-validation devices (never a target) play the
target in turn with the evaluation's meta-trained model (meta_seed=0), adapt on k of their pool cells plus HELP's
ten reference cells (the method's declared probes, seven of which lie outside the pool, as in every HELP fit), and
are scored on the rest of their pool cells.

Writes results/inner/<study>_<protocol>.csv.gz (gzipped with no date inside, so the same rows give the same bytes;
one row per fold, pseudo-target, seed, k and rule or setting).
"""
from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maplex import data
from maplex.core import atomic_write
from maplex.evaluation import get_protocol
from maplex.helpexp import validation_scores
from maplex.ours import inner_study
from maplex.regressor import maple_inner_study


def folds(protocol: str) -> dict[str, list[str]]:
    "Training devices of each fold; a protocol whose targets never train (P-HELP) has a single fold."
    p = get_protocol(protocol)
    if not set(p.targets) & set(p.pool): return {"(all targets)": list(p.pool)}
    return {t: p.train_devices(t) for t in p.targets}


def blind(ms: pd.DataFrame, fold_target: str) -> pd.DataFrame:
    "The table a fold's study may see: cells from 900 on and the fold's target replaced by NaN."
    out = ms.copy()
    out.loc[out.index >= 900] = np.nan
    if fold_target in out: out[fold_target] = np.nan
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", choices=["maplex", "maple", "help"])
    ap.add_argument("--protocol", default="P-X6")
    ap.add_argument("--k", type=int, nargs="+", default=[3])
    ap.add_argument("--seeds", type=int, default=2, help="draws per pseudo-target (maplex: as maplex.ours.INNER_SEEDS)")
    ap.add_argument("--out", type=Path, help="default: results/inner/<study>_<protocol>.csv.gz (a name ending in .gz is gzipped)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    table, devices = data.load_nb201(), data.load_devices()
    frames, t0 = [], time.perf_counter()
    if a.study == "help":
        for k in a.k:
            frames.append(validation_scores(a.protocol, draws=range(a.seeds), k=k, table=table, devices=devices)
                          .assign(k=k, protocol=a.protocol, fold="(meta-validation devices)"))
    for fold, devs in ({} if a.study == "help" else folds(a.protocol)).items():
        ms = blind(table.ms, fold)
        for k in a.k:
            if a.study == "maplex": df = inner_study(ms, devs, k=k, seeds=range(a.seeds))
            else: df = maple_inner_study(ms, devices, devs, k=k, seeds=range(a.seeds))
            frames.append(df.assign(protocol=a.protocol, fold=fold))
        print(f"fold {fold}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = a.out or Path("results/inner") / f"{a.study}_{a.protocol}.csv.gz"
    df = pd.concat(frames, ignore_index=True)
    text = df.to_csv(index=False).encode()
    atomic_write(out, gzip.compress(text, mtime=0) if out.suffix == ".gz" else text)  # mtime=0: no date inside
    col = {"maplex": "rule", "maple": "setting", "help": "denorm"}[a.study]
    print(df.pivot_table(index=col, columns="k", values="acc10").round(3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
