#!/usr/bin/env bash
# Build and run the whole test suite three times: a normal build (with
# -Werror), an ASan+UBSan build and a TSan build; then the unit, sched,
# alloc and wire tests of the normal build once more under valgrind
# memcheck. Installs missing Debian packages first. Pass "quick" to run the
# normal build only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
toolcall_install_deps valgrind

jobs=$(nproc)
run() { # run NAME CMAKE-ARGS...
  local name=$1; shift
  local dir=build/test-$name
  echo "== $name: configure, build, test"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOOLCALL_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  ctest --test-dir "$dir" -j"$jobs" --output-on-failure
}

start=$(date +%s)
# Every test labelled unit, sched, alloc or wire, under valgrind: no
# invalid access, no uninitialised read, no definite or indirect leak.
memcheck() {
  local dir=build/test-default
  echo "== memcheck: unit, sched, alloc and wire tests under valgrind"
  local tests
  tests=$(ctest --test-dir "$dir" -N -L '^(unit|sched|alloc|wire)$' |
          sed -n 's/^ *Test *#[0-9]*: //p' | grep -v '^example_')
  for t in $tests; do
    echo "-- valgrind $t"
    valgrind -q --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
      "$dir/tests/test_$t" | tail -n 3
  done
}

run default
if [ "${1:-}" != quick ]; then
  memcheck
  run asan -DTOOLCALL_SANITIZE=address -DTOOLCALL_BUILD_BENCH=OFF
  run tsan -DTOOLCALL_SANITIZE=thread -DTOOLCALL_BUILD_BENCH=OFF
fi
echo "== all test runs passed in $(( $(date +%s) - start ))s"
