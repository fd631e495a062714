#!/usr/bin/python3
"""`make bench`: runs `eopt bench` (every optimizer on square sizes, Newton-Schulz, a training
step split into its parts, a checkpoint) and writes bench/results/<date>.md with the tables and
bench/results/<date>.png, a gnuplot plot of step time against size for every optimizer.

usage: bench/report.py [--eopt build/eopt] [--out bench/results] [--threads T] [--sizes 128,256,...]
                       [--steps K] [--note TEXT] [--emerging PATH --dion PATH [--upstream-sizes 256,512]]

With --emerging and --dion (git repositories, see bench/upstream.py) the file gets the upstream
PyTorch optimizers at their pinned commits beside eopt on the same shapes.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys

CLASSES = ["Muon", "AdaptiveMuon", "Muown", "dion.Muon", "NorMuon", "Dion2", "NorDion2", "SOAP", "MOSO", "AdamW"]
# One distinct colour per optimizer (gnuplot's default cycle repeats after 8).
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
TRAIN_CONFIGS = ["configs/gpt_muon_adamw.cfg", "configs/gpt_soap.cfg", "configs/mlp_muon_adamw.cfg"]


def eopt_rows(eopt, args):
    """The JSON rows of one `eopt bench ... --json` run."""
    cmd = [eopt, "bench"] + args + ["--json"]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def machine(eopt, threads):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    load = open("/proc/loadavg").read().split()[:3]
    desc = subprocess.run([eopt, "bench", "optimizer", "--optimizer", "AdamW", "--shape", "8x8", "--steps", "1",
                           "--threads", str(threads)], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"{desc}; load average at the start {' '.join(load)}")


def optimizer_table(rows):
    lines = ["| optimizer | shape | median ms | min ms | max ms | MFLOP/step | GFLOP/s | sgemm ms (same flops) | ratio |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['shape']} | {1e3 * r['median_s']:.2f} | {1e3 * r['min_s']:.2f} | "
                     f"{1e3 * r['max_s']:.2f} | {r['flops'] * 1e-6:.1f} | {r['gflops_per_s']:.2f} | "
                     f"{1e3 * r['sgemm_s']:.2f} | {r['ratio']:.2f} |")
    return lines


def flops_table(rows):
    """What runs, per class: the flops of one step split by operation (at the largest size)."""
    big = {}
    for r in rows:
        big[r["name"]] = r
    lines = ["| optimizer | shape | gemm | syrk | syevd | qr | element-wise | total MFLOP |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in big.items():
        f = [r[k] * 1e-6 for k in ("flops_gemm", "flops_syrk", "flops_syevd", "flops_qr", "flops_elementwise")]
        lines.append(f"| {name} | {r['shape']} | " + " | ".join(f"{x:.1f}" for x in f) + f" | {r['flops'] * 1e-6:.1f} |")
    return lines


def train_table(rows):
    lines = ["| config | items/s | step ms | parts: median ms (share) |", "| --- | ---: | ---: | --- |"]
    for r in rows:
        unit = "tokens" if "tokens_per_s" in r else "samples"
        parts = [k[:-6] for k in r if k.endswith("_share")]
        split = ", ".join(f"{p} {1e3 * r[p + '_s']:.2f} ({100 * r[p + '_share']:.1f}%)" for p in parts)
        lines.append(f"| {r['config']} | {r[unit + '_per_s']:.0f} {unit}/s | {1e3 * r['step_s']:.1f} | {split} |")
    return lines


def upstream_table(rows):
    lines = ["| optimizer | shape | upstream (eager PyTorch, CPU) | upstream ms | eopt ms | upstream / eopt |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        u = f"{1e3 * r['upstream_s']:.2f}" if r["upstream_s"] else "failed"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(f"| {r['name']} | {r['shape']} | {r['upstream']} | {u} | {1e3 * r['eopt_s']:.2f} | {ratio} |")
    return lines


def plot(rows, png):
    """Median step time against n (n x n) per optimizer, log-log, with a key outside the plot."""
    data = png[:-4] + ".dat"
    names = list(dict.fromkeys(r["name"] for r in rows))
    with open(data, "w") as f:
        for name in names:
            f.write(f"# {name}\n")
            for r in rows:
                if r["name"] == name:
                    f.write(f"{r['rows']} {1e3 * r['median_s']:.6g} {1e3 * r['min_s']:.6g} {1e3 * r['max_s']:.6g}\n")
            f.write("\n\n")
    sizes = sorted({r["rows"] for r in rows})
    script = f"""
set terminal pngcairo size 1100,700 font ",12"
set output "{png}"
set title "eopt optimizer step time (median of the timed steps, bars: min to max)"
set xlabel "parameter n x n"
set ylabel "step time (ms)"
set logscale xy
set xtics ({", ".join(f'"{s}" {s}' for s in sizes)})
set grid xtics ytics mytics
set key outside right top
set xrange [{sizes[0] / 1.3}:{sizes[-1] * 1.3}]
plot """ + ", \\\n     ".join(
        f'"{data}" index {i} using 1:2:3:4 with yerrorlines lw 2 pt {i % 12 + 1} lc rgb "{COLORS[i % len(COLORS)]}" '
        f'dt {1 + i // len(COLORS)} title "{n}"' for i, n in enumerate(names))
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eopt", default="build/eopt")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sizes", default="128,256,512,1024")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--note", default="", help="a line about the machine's state (shared, busy, ...)")
    ap.add_argument("--emerging", help="git repository of NVIDIA-NeMo/Emerging-Optimizers (bench/upstream.py)")
    ap.add_argument("--dion", help="git repository of microsoft/dion (bench/upstream.py)")
    ap.add_argument("--checkouts", default="/tmp/eopt-upstream")
    ap.add_argument("--upstream-sizes", default="256,512")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("make bench: gnuplot is missing (Debian: apt-get install gnuplot-nox)")
    common = ["--threads", str(a.threads), "--steps", str(a.steps)]
    sizes = [f"{n}x{n}" for n in a.sizes.split(",")]
    host = machine(a.eopt, a.threads)
    opt = []
    for cls in CLASSES:
        opt += eopt_rows(a.eopt, ["optimizer", "--optimizer", cls] + sum((["--shape", s] for s in sizes), []) + common)
    ns = eopt_rows(a.eopt, ["ns"] + common)
    train = [eopt_rows(a.eopt, ["train", c, "--threads", str(a.threads), "--steps", "20"])[0] for c in TRAIN_CONFIGS]
    ckpt = eopt_rows(a.eopt, ["checkpoint", "--threads", str(a.threads)])[0]
    upstream = []
    if a.emerging and a.dion:
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream.py"),
               "--emerging", a.emerging, "--dion", a.dion, "--checkouts", a.checkouts, "--eopt", a.eopt,
               "--threads", str(a.threads), "--steps", str(a.steps), "--json"]
        cmd += sum((["--shape", f"{n}x{n}"] for n in a.upstream_sizes.split(",")), [])
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        upstream = [json.loads(line) for line in out.splitlines() if line.strip()]

    os.makedirs(a.out, exist_ok=True)
    date = datetime.date.today().isoformat()
    md, png = os.path.join(a.out, date + ".md"), os.path.join(a.out, date + ".png")
    plot(opt, png)
    text = [f"# eopt bench, {date}", "", f"Machine: {host}.", ""]
    if a.note:
        text += [a.note, ""]
    text += ["Command: `make bench` (bench/report.py, `eopt bench ... --json`). Ratio = the median step time over "
             "the time of a float32 sgemm of the same flops, measured in the same run (1 = the optimizer runs "
             "at sgemm speed; element-wise optimizers are memory bound and far above 1). Flops are counted "
             "from the operations that run (train/bench.h).", "",
             f"## Optimizer step ({a.steps} timed steps after 2 warm-up, default arguments, lr 1e-3)", ""]
    text += optimizer_table(opt)
    text += ["", f"![step time against size]({date}.png)", "",
             "## Flops of one step by operation (largest size)", ""] + flops_table(opt)
    text += ["", "## Newton-Schulz (quintic, 5 iterations)", ""] + optimizer_table(ns)
    text += ["", "## Training step (20 timed steps after 2 warm-up; backward = forward+backward - forward)", ""]
    text += train_table(train)
    if upstream:
        text += ["", "## Upstream side by side (bench/upstream.py; run-time patches listed there)", ""]
        text += upstream_table(upstream)
    text += ["", "## Checkpoint", "",
             f"{ckpt['mib']:.0f} MiB (22 x [4096, 1024] weights + AdamW state): save {ckpt['save_s']:.2f} s "
             f"({ckpt['save_ratio']:.2f}x cp + fsync of the file, {ckpt['copy_sync_s']:.2f} s); guard + open "
             f"{ckpt['open_s']:.2f} s; load (guard, open, apply) {ckpt['load_s']:.2f} s ({ckpt['load_ratio']:.2f}x "
             f"cp of the file, {ckpt['copy_s']:.2f} s); CPU: save {ckpt['save_cpu_s']:.2f} s, cp {ckpt['copy_cpu_s']:.2f} s, load {ckpt['load_cpu_s']:.2f} s.", ""]
    with open(md, "w") as f:
        f.write("\n".join(text))
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
