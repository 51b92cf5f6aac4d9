#!/usr/bin/env bash
# test_dit_kernels_gpu (each bf16 kernel against the CPU reference, then timed) on the GPU host.
# Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_dit_kernels_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_dit_kernels_gpu "${1:-build-cu}"
