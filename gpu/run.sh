#!/bin/sh
# gpu-check/run.sh: the one prepared check on a lent GPU (docs/gpu.md). Made by `make gpu-check`
# (which copies this file from gpu/run.sh); run from the repository root on the device:
#     sh gpu-check/run.sh        (the device tool: carry ["gpu-check"], timeout_s 540)
# Needs nothing but the folder, the repository's tracked files, the image's CUDA 13 libraries, an
# NVIDIA GPU and python3 with torch. Under 8 minutes; each part has its own time limit, so a hang
# costs that part only. Writes to $OUT (default /tmp/eopt-gpu-check-out):
#   tests.log      the whole test suite with EOPT_DEVICE=cuda
#   rows.jsonl     one JSON row per measurement (ns, optimizer, gpt2_small), each beside its reference
#   report.md      the table of the rows against the issue's targets
#   bench.log      the benchmarks' own output and errors
# Exit status: 0 all ran, 1 a part failed (named on the last line), 2 the folder or a library is
# missing, 3 no usable GPU here (the one line says why; nothing was measured).
set -u
GC=$(cd "$(dirname "$0")" && pwd)
cd "$GC/.." || exit 2
OUT=${OUT:-/tmp/eopt-gpu-check-out}
W=${GPU_CHECK_WORK:-/tmp/eopt-gpu-check}
mkdir -p "$OUT" "$W" || exit 2
say() { echo "gpu-check: $*"; }

# tar needs the xz program for .tar.xz; Python's tarfile (lzma) stands in where the image lacks it.
unpack() {
    tar -C "$W" -xJf "$1" 2>/dev/null || python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' "$1" "$W"
}
for t in libs fixtures upstream; do
    [ -f "$GC/$t.tar.xz" ] || { say "$GC/$t.tar.xz is missing: run \`make gpu-check\` and carry gpu-check/"; exit 2; }
    unpack "$GC/$t.tar.xz" || { say "cannot unpack $t.tar.xz into $W"; exit 2; }
done
[ -e data/moby-dick.txt ] || { mkdir -p data && cp "$GC/data/moby-dick.txt" data/ 2>/dev/null; }

# The CUDA 13 libraries of the image: the toolkit's folder, else the pip wheels PyTorch uses.
cuda_lib=
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
         /usr/local/cuda-13*/lib $(python3 -c 'import nvidia, os; [print(os.path.join(p, q, "lib")) for p in nvidia.__path__ for q in os.listdir(p)]' 2>/dev/null); do
    [ -e "$d/libcusolver.so.12" ] && [ -e "$d/libcublas.so.13" ] && { cuda_lib=$d; break; }
done
export LD_LIBRARY_PATH="$W/lib${cuda_lib:+:$cuda_lib}"
missing=$(for b in "$GC"/bin/*; do ldd "$b"; done 2>&1 | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
[ -z "$missing" ] || { say "libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH): $missing"; exit 2; }

# No GPU: one line, nothing run. The device's own message (no driver, no device) says which.
if ! gpu=$("$GC/bin/eopt" selfcheck cuda 2>&1); then
    printf '%s\n' "$gpu" >"$OUT/selfcheck.log"
    case $gpu in
    *"selfcheck FAILED"*) say "eopt selfcheck failed on the GPU (see $OUT/selfcheck.log): nothing measured"; exit 1 ;;
    esac
    say "no usable GPU here ($(printf '%s\n' "$gpu" | grep -m1 -i 'cuda\|gpu\|device' | cut -c1-240)): nothing measured"
    exit 3
fi
say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
failed=

# 1. The whole test suite on the GPU (Criterion: one process per test, 8 at a time).
say "tests (EOPT_DEVICE=cuda) ..."
EOPT_DEVICE=cuda EOPT_FIXTURES="$W/fixtures" EOPT_BIN="$GC/bin/eopt" OMP_NUM_THREADS=2 \
    timeout 200 "$GC/bin/eopt-tests" --jobs 8 >"$OUT/tests.log" 2>&1 || failed="$failed tests"
grep -a 'Synthesis' "$OUT/tests.log" | tail -1

rows=$OUT/rows.jsonl
: >"$rows"
# 2. Newton-Schulz against cuBLAS GEMMs of the same flops and precision.
say "Newton-Schulz ..."
timeout 60 "$GC/bin/eopt-ns-bench" 4096 8192 >>"$rows" 2>>"$OUT/bench.log" || failed="$failed ns"
# 3. One step of four optimizers, eopt and upstream PyTorch at the pinned commits.
say "optimizer steps ..."
PYTHONUNBUFFERED=1 timeout 170 python3 "$GC/upstream.py" --device cuda --checkouts "$W/upstream" \
    --eopt "$GC/bin/eopt" --optimizer Muon --optimizer NorMuon --optimizer SOAP --optimizer MOSO \
    --shape 4096x4096 --shape 4096x16384 --steps 5 --warmup 2 --threads 8 --json \
    2>>"$OUT/bench.log" | sed 's/^{/{"bench": "optimizer", /' >>"$rows" || failed="$failed optimizer"
# 4. GPT-2 small: eopt's training step on a synthetic llm.c shard, then PyTorch's same model.
say "GPT-2 small ..."
python3 - "$W/tokens.bin" <<'EOF'
import struct, sys, random
n = 4_000_000
rng = random.Random(0)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
    f.write(struct.pack(f"<{n}H", *(rng.randrange(50257) for _ in range(n))))
EOF
timeout 90 "$GC/bin/eopt" bench train configs/gpt2_small_gpu.cfg --device cuda --steps 10 --warmup 3 --json \
    --set "data.train=\"$W/tokens.bin\"" --set "data.val=\"$W/tokens.bin\"" >>"$rows" 2>>"$OUT/bench.log" ||
    failed="$failed gpt2-eopt"
PYTHONUNBUFFERED=1 timeout 90 python3 "$GC/torch_gpt.py" --emerging "$(ls -d "$W"/upstream/emerging-b309e2f)" \
    --steps 10 --warmup 3 >>"$rows" 2>>"$OUT/bench.log" || failed="$failed gpt2-pytorch"

# 5. The report: every row beside its reference and the issue's target.
python3 - "$rows" "$OUT/report.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
out = ["# make gpu-check", "", "| measurement | eopt | reference | ratio | target | met |",
       "| --- | --- | --- | --- | --- | --- |"]
fmt = lambda v, f: "-" if v is None else f.format(v)
for r in rows:
    if r.get("bench") == "ns":
        out.append("| NS quintic x5 %d^2 %s | %.2f ms, %.0f TFLOP/s | cuBLAS GEMM %.0f TFLOP/s | %.2f of GEMM rate "
                   "| >= 0.70 | %s |" % (r["n"], r["prec"], 1e3 * r["ns_s"], r["ns_tflops"], r["gemm_tflops"],
                                        r["ratio"], r["ratio"] >= 0.7))
    elif r.get("bench") == "optimizer":
        e, u = r.get("eopt_s"), r.get("upstream_s")
        q = e / u if e and u else None
        out.append("| %s step %s | %s | %s %s | %s | <= 0.60 | %s |" % (
            r["name"], r["shape"], fmt(e and 1e3 * e, "{:.2f} ms"), r["upstream"], fmt(u and 1e3 * u, "{:.2f} ms"),
            fmt(q, "{:.2f} x upstream"), q is not None and q <= 0.6))
eo = next((r for r in rows if r.get("bench") == "train"), None)
pt = next((r for r in rows if r.get("bench") == "gpt2_small"), None)
fixed = ("data_share", "forward_share", "backward_share")
share = sum(v for k, v in eo.items() if k.endswith("_share") and k not in fixed) if eo else None
etok, ptok = eo and eo["tokens_per_s"], pt and pt["tokens_per_s"]
out.append("| GPT-2 small tokens/s | %s | %s %s | %s | >= 1.00 | %s |" % (
    fmt(etok, "{:.0f}"), pt and pt["impl"], fmt(ptok, "{:.0f}"), fmt(etok and ptok and etok / ptok, "{:.2f}"),
    bool(etok and ptok and etok >= ptok)))
out.append("| GPT-2 small optimizer share of a step | %s | %s | | < 10%% | %s |" % (
    fmt(share, "{:.1%}"), fmt(pt and pt["optimizer_share"], "{:.1%}"), share is not None and share < 0.1))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
[ -z "$failed" ] || { say "failed:$failed (see $OUT/tests.log, $OUT/bench.log)"; exit 1; }
say "done: $OUT/report.md, $OUT/rows.jsonl"
