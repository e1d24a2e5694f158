#!/usr/bin/env bash
# check_install.sh <build-dir> <source-dir>
#
# Installs a built toolcall into a temporary prefix and builds a small
# consumer program against the installed tree only, three ways:
#   1. pkg-config, shared library (rpath into the prefix);
#   2. pkg-config --static, with libtoolcall.a (libtoolcall must not be a
#      run-time dependency);
#   3. CMake, find_package(toolcall) + toolcall::toolcall (and
#      toolcall::toolcall_static).
# Each program must print "ok". The compiler and the sanitizer flags are
# taken from the build's CMakeCache.txt, so sanitizer builds pass too.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <build-dir> <source-dir>" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
consumer_src=$src/tests/install/consumer.c
[[ -f $build/CMakeCache.txt ]] || { echo "FAIL: $build is not a CMake build dir" >&2; exit 1; }
[[ -f $consumer_src ]] || { echo "FAIL: $consumer_src not found" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/toolcall-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tmp=$(cd "$tmp" && pwd -P) # no symlinks: paths are compared with ldd's
prefix=$tmp/prefix

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

cache_get() { # cache_get VAR: the value of VAR in the build's cache, or ""
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1
}
cc=$(cache_get CMAKE_C_COMPILER)
[[ -n $cc ]] || cc=${CC:-cc}
case $(cache_get TOOLCALL_SANITIZE) in
  "") san=() ;;
  address) san=(-fsanitize=address,undefined) ;;
  thread) san=(-fsanitize=thread) ;;
  *) fail "unknown TOOLCALL_SANITIZE in $build/CMakeCache.txt" ;;
esac
warn=(-Wall -Wextra -Werror)

# run_ok NAME: run $tmp/NAME and require exactly "ok" on stdout.
run_ok() {
  local out
  out=$("$tmp/$1") || fail "$1 exited with status $?"
  [[ $out == ok ]] || fail "$1 printed '$out', expected 'ok'"
  echo "$1: ok"
}

step "install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install"; }

# The libdir is lib, lib64 or lib/<multiarch>: find it from the .pc file.
mapfile -t pcs < <(find "$prefix" -path '*/pkgconfig/toolcall.pc')
[[ ${#pcs[@]} -eq 1 ]] || fail "expected one toolcall.pc under $prefix, found ${#pcs[@]}"
pcdir=$(dirname "${pcs[0]}")
libdir=$(dirname "$pcdir")
echo "libdir: ${libdir#"$prefix"/}"
[[ -f $prefix/include/toolcall.h ]] || fail "include/toolcall.h not installed"
[[ -f $libdir/libtoolcall.a ]] || fail "libtoolcall.a not installed in $libdir"
compgen -G "$libdir/libtoolcall.so.*" >/dev/null || fail "libtoolcall.so.* not installed in $libdir"

export PKG_CONFIG_PATH=$pcdir
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR

step "pkg-config: $(pkg-config --modversion toolcall)"
read -r -a cflags <<<"$(pkg-config --cflags toolcall)"
read -r -a libs <<<"$(pkg-config --libs toolcall)"
echo "cflags: ${cflags[*]}"
echo "libs:   ${libs[*]}"
# The .pc file locates the prefix from where it lies: it must point into
# the temporary prefix, not the configured one.
incdir=
for f in "${cflags[@]}"; do
  [[ $f == -I* ]] && incdir=$(realpath -m -- "${f#-I}")
done
[[ $incdir == "$prefix/include" ]] || fail "--cflags does not point to $prefix/include"

step "pkg-config, shared"
"$cc" "${warn[@]}" "${san[@]}" "$consumer_src" -o "$tmp/consumer_shared" \
  "${cflags[@]}" "${libs[@]}" -Wl,-rpath,"$libdir"
ldd "$tmp/consumer_shared" | grep -F "libtoolcall.so" | grep -qF "$libdir/" ||
  { ldd "$tmp/consumer_shared" >&2; fail "consumer_shared does not use $libdir/libtoolcall.so"; }
run_ok consumer_shared

step "pkg-config --static, libtoolcall.a"
read -r -a slibs <<<"$(pkg-config --static --libs toolcall)"
echo "libs:   ${slibs[*]}"
# -ltoolcall would pick the .so that lies next to the .a: name the archive.
found=0
for i in "${!slibs[@]}"; do
  if [[ ${slibs[$i]} == -ltoolcall ]]; then
    slibs[$i]=$libdir/libtoolcall.a
    found=1
  fi
done
[[ $found -eq 1 ]] || fail "pkg-config --static --libs has no -ltoolcall"
read -r -a scflags <<<"$(pkg-config --static --cflags toolcall)"
"$cc" "${warn[@]}" "${san[@]}" "$consumer_src" -o "$tmp/consumer_static" \
  "${scflags[@]}" "${slibs[@]}"
if ldd "$tmp/consumer_static" | grep -F libtoolcall; then
  fail "consumer_static depends on a shared libtoolcall"
fi
run_ok consumer_static

step "CMake find_package(toolcall)"
cmake -S "$src/tests/install" -B "$tmp/cmake-build" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="${warn[*]} ${san[*]}" \
  -DCMAKE_EXE_LINKER_FLAGS="${san[*]}" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log" >&2; fail "configuring the CMake consumer"; }
found_dir=$(sed -n 's/^toolcall_DIR:[A-Z]*=//p' "$tmp/cmake-build/CMakeCache.txt")
echo "toolcall_DIR: $found_dir"
[[ $found_dir == "$prefix"/* ]] || fail "find_package found toolcall outside $prefix"
cmake --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; fail "building the CMake consumer"; }
cp "$tmp/cmake-build/consumer" "$tmp/cmake-build/consumer_static" "$tmp/"
mv "$tmp/consumer" "$tmp/cmake_consumer"
mv "$tmp/consumer_static" "$tmp/cmake_consumer_static"
ldd "$tmp/cmake_consumer" | grep -F "libtoolcall.so" | grep -qF "$libdir/" ||
  { ldd "$tmp/cmake_consumer" >&2; fail "cmake_consumer does not use $libdir/libtoolcall.so"; }
if ldd "$tmp/cmake_consumer_static" | grep -F libtoolcall; then
  fail "cmake_consumer_static depends on a shared libtoolcall"
fi
run_ok cmake_consumer
run_ok cmake_consumer_static

echo "install test passed"
