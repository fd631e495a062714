#!/bin/sh
# gpu/pack.sh (run by `make gpu-check`, with the CUDA build's CC, CFLAGS, LDLIBS, BUILD, FIXTURES):
# gathers into gpu-check/ (git-ignored) what the lent H200 needs to run the CUDA test suite and the
# benchmarks of docs/gpu.md, none of which it can build or install itself:
#   bin/       eopt, eopt-tests and eopt-ns-bench, relinked without the OpenBLAS rpath (so that
#              LD_LIBRARY_PATH alone decides) and stripped
#   libs.tar.xz  every shared library ldd lists for them except those the device's image has
#              (glibc, libstdc++, libgcc_s, the CUDA 13 libraries): HDF5, libconfig, OpenBLAS,
#              LAPACKE, gfortran, Criterion and their own dependencies
#   fixtures.tar.xz, upstream.tar.xz  the golden fixtures and the pinned upstream optimizers
#              (Emerging-Optimizers, dion: their Python packages only; never committed)
#   data/      the default text corpus; run.sh, torch_gpt.py, upstream.py: the scripts
# Compressed because the uncompressed libraries alone are over the 64 MiB a device call carries.
# Ends by checking, with an empty environment, that every library resolves from the folder or
# from the set the device has.
set -eu
: "${BUILD:?}" "${CC:?}" "${FIXTURES:?}"
UPSTREAM=${UPSTREAM:-/work/upstream}
OUT=gpu-check
STAGE=$BUILD/gpu-stage
rm -rf "$OUT" "$STAGE"
mkdir -p "$OUT/bin" "$STAGE/lib" "$STAGE/upstream"

# The OpenBLAS rpath of the normal build points into this machine's /usr; drop it.
libs=$(printf '%s\n' "$LDLIBS" | sed 's/-Wl,--disable-new-dtags,-rpath,[^ ]*//')
# shellcheck disable=SC2086
$CC $CFLAGS -o "$OUT/bin/eopt" "$BUILD/cmd/main.o" "$BUILD/libeopt.a" $libs
# shellcheck disable=SC2086
$CC $CFLAGS -o "$OUT/bin/eopt-tests" "$BUILD"/tests/*.o "$BUILD/libeopt.a" -lcriterion $libs
# shellcheck disable=SC2086
$CC $CFLAGS -o "$OUT/bin/eopt-ns-bench" gpu/ns_bench.c "$BUILD/libeopt.a" $libs
strip "$OUT"/bin/*

# A library the device's image provides (glibc, the C++ runtime, the CUDA 13 toolkit) stays
# behind; every other one goes. Resolved through the normal build (its rpath picks OpenBLAS's
# OpenMP build, the one eopt is linked and tested with).
device_has() {
    case $1 in
    linux-vdso.so.*|ld-linux-x86-64.so.*|libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*) return 0 ;;
    libstdc++.so.*|libgcc_s.so.*) return 0 ;;
    libcudart.so.*|libcublas.so.*|libcublasLt.so.*|libcusolver.so.*|libcusparse.so.*|libnvJitLink.so.*|libcurand.so.*) return 0 ;;
    esac
    return 1
}
for bin in "$BUILD/eopt" "$BUILD/eopt-tests"; do ldd "$bin"; done | awk '/=>/ && $3 ~ /^\// {print $1, $3}' | sort -u |
while read -r so path; do
    device_has "$so" || cp -L "$path" "$STAGE/lib/$so"
done

cp -r "$FIXTURES" "$STAGE/fixtures"
for d in "$UPSTREAM"/emerging-* "$UPSTREAM"/dion-*; do
    [ -d "$d" ] || continue
    mkdir -p "$STAGE/upstream/$(basename "$d")"
    for pkg in emerging_optimizers dion; do
        [ -d "$d/$pkg" ] && cp -r "$d/$pkg" "$STAGE/upstream/$(basename "$d")/"
    done
done
find "$STAGE/upstream" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$STAGE" -cJf "$OUT/libs.tar.xz" lib
tar -C "$STAGE" -cJf "$OUT/fixtures.tar.xz" fixtures
tar -C "$STAGE" -cJf "$OUT/upstream.tar.xz" upstream
mkdir -p "$OUT/data"
[ -f data/moby-dick.txt ] && cp data/moby-dick.txt "$OUT/data/"
cp gpu/run.sh gpu/torch_gpt.py bench/upstream.py "$OUT/"

# The rehearsal of run.sh's first part: with no environment but PATH and the folder's libraries,
# every library of every program resolves into the folder or into the set the device has.
missing=0
for bin in "$OUT"/bin/*; do
    env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$STAGE/lib" ldd "$bin" | awk '/=>/ {print $1, $3}' |
    while read -r so path; do
        case $path in
        "$STAGE"/lib/*) ;;
        *) device_has "$so" || { echo "gpu-check: $bin needs $so, found at $path: not in the folder" >&2; exit 1; } ;;
        esac
    done || missing=1
done
[ $missing -eq 0 ] || exit 1
rm -rf "$STAGE"
size=$(du -sk "$OUT" | cut -f1)
[ "$size" -lt 65536 ] || { echo "gpu-check: the folder is $((size / 1024)) MiB, over the 64 MiB a device call carries" >&2; exit 1; }
echo "gpu-check: $OUT/ is $((size / 1024)) MiB ($(ls "$OUT"/bin | wc -l) programs, $(tar -tJf "$OUT/libs.tar.xz" | grep -c '\.so') libraries); every library resolves from it or from the device's image"
