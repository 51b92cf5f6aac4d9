#!/usr/bin/env bash
# test_clip_gpu (the CUDA CLIP encoder against clip_encode, then timed at full size) on the GPU
# host; WM_CLIP_TEST_PARTS=a,b,c picks the parts. Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_clip_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_clip_gpu "${1:-build-cu}"
