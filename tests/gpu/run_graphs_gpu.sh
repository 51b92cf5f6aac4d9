#!/usr/bin/env bash
# test_graphs_gpu (block graph replay vs eager, bit for bit, then timed at full size) on the GPU
# host; WM_GRAPHS_TEST_PARTS=a,b picks the parts. Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_graphs_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_graphs_gpu "${1:-build-cu}"
