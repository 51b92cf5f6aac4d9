#!/usr/bin/env bash
# test_backend_gpu (the engine's CUDA backend through engine.h against CPU reference sessions) on
# the GPU host. Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_backend_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_backend_gpu "${1:-build-cu}"
