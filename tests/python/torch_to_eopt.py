"""(a) PyTorch -> eopt: a GPT (models.md shape, tied head) trained with torch AdamW (two
groups) is exported at step 0 and at step K together with the trajectory of the steps that
follow (the fixtures' format, tolerance 1e-4); `eopt replay` must continue it from both
checkpoints within tolerance."""
import os

from common import GPT, adamw_groups, batch, fail, named, run_eopt, tmp_path

import torch
import eopt_checkpoint as ec

K, N = 3, 8


def main():
    torch.manual_seed(0)
    model = GPT()
    opt = adamw_groups(model)
    gen = torch.Generator().manual_seed(1)
    ck0, ckk, traj = tmp_path("gpt_step0.h5"), tmp_path("gpt_stepK.h5"), tmp_path("gpt_traj.h5")
    ec.save(ck0, model, {"adamw": opt}, step=0)
    try:
        with ec.TrajectoryWriter(traj, named(model), case="torch_gpt_adamw", **{"class": "AdamW"},
                                 source="torch %s torch.optim.AdamW" % torch.__version__, steps=N,
                                 checkpoint_steps=[0, K], noise_sensitivity=0.0, tolerance=1e-4) as tw:
            for t in range(1, N + 1):
                opt.zero_grad()
                model(*batch(gen)).backward()
                grads = {n: p.grad.clone() for n, p in model.named_parameters()}
                opt.step()
                tw.add(t, grads, named(model))
                if t == K:
                    ec.save(ckk, model, {"adamw": opt}, step=K)
        for ck in (ck0, ckk):
            rc, out = run_eopt("replay", ck, traj)
            print(out.strip())
            if rc != 0 or "replay ok" not in out:
                fail("eopt replay %s exited %d" % (os.path.basename(ck), rc))
        # the check can fail: a file whose optimizer state was tampered with must not replay
        ck = ec.read(ckk)
        for entry in ck.optimizers["adamw"].state_dict["state"].values():
            entry["exp_avg"] = entry["exp_avg"] * 3
        ec.write(ckk, ck)
        rc, out = run_eopt("replay", ckk, traj)
        if rc == 0:
            fail("replay of a tampered checkpoint passed:\n" + out)
    finally:
        for p in (ck0, ckk, traj):
            if os.path.exists(p):
                os.unlink(p)
    print("torch AdamW GPT continued by eopt replay from steps 0 and %d" % K)


main()
