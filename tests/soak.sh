#!/bin/sh
# `make soak`: long runs of the small GPT (configs/gpt_*.cfg), one per matrix optimizer, with the
# resident memory sampled every second. One line each: RSS after warm-up (the first 20% of the
# samples: the first evaluation and checkpoint come at 10% of the steps) and at the end,
# non-finite steps, the first and last train and eval losses; "ok" when RSS stays within 5%
# (+1 MiB) of its post-warm-up value, no step was non-finite, the run exited 0 and both losses
# fell. Not run in CI (20,000 steps x 9 optimizers is hours on 2 cores).
#
#   STEPS    steps per run (20000)
#   CONFIGS  config names under configs/ (every gpt_* with a matrix optimizer)
#   THREADS  run.threads (2)
#   OUT      folder for the run folders and samples (/tmp/eopt-soak)
#   EOPT_BIN the binary (build/eopt)
set -eu
cd "$(dirname "$0")/.."
BIN=${EOPT_BIN:-build/eopt}
STEPS=${STEPS:-20000}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/eopt-soak}
CONFIGS=${CONFIGS:-"gpt_muon_adamw gpt_normuon gpt_adaptive_muon gpt_muown gpt_dion_muon gpt_dion2 gpt_nordion2 gpt_moso gpt_soap"}
[ -x "$BIN" ] || { echo "soak: $BIN not built (make first)" >&2; exit 2; }
mkdir -p "$OUT"
status=0

# "<first> <last>" of a metrics key over the lines that have it (mean of the first and last 5).
first_last() {
    awk -v key="\"$1\": " '
        { i = index($0, key); if (!i) next; v = substr($0, i + length(key)) + 0; x[n++] = v }
        END { if (n == 0) { print "nan nan"; exit } k = n < 5 ? n : 5; a = b = 0
              for (j = 0; j < k; j++) { a += x[j]; b += x[n - 1 - j] } printf "%.4f %.4f\n", a / k, b / k }' "$2"
}

for c in $CONFIGS; do
    dir="$OUT/$c"
    rm -rf "$dir" "$dir.rss" "$dir.log"
    start=$(date +%s)
    "$BIN" train "configs/$c.cfg" --run-dir "$dir" --set "run.steps=$STEPS" --set "run.threads=$THREADS" \
        --set run.sample_tokens=0 --set "run.eval_interval=$((STEPS / 10))" \
        --set "checkpoint.interval=$((STEPS / 10))" --set "log.interval=$((STEPS / 200 > 0 ? STEPS / 200 : 1))" \
        --set 'log.progress="none"' >"$dir.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null >>"$dir.rss" || true
        sleep 1
    done
    rc=0
    wait "$pid" || rc=$?
    secs=$(($(date +%s) - start))
    class=$(awk -F'"' '/class = / && $2 != "AdamW" { print $2; exit }' "configs/$c.cfg")
    nonfinite=$(grep -c '"event": "nonfinite"' "$dir/metrics.jsonl" 2>/dev/null || true)
    set -- $(first_last train_loss "$dir/metrics.jsonl") $(first_last eval_loss "$dir/metrics.jsonl")
    line=$(awk -v rc="$rc" -v nf="${nonfinite:-0}" -v t0="$1" -v t1="$2" -v e0="$3" -v e1="$4" '
        { r[n++] = $1 / 1024 }
        END { w = int(n / 5); if (n == 0) { print "no RSS samples: FAIL"; exit }
              peak = 0; for (j = w; j < n; j++) if (r[j] > peak) peak = r[j]
              g = 100 * (r[n - 1] - r[w]) / r[w]
              ok = rc == 0 && nf == 0 && t1 < t0 && e1 < e0 && r[n - 1] <= 1.05 * r[w] + 1 && peak <= 1.05 * r[w] + 1
              printf "RSS %.1f MiB after warm-up -> %.1f MiB at the end (%+.1f%%, peak %.1f), %d non-finite steps, " \
                     "train loss %s -> %s, eval loss %s -> %s, exit %d: %s\n",
                     r[w], r[n - 1], g, peak, nf, t0, t1, e0, e1, rc, ok ? "ok" : "FAIL" }' "$dir.rss")
    echo "soak: $c ($class) $STEPS steps, ${secs}s: $line"
    case "$line" in *": ok") ;; *) status=1 ;; esac
done
exit $status
