#!/usr/bin/python3
"""Training throughput side by side: eopt's GPT training step against PyTorch's on the same model,
batch, data and optimizers, in one run, alternating the two so that a loaded machine slows both alike.

    bench/gpt_vs_torch.py [CONFIG]... [--rounds 3] [--steps 20] [--warmup 3] [--threads 2]
                          [--emerging PATH] [--checkouts DIR] [--eopt build/eopt] [--json]

CONFIG defaults to the four files in bench/configs/ (GPT C=64 L=2 H=4 T=64 and C=256 L=4 H=4
T=128, batch 16, vocabulary 256; Muon + AdamW and AdamW). Each round runs, per config,
`eopt bench train CONFIG --steps K --warmup W --set run.threads=N --json`, then a PyTorch process
that builds the same GPT from the config (nanoGPT's module: nn.Linear, nn.LayerNorm, tanh GELU,
the causal attention as explicit products and a masked softmax, as torch 1.13 has no fused
attention; lm_head tied to wte) and the same optimizers with the same groups: Muon from
NVIDIA Emerging-Optimizers at its pinned commit (loaded over torch 1.13 with bench/upstream.py's
patches), torch.optim.AdamW with its defaults otherwise. A step is zero_grad, forward, the mean
cross-entropy, backward and every optimizer's step, on random windows of the config's text; both
sides report tokens per second over the timed steps (B T steps / their total time). The figure of
each side is the median over the rounds; the ratio is eopt / PyTorch (above 1: eopt is faster).

Output: the Markdown table (README's "Training throughput"), or with --json one object per config.
--emerging is a git repository of NVIDIA-NeMo/Emerging-Optimizers (extracted with git archive into
--checkouts on first use, as bench/upstream.py does); a tree already extracted there is reused.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402  (bench/upstream.py: the pinned commits and the torch 1.13 patches)


def parse_config(path):
    """The few settings the PyTorch side needs, read from the eopt config (libconfig syntax)."""
    text = re.sub(r"#.*", "", open(path).read())

    def num(key, kind=int):
        m = re.search(r"\b%s\s*=\s*([-+0-9.eE]+)\s*;" % key, text)
        if not m:
            sys.exit(f"gpt_vs_torch.py: {path} has no {key}")
        return kind(m.group(1))
    classes = re.findall(r'class\s*=\s*"(\w+)"', text)
    data = re.search(r'path\s*=\s*"([^"]+)"', text).group(1)
    return {"C": num("n_embd"), "L": num("n_layer"), "H": num("n_head"), "T": num("seq_len"),
            "block": num("block_size"), "V": num("vocab_size"), "B": num("batch_size"), "data": data,
            "muon": "Muon" in classes}


def label(c):
    return f"GPT C={c['C']} L={c['L']} H={c['H']} T={c['T']} B={c['B']}"


def torch_worker(checkout, spec):
    """Times spec["steps"] training steps after spec["warmup"] in this process; prints one JSON row."""
    if checkout:
        sys.path.insert(0, checkout)
    upstream.patch_torch()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(spec["threads"])
    c = spec["config"]
    C, L, H, T, V, B = c["C"], c["L"], c["H"], c["T"], c["V"], c["B"]

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.register_buffer("mask", torch.tril(torch.ones(c["block"], c["block"])).view(1, 1, c["block"], -1))

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (z.view(b, t, H, C // H).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / (C // H) ** 0.5)
            att = F.softmax(att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")), dim=-1)
            return self.c_proj((att @ v).transpose(1, 2).contiguous().view(b, t, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.mlp = nn.Sequential()
            self.mlp.c_fc, self.mlp.gelu, self.mlp.c_proj = nn.Linear(C, 4 * C), nn.GELU("tanh"), nn.Linear(4 * C, C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(V, C), wpe=nn.Embedding(c["block"], C),
                                                  h=nn.ModuleList(Block() for _ in range(L)), ln_f=nn.LayerNorm(C)))
            self.lm_head = nn.Linear(C, V, bias=False)
            self.lm_head.weight = self.transformer.wte.weight  # tied, as eopt's GPT

        def forward(self, idx, targets):
            tr = self.transformer
            x = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1]))
            for block in tr.h:
                x = block(x)
            logits = self.lm_head(tr.ln_f(x))
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    torch.manual_seed(1337)
    model = GPT()
    named = [(n, p) for n, p in model.named_parameters()]  # the tied weight appears once
    block2d = [p for n, p in named if n.startswith("transformer.h.") and p.dim() == 2]
    emb = [model.transformer.wte.weight, model.transformer.wpe.weight]
    rest = [p for n, p in named if not (n.startswith("transformer.h.") and p.dim() == 2) and "wte" not in n
            and "wpe" not in n]
    if c["muon"]:
        _, _, module, name, kw = upstream.PINNED["Muon"]
        Muon = getattr(__import__(module, fromlist=[name]), name)
        opts = [Muon(block2d, lr=0.02, momentum=0.95, weight_decay=0.0, nesterov=True, scale_mode="shape_scaling",
                     **kw),
                torch.optim.AdamW([{"params": emb}, {"params": rest}], lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)]
    else:
        opts = [torch.optim.AdamW([{"params": block2d, "weight_decay": 0.1}, {"params": emb}, {"params": rest}],
                                  lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)]
    text = torch.frombuffer(bytearray(open(c["data"], "rb").read()), dtype=torch.uint8)
    train = text[: int(len(text) * 0.9)].long()
    g = torch.Generator().manual_seed(1337)
    total = 0.0
    for s in range(spec["warmup"] + spec["steps"]):
        start = torch.randint(len(train) - T - 1, (B,), generator=g)
        idx = torch.stack([train[i:i + T] for i in start])
        tgt = torch.stack([train[i + 1:i + T + 1] for i in start])
        t0 = time.perf_counter()
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss = model(idx, tgt)
        loss.backward()
        for o in opts:
            o.step()
        if s >= spec["warmup"]:
            total += time.perf_counter() - t0
    print(json.dumps({"tokens_per_s": spec["steps"] * B * T / total, "loss": loss.item()}), flush=True)


def run_torch(checkout, spec):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", checkout, json.dumps(spec)],
                         stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])["tokens_per_s"]


def run_eopt(eopt, cfg, a):
    out = subprocess.run([eopt, "bench", "train", cfg, "--steps", str(a.steps), "--warmup", str(a.warmup), "--set",
                          f"run.threads={a.threads}", "--json"], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="*")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--emerging", help="git repository of NVIDIA-NeMo/Emerging-Optimizers")
    ap.add_argument("--checkouts", default="/tmp/eopt-upstream")
    ap.add_argument("--eopt", default="build/eopt")
    ap.add_argument("--json", action="store_true", help="one JSON object per config")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return torch_worker(a.worker[0], json.loads(a.worker[1]))
    configs = a.config or sorted(glob.glob(os.path.join(HERE, "configs", "*.cfg")))
    parsed = {cfg: parse_config(cfg) for cfg in configs}
    checkout = ""
    if any(c["muon"] for c in parsed.values()):
        repo, commit = upstream.PINNED["Muon"][:2]
        checkout = os.path.join(a.checkouts, f"{repo}-{commit}")
        if not os.path.isdir(checkout):
            checkout = upstream.checkout_of(repo, commit, {"emerging": a.emerging}, a.checkouts)
    rates = {cfg: {"eopt": [], "torch": []} for cfg in configs}
    for _ in range(a.rounds):
        for cfg, c in parsed.items():
            rates[cfg]["eopt"].append(run_eopt(a.eopt, cfg, a))
            spec = {"config": c, "steps": a.steps, "warmup": a.warmup, "threads": a.threads}
            rates[cfg]["torch"].append(run_torch(checkout, spec))
    if not a.json:
        print(f"| model | optimizer | eopt tokens/s | PyTorch tokens/s | eopt / PyTorch |\n| --- | --- | ---: | ---: | ---: |")
    for cfg, c in parsed.items():
        e, t = statistics.median(rates[cfg]["eopt"]), statistics.median(rates[cfg]["torch"])
        opt = "Muon + AdamW" if c["muon"] else "AdamW"
        if a.json:
            print(json.dumps({"config": cfg, "model": label(c), "optimizer": opt, "eopt_tokens_per_s": e,
                              "torch_tokens_per_s": t, "ratio": e / t, "eopt_rounds": rates[cfg]["eopt"],
                              "torch_rounds": rates[cfg]["torch"], "threads": a.threads, "steps": a.steps}))
        else:
            print(f"| {label(c)} | {opt} | {e:,.0f} | {t:,.0f} | {e / t:.2f} |")


if __name__ == "__main__":
    main()
