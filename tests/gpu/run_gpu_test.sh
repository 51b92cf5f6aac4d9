#!/usr/bin/env bash
# Runs a GPU-host test program built on a machine without a GPU (CUDA on, e.g. in build-cu/).
#
#   on the build machine:  tests/gpu/run_gpu_test.sh --bundle NAME [BUILD]
#     copies the shared libraries BUILD/tests/NAME needs that the GPU image may lack (OpenBLAS
#     with its Fortran runtime, cJSON, libgomp, libpng, libjpeg: everything ldd resolves outside
#     glibc, libstdc++, libgcc and the CUDA toolkit) into BUILD/gpu-libs, to carry with it.
#   on the GPU host:       tests/gpu/run_gpu_test.sh NAME [BUILD]
#     runs it with BUILD/gpu-libs and the toolkit's libcudart / libcublasLt on the library path;
#     the log also goes to $OUT/NAME.log when $OUT is set.
# BUILD defaults to build-cu. Exit status: the program's (0 pass, 1 a check failed, 2 setup or
# CUDA error), 3 if the binary or a library is missing.
set -euo pipefail

mode=run
if [[ "${1:-}" == "--bundle" ]]; then
    mode=bundle
    shift
fi
name="${1:?usage: run_gpu_test.sh [--bundle] NAME [BUILD]}"
build="${2:-build-cu}"
bin="$build/tests/$name"
libs="$build/gpu-libs"
[[ -x "$bin" ]] || { echo "no $bin: build it first" >&2; exit 3; }

if [[ "$mode" == bundle ]]; then
    mkdir -p "$libs"
    ldd "$bin" | awk '/=> \//{print $1, $3}' | while read -r name path; do
        case "$name" in
            libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libgcc_s.so.*|libstdc++.so.*) continue ;;
        esac
        case "$path" in /usr/local/cuda*) continue ;; esac
        cp -L "$path" "$libs/$name"
        echo "bundled $name ($path)"
    done
    du -sh "$libs"
    exit 0
fi

cuda_lib=""
# the toolkit's libraries first; PyTorch's CUDA 13 wheels (nvidia/*/lib) as a last resort
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
         /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib \
         /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib; do
    if [[ -d "$d" ]]; then cuda_lib="$cuda_lib:$d"; fi
done
export LD_LIBRARY_PATH="$libs$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# the CPU reference: idle OpenMP workers must not spin against OpenBLAS (eng_cpu_threads_setup)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
if ldd "$bin" | grep "not found"; then
    echo "missing libraries (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
    exit 3
fi
if [[ -n "${OUT:-}" ]]; then
    "$bin" 2>&1 | tee "$OUT/$name.log"
    exit "${PIPESTATUS[0]}"
else
    "$bin"
fi
