#!/bin/sh
# The CPU, CUDA and MPI builds live in separate folders: `make CUDA=1` (and its tests) must write
# nothing under build/, the plain build nothing under build-cuda/, `make MPI=1` nothing under
# build/ (and only it compiles comm_mpi.c), `make CUDA=1 MPI=1` into build-cuda-mpi/ with NCCL. Checked on `make -n -B`
# (print every command, run none), so no compiler runs and no GPU toolkit is needed.
set -eu
cd "$(dirname "$0")/.."
unset MAKEFLAGS MFLAGS MAKELEVEL BUILD CUDA MPI # the caller's make settings must not leak in
fail() { echo "build_dirs: $*" >&2; exit 1; }

# Words of the printed commands that name a path in or under folder $2 (build/x, -o build/x).
under() { printf '%s\n' "$1" | tr ' =' '\n\n' | grep -E "^(-o)?$2/" || true; }

plain=$(make -n -B all test test-asan)
cuda=$(make -n -B CUDA=1 all test test-asan)
[ -n "$(under "$cuda" build-cuda)" ] || fail "make CUDA=1 builds nothing in build-cuda/"
[ -n "$(under "$cuda" build-cuda-asan)" ] || fail "make CUDA=1 test-asan builds nothing in build-cuda-asan/"
[ -z "$(under "$cuda" build)" ] || fail "make CUDA=1 writes into build/: $(under "$cuda" build | head -3)"
[ -z "$(under "$cuda" build-asan)" ] || fail "make CUDA=1 test-asan writes into build-asan/"
printf '%s\n' "$cuda" | grep -q nvcc || fail "make CUDA=1 compiles no CUDA source"
[ -n "$(under "$plain" build)" ] || fail "make builds nothing in build/"
[ -z "$(under "$plain" build-cuda)" ] || fail "make writes into build-cuda/"
printf '%s\n' "$plain" | grep -q nvcc && fail "make (no CUDA) runs nvcc"
mpi=$(make -n -B MPI=1 all)
[ -n "$(under "$mpi" build-mpi)" ] || fail "make MPI=1 builds nothing in build-mpi/"
[ -z "$(under "$mpi" build)" ] || fail "make MPI=1 writes into build/: $(under "$mpi" build | head -3)"
printf '%s\n' "$mpi" | grep -q comm_mpi || fail "make MPI=1 compiles no framework/comm_mpi.c"
printf '%s\n' "$plain" | grep -q comm_mpi && fail "make (no MPI) compiles framework/comm_mpi.c"
cudampi=$(make -n -B CUDA=1 MPI=1 all)
[ -z "$(under "$cudampi" build-cuda)" ] || fail "make CUDA=1 MPI=1 writes into build-cuda/"
printf '%s\n' "$cudampi" | grep -q -- -lnccl || fail "make CUDA=1 MPI=1 links no NCCL"
echo "build_dirs: ok (build/, build-cuda/, build-cuda-asan/, build-mpi/, build-cuda-mpi/ kept apart)"
