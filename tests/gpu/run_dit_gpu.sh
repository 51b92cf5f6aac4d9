#!/usr/bin/env bash
# test_dit_gpu (the CUDA DiT against CPU reference sessions, then timed at full size) on the GPU
# host; WM_DIT_TEST_PARTS=a,b,c picks the parts. Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_dit_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_dit_gpu "${1:-build-cu}"
