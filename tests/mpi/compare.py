#!/usr/bin/python3
"""Compares two eopt checkpoints tensor by tensor: the same datasets (model, optimizer state,
trainer), each within a relative tolerance of ||a - b|| / ||b|| (2-norms over the tensor), and the same
attributes of the optimizers' param groups.

usage: compare.py A.h5 B.h5 [--tol 1e-4] [--exact PREFIX ...] [--reference R.h5 --factor F]
Prints the largest relative difference and where; exit 1 if any exceeds the tolerance, a
dataset or group differs in presence or shape, or an --exact prefix (e.g. /trainer) is not
identical bit for bit. With --reference, each tensor's tolerance is max(tol, F x its relative
difference between R and B): R is B's run again with only the reduction order changed (another
BLAS thread count), which measures how far float32 rounding alone moves that tensor; --tol 0
asks for every tensor to be identical. --skip SUFFIX leaves out datasets whose name ends with
it (they must still be present in both, with their shapes)."""
import argparse
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__("/" + name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def relative(x, y):
    """||x - y|| / ||y||, the 2-norms over the whole tensor."""
    return float(np.linalg.norm((x - y).ravel()) / max(float(np.linalg.norm(y.ravel())), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--exact", action="append", default=[])
    ap.add_argument("--skip", action="append", default=[], help="datasets whose name ends so are not compared")
    ap.add_argument("--reference")
    ap.add_argument("--factor", type=float, default=4.0)
    args = ap.parse_args()
    if args.tol == 0:
        args.exact.append("/")
    ref = h5py.File(args.reference, "r") if args.reference else None
    bad = []
    worst = (0.0, "")
    with h5py.File(args.a, "r") as fa, h5py.File(args.b, "r") as fb:
        da, db = datasets(fa), datasets(fb)
        for name in sorted(set(da) | set(db)):
            if name not in da or name not in db:
                bad.append(f"{name}: only in {args.a if name in da else args.b}")
                continue
            x, y = np.asarray(da[name][()]), np.asarray(db[name][()])
            if name == "/trainer/spike_window":  # float64 losses kept as their int64 bits
                x, y = x.view(np.float64), y.view(np.float64)
            if x.shape != y.shape:
                bad.append(f"{name}: shape {x.shape} vs {y.shape}")
                continue
            if any(name.endswith(k) for k in args.skip):
                continue
            if any(name.startswith(p) for p in args.exact) or x.dtype.kind not in "fc":
                if not np.array_equal(x, y):
                    bad.append(f"{name}: not identical")
                continue
            x, y = x.astype(np.float64), y.astype(np.float64)
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                bad.append(f"{name}: non-finite values")
                continue
            rel = relative(x, y)
            tol = args.tol
            if ref is not None and name in ref:
                tol = max(tol, args.factor * relative(np.asarray(ref[name][()]).astype(np.float64), y))
            if rel > worst[0]:
                worst = (rel, name)
            if rel > tol:
                bad.append(f"{name}: relative difference {rel:.3g} above {tol:.3g}")
        for name in sorted(fa["optimizers"].keys() if "optimizers" in fa else []):
            ga = fa["optimizers"][name]["param_groups"]
            gb = fb["optimizers"][name]["param_groups"]
            for g in ga:
                for k, v in ga[g].attrs.items():
                    if k not in gb[g].attrs or not np.array_equal(np.asarray(v), np.asarray(gb[g].attrs[k])):
                        bad.append(f"/optimizers/{name}/param_groups/{g}: attribute {k} differs")
    print(f"compare {args.a} {args.b}: {len(da)} datasets, largest relative difference {worst[0]:.3g} ({worst[1]})")
    for b in bad:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
