#!/usr/bin/env bash
# test_vae_gpu (the CUDA VAE against the CPU reference, then timed at full size) on the GPU host;
# WM_VAE_TEST_PARTS=k,a,b,c,t picks the parts. Usage as run_gpu_test.sh: [--bundle] [BUILD].
here="$(dirname "$0")"
if [[ "${1:-}" == "--bundle" ]]; then exec "$here/run_gpu_test.sh" --bundle test_vae_gpu "${2:-build-cu}"; fi
exec "$here/run_gpu_test.sh" test_vae_gpu "${1:-build-cu}"
