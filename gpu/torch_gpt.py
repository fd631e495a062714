#!/usr/bin/env python3
"""The PyTorch side of `make gpu-check`'s GPT-2-small comparison: the model of
configs/gpt2_small_gpu.cfg (GPT-2 small: 12 layers, 12 heads, width 768, context 1024, vocabulary
50257, biases, LayerNorm, GELU (tanh), lm_head tied to wte; float32, fp32 matmuls as eopt's model)
with upstream Emerging-Optimizers' Muon (the pinned commit, from --emerging) on the 2-D matrices
inside the blocks and torch's AdamW on the rest, with that config's hyperparameters.

    torch_gpt.py --emerging DIR [--batch 16] [--seq 1024] [--steps 10] [--warmup 3]

Prints one JSON row: tokens/s over the timed steps, the step time and the optimizer's share
(CUDA events around forward+backward and around the two optimizer steps), all medians.
"""
import argparse
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab=50257, ctx=1024, layers=12, heads=12, d=768):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emerging", required=True, help="Emerging-Optimizers checkout (Muon's pinned commit)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    sys.path.insert(0, a.emerging)
    from emerging_optimizers.orthogonalized_optimizers.muon import Muon

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as eopt's model
    torch.manual_seed(1337)
    dev = torch.device("cuda")
    model = GPT().to(dev)
    matrices = [p for n, p in model.named_parameters() if n.startswith("h.") and p.dim() == 2]
    rest = [p for n, p in model.named_parameters() if not (n.startswith("h.") and p.dim() == 2)]
    opts = [Muon(matrices, lr=0.02, momentum=0.95, weight_decay=0.0, nesterov=True, scale_mode="shape_scaling",
                 fp32_matmul_prec="medium"),
            torch.optim.AdamW(rest, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.0)]
    g = torch.Generator(device=dev).manual_seed(0)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
    fb, op = [], []
    for k in range(a.warmup + a.steps):
        idx = torch.randint(0, 50257, (a.batch, a.seq + 1), device=dev, generator=g)
        for o in opts:
            o.zero_grad(set_to_none=True)
        ev[0].record()
        loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        ev[1].record()
        for o in opts:
            o.step()
        ev[2].record()
        torch.cuda.synchronize()
        if k >= a.warmup:
            fb.append(ev[0].elapsed_time(ev[1]) / 1e3)
            op.append(ev[1].elapsed_time(ev[2]) / 1e3)
    step = median([x + y for x, y in zip(fb, op)])
    print(json.dumps({"bench": "gpt2_small", "impl": "pytorch " + torch.__version__, "batch": a.batch,
                      "seq": a.seq, "step_s": step, "tokens_per_s": a.batch * a.seq / step,
                      "optimizer_s": median(op), "optimizer_share": median(op) / step,
                      "loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
