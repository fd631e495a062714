"""(c) eopt -> PyTorch: `eopt replay --save-at K FILE` writes a checkpoint from C; it imports
into torch (model and a torch AdamW built from the file's class, arguments and groups), reads
back and writes again with identical content, and torch resumes there: fed the fixture's
gradients K+1..N it follows the fixture trajectory within its tolerance. For every fixture
case, the C-written step_K file has the groups, datasets, attributes, types and hard links of
the Python-written step_K.h5 (values differ at rounding level; producer and source are free
text) and survives import/export unchanged."""
import glob
import os

import h5py
import torch
from common import FIXTURES, fail, module_from_names, run_eopt, tmp_path

import eopt_checkpoint as ec

CASE, K = "torch_adamw", 5


def same_layout_as_python(saved):
    bad = []
    for d in sorted(glob.glob(os.path.join(FIXTURES, "optimizers", "*"))):
        case = os.path.basename(d)
        rc, out = run_eopt("replay", os.path.join(d, "step_0.h5"), os.path.join(d, "trajectory.h5"), "--save-at", K, saved)
        if rc != 0:
            bad.append("%s: eopt replay exited %d: %s" % (case, rc, out.strip().splitlines()[-1:]))
            continue
        diff = [x for x in ec.diff(saved, os.path.join(d, "step_%d.h5" % K))
                if not (x.endswith(": values differ") or x.startswith("/@producer") or "@source:" in x)]
        again = saved + ".again"
        ec.write(again, ec.read(saved))
        diff += ["import/export: " + x for x in ec.diff(saved, again)]
        os.unlink(again)
        if diff:
            bad.append("%s:\n    %s" % (case, "\n    ".join(diff[:6])))
    if bad:
        fail("C-written checkpoints that differ in layout from the Python-written fixtures:\n  " + "\n  ".join(bad))
    print("C-written step_%d of every fixture case has the Python layout and round-trips" % K)


def main():
    d = os.path.join(FIXTURES, "optimizers", CASE)
    traj = os.path.join(d, "trajectory.h5")
    saved, again = tmp_path("c_written.h5"), tmp_path("c_again.h5")
    try:
        rc, out = run_eopt("replay", os.path.join(d, "step_0.h5"), traj, "--save-at", K, saved)
        print(out.strip())
        if rc != 0 or not os.path.exists(saved):
            fail("eopt replay --save-at %d exited %d" % (K, rc))
        ck = ec.read(saved)
        if ck.step != K:
            fail("C checkpoint step %d, expected %d" % (ck.step, K))
        ec.write(again, ck)
        d2 = ec.diff(saved, again)
        if d2:
            fail("the C-written file does not survive import/export:\n  " + "\n  ".join(d2[:10]))
        model = module_from_names(list(ck.model), ck.model)
        opt = ec.build_optimizer(ck, "0", model)
        if not isinstance(opt, torch.optim.AdamW):
            fail("built %s" % type(opt).__name__)
        steps = {i: s["step"] for i, s in opt.state_dict()["state"].items()}
        if not steps or any(not isinstance(s, torch.Tensor) or float(s) != K for s in steps.values()):
            fail("AdamW step after import: %s" % steps)
        params = dict(model.named_parameters())
        with h5py.File(traj, "r") as f:
            tol, n = float(f.attrs["tolerance"]), int(f.attrs["steps"])
            init = {k: torch.from_numpy(f["init"][k][()]) for k in f["init"]}
            worst = 0.0
            for t in range(K + 1, n + 1):
                for name, p in params.items():
                    g = f["grads/%d" % t].get(name)
                    p.grad = None if g is None else torch.from_numpy(g[()])
                opt.step()
                for name, p in params.items():
                    ref = torch.from_numpy(f["params/%d/%s" % (t, name)][()])
                    err = (p.detach() - ref).abs().max().item() / max((ref - init[name]).abs().max().item(), 1e-30)
                    worst = max(worst, err)
                    if err > tol:
                        fail("torch resumed from the C checkpoint: step %d %s rel err %.3e > %.3e" % (t, name, err, tol))
        same_layout_as_python(saved)
    finally:
        for p in (saved, again):
            if os.path.exists(p):
                os.unlink(p)
    print("torch resumed a C checkpoint of %s at step %d: steps %d..%d worst rel err %.3e (tolerance %.3e)"
          % (CASE, K, K + 1, n, worst, tol))


main()
