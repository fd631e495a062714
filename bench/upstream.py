#!/usr/bin/python3
"""Upstream side by side: times the upstream PyTorch optimizers at their pinned commits on the same
shapes as `eopt bench optimizer` and prints both step times and their ratio.

    bench/upstream.py --emerging PATH --dion PATH [--shape 256x256]... [--optimizer Muon]...
                      [--model gpt2-small-matrices] [--steps 10] [--warmup 2] [--threads 2]
                      [--eopt build/eopt] [--checkouts DIR]
                      [--device cpu|cuda]

PATH is a git repository (a clone or a bare mirror) of NVIDIA-NeMo/Emerging-Optimizers or
microsoft/dion. Each pinned commit is extracted with `git archive` into --checkouts (default
/tmp/eopt-upstream/<repo>-<commit>, outside the project; never commit it) and imported from there
in a process of its own (commits of one package cannot share an interpreter). Each optimizer gets
one rows x cols float32 parameter on the CPU, N(0, 1) gradients drawn outside the timing, and the
same lr as eopt's bench (1e-3; momentum 0.95 and weight decay 0 where upstream requires them);
the step time is the median of --steps after --warmup, with torch.set_num_threads(--threads).
--model gpt2-small-matrices adds one row per optimizer: a step over the 48 matrices of GPT-2
small's 12 blocks (2304x768, 768x768, 3072x768, 768x3072 each) in one param group.
eopt runs `eopt bench optimizer ... --json --threads N` on the same shapes (and --model).
A checkout already under --checkouts is used as it is (make gpu-check carries them to a GPU).

--device cuda (make gpu-check, docs/gpu.md): parameters and gradients on the GPU, each step waited
for (torch.cuda.synchronize) before its time is read, eopt with --device cuda; every class keeps its
own default precision there (NVIDIA's fp32_matmul_prec, dion's bfloat16), as eopt does.

Run-time patches for Debian's torch 1.13 and Python 3.11 (the checkouts are never edited):
  - typing.override (Python 3.12) is added as the identity; absl.logging (absl-py, not in Debian's
    python3 set here) is Python's logging; triton (GPU kernels, imported at module level, never
    called on the CPU) is a stand-in module;
  - torch.compile and torch._inductor.config.patch (torch 2) are the identity: upstream runs eagerly (its compiled kernels would be
    faster; the ratio says so against eager PyTorch);
  - torch.optim.optimizer.ParamsT, torch.distributed.tensor (DTensor, DeviceMesh) and
    torch.distributed._functional_collectives (torch 2) are stand-ins: nothing here is distributed;
  - torch._foreach_copy_, _foreach_lerp(_), _foreach_sign(_) (torch 2) are per-tensor loops;
  - dion's polar express casts to bfloat16 (`G.bfloat16()`): made float32 as in the golden
    fixtures, so that both sides compute in float32 (bfloat16 matmuls on a CPU are emulated);
  - torch.cuda.nvtx.range_push / range_pop (profiler markers; they need a CUDA build) do nothing;
  - NVIDIA's classes get fp32_matmul_prec = "highest" (float32), as the fixtures.
"""
import argparse
import json
import os
import subprocess
import sys

# class id -> (repository, commit, module, class name, constructor keywords besides lr)
PINNED = {
    "Muon": ("emerging", "b309e2f", "emerging_optimizers.orthogonalized_optimizers.muon", "Muon",
             {"fp32_matmul_prec": "highest"}),
    "AdaptiveMuon": ("emerging", "b309e2f", "emerging_optimizers.orthogonalized_optimizers.adaptive_muon",
                     "AdaptiveMuon", {"fp32_matmul_prec": "highest", "momentum": 0.95, "weight_decay": 0.0,
                                      "moment2_method": "adamuon"}),
    "Muown": ("emerging", "9ab7b03", "emerging_optimizers.contrib.muown", "Muown", {"fp32_matmul_prec": "highest"}),
    "SOAP": ("emerging", "1effa02", "emerging_optimizers.soap.soap", "SOAP", {}),
    "MOSO": ("emerging", "a0e376b", "emerging_optimizers.soap.moso", "MOSO", {}),
    "dion.Muon": ("dion", "33777ce", "dion.muon", "Muon", {}),
    "NorMuon": ("dion", "33777ce", "dion.normuon", "NorMuon", {}),
    "Dion2": ("dion", "33777ce", "dion.dion2", "Dion2", {}),
    "NorDion2": ("dion", "33777ce", "dion.nordion2", "NorDion2", {}),
    "AdamW": ("torch", None, "torch.optim", "AdamW", {}),
}
REPO_NAMES = {"emerging": "Emerging-Optimizers", "dion": "dion"}
# --model NAME -> its weight matrices in parameter order (as `eopt bench optimizer --model`)
MODELS = {"gpt2-small-matrices": [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 12}


def patch_torch():
    """The run-time patches of the docstring, before any upstream import."""
    import types
    import typing

    import torch

    def stand_in(value):
        """A module __getattr__ answering `value` for every name but the dunders (import machinery)."""
        def getattr_(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return value
        return getattr_

    try:
        import absl.logging  # noqa: F401
    except ImportError:  # absl-py only logs here: Python's logging stands in
        import logging
        absl = types.ModuleType("absl")
        absl.logging = logging
        sys.modules["absl"], sys.modules["absl.logging"] = absl, logging
    try:
        import triton  # noqa: F401
    except ImportError:  # GPU kernels only: never called on the CPU, but imported at module level
        class Stub:
            def __call__(self, *a, **k):  # @triton.jit -> the function; triton.autotune(...) -> a decorator
                return a[0] if len(a) == 1 and callable(a[0]) and not k else Stub()

            def __getattr__(self, attr):
                if attr.startswith("__"):
                    raise AttributeError(attr)
                return Stub()
        for name in ("triton", "triton.language", "triton.tools", "triton.tools.tensor_descriptor"):
            m = types.ModuleType(name)
            m.__getattr__ = stand_in(Stub())
            sys.modules[name] = m
    if not hasattr(typing, "override"):
        typing.override = lambda f: f
    if not hasattr(torch, "compile"):
        def compile(fn=None, **kw):
            return fn if fn is not None else (lambda f: f)
        torch.compile = compile
    if not hasattr(torch, "_inductor"):  # torch._inductor.config.patch(...) decorates compiled functions
        inductor = types.ModuleType("torch._inductor")
        inductor.config = types.SimpleNamespace(patch=lambda *a, **k: (lambda f: f))
        torch._inductor = sys.modules["torch._inductor"] = inductor
    import torch.optim.optimizer as topt
    if not hasattr(topt, "ParamsT"):
        topt.ParamsT = typing.Any
    import torch.distributed as dist
    for name in ("tensor", "_functional_collectives", "device_mesh"):
        full = "torch.distributed." + name
        try:
            __import__(full)
        except ImportError:
            m = types.ModuleType(full)
            m.DTensor = type("DTensor", (torch.Tensor,), {})
            m.DeviceMesh = type("DeviceMesh", (), {})
            m.Shard = m.Replicate = m.Partial = type("Placement", (), {"__init__": lambda self, *a, **k: None})
            m.__getattr__ = stand_in(lambda *a, **k: None)
            sys.modules[full] = m
            setattr(dist, name, m)
    if not hasattr(dist, "ProcessGroup"):
        dist.ProcessGroup = type("ProcessGroup", (), {})
    if not torch.cuda.is_available():
        torch.Tensor.bfloat16 = lambda self, *a, **k: self.float()

    def each(w, k):  # a foreach weight: one for all, or one per tensor
        return w[k] if isinstance(w, (list, tuple)) else w
    foreach = {  # torch 2's multi-tensor ops as per-tensor loops (same math)
        "_foreach_copy_": lambda dst, src, **kw: [d.copy_(s) for d, s in zip(dst, src)],
        "_foreach_lerp": lambda a, b, w: [x.lerp(y, each(w, k)) for k, (x, y) in enumerate(zip(a, b))],
        "_foreach_lerp_": lambda a, b, w: [x.lerp_(y, each(w, k)) for k, (x, y) in enumerate(zip(a, b))],
        "_foreach_sign": lambda a: [x.sign() for x in a],
        "_foreach_sign_": lambda a: [x.sign_() for x in a],
    }
    for name, fn in foreach.items():
        if not hasattr(torch, name):
            setattr(torch, name, fn)
    if not torch.cuda.is_available():  # NVTX ranges (profiler markers) need a CUDA build
        torch.cuda.nvtx.range_push = torch.cuda.nvtx.range_pop = lambda *a, **k: None


def worker(checkout, spec):
    """Times each (class, shape) of spec in this process; prints one JSON row each."""
    import importlib
    import time

    if checkout:
        sys.path.insert(0, checkout)
    patch_torch()
    import torch
    torch.set_num_threads(spec["threads"])
    dev = torch.device(spec.get("device", "cpu"))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for cls in spec["classes"]:
        _, _, module, name, kw = PINNED[cls]
        if dev.type == "cuda":
            kw = {k: v for k, v in kw.items() if k != "fp32_matmul_prec"}
        Opt = getattr(importlib.import_module(module), name)
        for label, shapes in spec["shapes"]:
            g = torch.Generator(device=dev).manual_seed(0)
            ws = [torch.nn.Parameter(torch.randn(rows, cols, generator=g, device=dev)) for rows, cols in shapes]
            opt = Opt(ws, lr=1e-3, **kw)
            times = []
            for k in range(spec["warmup"] + spec["steps"]):
                for w in ws:
                    w.grad = torch.randn(w.shape, generator=g, device=dev)
                sync()
                t0 = time.perf_counter()
                opt.step()
                sync()
                if k >= spec["warmup"]:
                    times.append(time.perf_counter() - t0)
            times.sort()
            n = len(times)
            med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
            print(json.dumps({"name": cls, "shape": label, "median_s": med, "min_s": times[0],
                              "max_s": times[-1]}), flush=True)


def checkout_of(repo, commit, paths, root):
    """The extracted tree of repo@commit under root (git archive on first use; an existing tree is used as it is)."""
    if repo == "torch":
        return ""
    src, dst = paths[repo], os.path.join(root, f"{repo}-{commit}")
    if not src and not os.path.isdir(dst):
        sys.exit(f"upstream.py: give --{repo} PATH (a git repository of {REPO_NAMES[repo]}) or a --checkouts "
                 f"directory holding {repo}-{commit}")
    if not os.path.isdir(dst):
        os.makedirs(dst)
        archive = subprocess.run(["git", "-C", src, "archive", commit], check=True, stdout=subprocess.PIPE).stdout
        subprocess.run(["tar", "-x", "-C", dst], input=archive, check=True)
    return dst


def eopt_rows(eopt, classes, shapes, a):
    """eopt's rows: one run for the single shapes, one for --model."""
    base = [eopt, "bench", "optimizer", "--json", "--steps", str(a.steps), "--warmup", str(a.warmup),
            "--threads", str(a.threads), "--device", a.device]
    for c in classes:
        base += ["--optimizer", c]
    runs = []
    singles = [label for label, _ in shapes if label not in MODELS]
    if singles:
        runs.append(base + [x for label in singles for x in ("--shape", label)])
    if a.model:
        runs.append(base + ["--model", a.model])
    rows = {}
    for cmd in runs:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows.update({(r["name"], r["shape"]): r for r in map(json.loads, out.splitlines())})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emerging", help="git repository of NVIDIA-NeMo/Emerging-Optimizers")
    ap.add_argument("--dion", help="git repository of microsoft/dion")
    ap.add_argument("--checkouts", default="/tmp/eopt-upstream")
    ap.add_argument("--optimizer", action="append", choices=list(PINNED))
    ap.add_argument("--shape", action="append")
    ap.add_argument("--model", choices=list(MODELS), help="also one step over every matrix of this model")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--eopt", default="build/eopt")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], json.loads(a.worker[1]))
    classes = a.optimizer or list(PINNED)
    shapes = [(s, [tuple(int(x) for x in s.split("x"))]) for s in (a.shape or ["256x256", "512x512", "1024x1024"])]
    if a.model:
        shapes = (shapes if a.shape else []) + [(a.model, MODELS[a.model])]
    paths = {"emerging": a.emerging, "dion": a.dion}
    by_tree = {}
    for c in classes:
        repo, commit = PINNED[c][:2]
        by_tree.setdefault((repo, commit), []).append(c)
    upstream = {}
    for (repo, commit), cls in by_tree.items():
        tree = checkout_of(repo, commit, paths, a.checkouts)
        spec = {"classes": cls, "shapes": shapes, "steps": a.steps, "warmup": a.warmup, "threads": a.threads,
                "device": a.device}
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", tree, json.dumps(spec)],
                             stdout=subprocess.PIPE, text=True)
        for line in out.stdout.splitlines():
            if not line.startswith('{"name": '):  # upstream's own prints (e.g. SOAP's eigh fallback)
                print(line, file=sys.stderr)
                continue
            r = json.loads(line)
            upstream[(r["name"], r["shape"])] = r
        if out.returncode != 0:
            print(f"upstream.py: {', '.join(cls)} at {repo}@{commit} failed (see above)", file=sys.stderr)
    eopt = eopt_rows(a.eopt, classes, shapes, a)
    if not a.json:
        print(f"{'optimizer':<14} {'shape':<11} {'upstream':<22} {'upstream ms':>12} {'eopt ms':>10} "
              f"{'upstream/eopt':>14}")
    for c in classes:
        repo, commit = PINNED[c][:2]
        src = f"{REPO_NAMES[repo]}@{commit}" if commit else "torch " + __import__("torch").__version__
        for label, _ in shapes:
            key = (c, label)
            u, e = upstream.get(key), eopt.get(key)
            ratio = u["median_s"] / e["median_s"] if u and e else None
            if a.json:
                print(json.dumps({"name": c, "shape": key[1], "upstream": src,
                                  "upstream_s": u and u["median_s"], "eopt_s": e and e["median_s"],
                                  "ratio": ratio}))
            else:
                us = f"{1e3 * u['median_s']:12.2f}" if u else f"{'failed':>12}"
                es = f"{1e3 * e['median_s']:10.2f}" if e else f"{'failed':>10}"
                print(f"{c:<14} {key[1]:<11} {src:<22} {us} {es} "
                      f"{ratio and f'{ratio:14.2f}' or '-':>14}")


if __name__ == "__main__":
    main()
