#!/bin/sh
# Installs the Debian packages eopt's build, tests and default run need, only when missing.
set -e
PKGS="build-essential pkg-config libopenblas-dev liblapacke-dev libhdf5-dev hdf5-tools libcriterion-dev libconfig-dev
python3 python3-numpy python3-h5py python3-torch dataset-fashion-mnist npm"
missing=""
for p in $PKGS; do
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
