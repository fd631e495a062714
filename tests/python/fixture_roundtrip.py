"""(b) Every fixture checkpoint imports into live torch objects (the model, torch's AdamW or a
stand-in of the upstream class built from the file's class and constructor arguments, loaded
with load_state_dict) and exports back from those objects to a file with identical content:
every group, dataset and attribute, their types, and the hard links of tied weights."""
import glob
import os

from common import FIXTURES, fail, module_from_names, optimizer_class, tmp_path

import torch
import eopt_checkpoint as ec

# torch 2 adds these AdamW group keys on load (muon.md §6); a 1.13 file lacks them.
TORCH2_ADDED = {"differentiable", "decoupled_weight_decay", "fused"}


def roundtrip(path, out):
    ck = ec.read(path)
    first = [n for r in ck.optimizers.values() for n in r.param_names]
    model = module_from_names(first + [n for n in ck.model if n not in first], ck.model)
    opts = {n: ec.build_optimizer(ck, n, model, optimizer_class(r)) for n, r in ck.optimizers.items()}
    # the live objects carry it all: only `source` (free text) is passed on
    ec.save(out, model, opts, ck.step, sources={n: r.source for n, r in ck.optimizers.items()}, producer=ck.producer)
    back = ec.load(out, model, opts)
    for n, r in ck.optimizers.items():
        if back.optimizers[n].args != r.args:
            fail("%s: args %s came back as %s" % (path, r.args, back.optimizers[n].args))
        if type(opts[n]).__name__ == "AdamW":
            st = opts[n].state_dict()["state"]
            if st and not all(isinstance(s["step"], torch.Tensor) and s["step"].dtype == torch.float32 for s in st.values()):
                fail("%s: AdamW step is not a float32 tensor after import" % path)
        if r.cls == "SOAP":
            st = opts[n].state_dict()["state"]
            if st and not all(type(s["step"]) is int for s in st.values()):
                fail("%s: SOAP step is not a Python int after import" % path)


def main():
    files = sorted(glob.glob(os.path.join(FIXTURES, "optimizers", "*", "step_*.h5")))
    if len(files) < 30:
        fail("expected the fixture checkpoints under %s, found %d" % (FIXTURES, len(files)))
    out = tmp_path("roundtrip.h5")
    bad = 0
    try:
        for path in files:
            roundtrip(path, out)
            d = [x for x in ec.diff(path, out) if not any("@%s: only in second" % k in x for k in TORCH2_ADDED)]
            if d:
                bad += 1
                print("%s: %d differences, e.g.\n  %s" % (path, len(d), "\n  ".join(d[:8])))
        # the comparison itself must see a change
        ck = ec.read(files[0])
        ck.step += 1
        ec.write(out, ck)
        if not any("@step" in x for x in ec.diff(files[0], out)):
            fail("diff does not notice a changed step")
    finally:
        if os.path.exists(out):
            os.unlink(out)
    if bad:
        fail("%d of %d fixture files do not round-trip" % (bad, len(files)))
    print("%d fixture checkpoints round-trip through torch objects with identical content" % len(files))


main()
