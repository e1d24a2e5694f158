#!/usr/bin/env bash
# Build and run the whole test suite three times: a normal build (with
# -Werror), an ASan+UBSan build and a TSan build. Installs missing Debian
# packages first. Pass "quick" to run the normal build only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
toolcall_install_deps

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
run default
if [ "${1:-}" != quick ]; then
  run asan -DTOOLCALL_SANITIZE=address -DTOOLCALL_BUILD_BENCH=OFF
  run tsan -DTOOLCALL_SANITIZE=thread -DTOOLCALL_BUILD_BENCH=OFF
fi
echo "== all test runs passed in $(( $(date +%s) - start ))s"
