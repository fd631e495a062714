#!/bin/sh
# An installed eopt works for a program outside the tree: `make install` into a fresh prefix
# (reusing the built $BUILD), then examples/muon_step.c built against that prefix with
# pkg-config, dynamically and statically, and run without LD_LIBRARY_PATH. Also: the shared
# library has a SONAME and the public header compiles alone as C11 (and C++ where there is one).
set -eu
cd "$(dirname "$0")/.."
fail() { echo "install: $*" >&2; exit 1; }
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
unset MAKEFLAGS MFLAGS MAKELEVEL # a plain make, told the configuration to install
make -s install BUILD="${BUILD:-build}" CUDA="${CUDA:-}" PREFIX="$prefix" >/dev/null || fail "make install failed"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
unset LD_LIBRARY_PATH
lib="$prefix/lib"

readelf -d "$lib/libeopt.so.0" | grep -q 'SONAME.*\[libeopt\.so\.0\]' || fail "libeopt.so has no SONAME libeopt.so.0"
[ -L "$lib/libeopt.so" ] || fail "libeopt.so is not a symlink to the versioned library"

CFLAGS="-std=c11 -Wall -Wextra -Werror"
printf '#include <eopt/eopt.h>\n' > "$prefix/h.c"
cc $CFLAGS $(pkg-config --cflags eopt) -fsyntax-only "$prefix/h.c" || fail "eopt.h does not compile alone as C"
if command -v c++ >/dev/null; then
  c++ -x c++ -Wall -Wextra -Werror $(pkg-config --cflags eopt) -fsyntax-only "$prefix/h.c" ||
    fail "eopt.h does not compile as C++"
fi

# Dynamic: -leopt alone, found at run time through the rpath that eopt.pc's Libs add.
cc $CFLAGS $(pkg-config --cflags eopt) examples/muon_step.c -o "$prefix/dynamic" $(pkg-config --libs eopt)
# Static: the archive, then what it needs (--static adds Libs.private); --as-needed drops the
# -leopt that would otherwise also record libeopt.so.
cc $CFLAGS $(pkg-config --cflags eopt) examples/muon_step.c -o "$prefix/static" \
   -Wl,--as-needed "$lib/libeopt.a" $(pkg-config --static --libs eopt)
readelf -d "$prefix/static" | grep -q 'NEEDED.*libeopt' && fail "the static build still needs libeopt.so"
for kind in dynamic static; do
  out=$("$prefix/$kind" "$prefix/$kind.h5" 2>&1) || fail "$kind example failed: $out"
done
echo "install: ok (headers, libeopt.a, libeopt.so.0, eopt.pc; example linked dynamically and statically)"
