#!/usr/bin/env bash
# Build toolcall and run its demo. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
toolcall_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target agent_demo
./build/examples/agent_demo "$@"
