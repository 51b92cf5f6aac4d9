#!/usr/bin/env bash
# Installs missing packages, builds, and runs the server (arguments are passed to it). Until the
# server exists this runs the offline generator on the synthetic tiny model instead.
# WM_CMAKE_ARGS="..." adds configure arguments (e.g. -DWM_CUDA=OFF), as in scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

read -r -a extra <<<"${WM_CMAKE_ARGS:-}"
scripts/setup-debian.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}"
cmake --build build

if [ -x build/server/wmserve ]; then
    exec build/server/wmserve "$@"
fi
echo "note: no server yet (it arrives with issue 4); running wmgen on the synthetic tiny model"
mkdir -p out
exec build/engine/wmgen --model synthetic:tiny --blocks 4 --out out/demo
