#!/usr/bin/env bash
# Gathers what the GPU host needs to run wmserve's GPU suite (scripts/gpu-suite.sh) into one
# folder, from a build made here with CUDA on. Builds nothing.
#
#   scripts/gpu-bundle.sh [BUILD [DEST]]      BUILD default build-cu, DEST default gpub-all
#
# DEST (ignored by git: /gpub-*/) gets
#   bin/      wmserve, wmgen, wmload and every GPU-host test program (BUILD/tests/test_*_gpu, and
#             test_backend, whose CUDA branch runs there), debug info stripped (symbols kept;
#             WM_BUNDLE_KEEP_DEBUG=1 keeps it)
#   lib/      every shared library they need that the GPU host may lack: all that ldd resolves
#             except glibc, libgcc_s, libstdc++, zlib and the CUDA toolkit's (the host, Ubuntu
#             24.04, has those, and CUDA 13.0 under /usr/local/cuda; ../shared/device.md). Files over 8 MB (OpenBLAS: 36 MB) are stored xz-compressed
#             as NAME.xz, which gpu-suite.sh unpacks, so the folder stays well under the 64 MiB a
#             device call carries.
#   evlib/    libwebsockets' libuv event-loop plugin (libwebsockets-evlib_uv.so) and LWS_DIR, the
#             directory libwebsockets was built to load it from (LWS_INSTALL_LIBDIR, compiled in:
#             found with `strings` on the library and checked against where the plugin lies here).
#             gpu-suite.sh copies the plugin there (it runs as root on the GPU host).
#   web/      the browser client; scenes/start.png (tests/fixtures); load/ (wmload's scenarios)
#   MANIFEST  commit, date, build settings, and every file with its source
# Exit status 0, or 1 with a message when something is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${1:-build-cu}"
dest="${2:-gpub-all}"
die() { echo "gpu-bundle: $*" >&2; exit 1; }

[[ -f "$build/CMakeCache.txt" ]] || die "$build is not a build folder (configure it with CUDA on)"
[[ -d "$build/engine/cuda" ]] || die "$build was configured without CUDA (no engine/cuda): configure it where nvcc is found"

bins=()
for b in server/wmserve engine/wmgen tests/load/wmload tests/test_backend; do
    [[ -x "$build/$b" ]] || die "missing $build/$b: build it first (ninja -C $build wmserve wmgen wmload test_backend)"
    bins+=("$build/$b")
done
shopt -s nullglob
gpu_tests=("$build"/tests/test_*_gpu)
shopt -u nullglob
(( ${#gpu_tests[@]} )) || die "no $build/tests/test_*_gpu: build the GPU test programs first"
bins+=("${gpu_tests[@]}")
[[ -x "$build/engine/wmbench" ]] && bins+=("$build/engine/wmbench") # the benchmark, when built

# The device code actually compiled (the cache's CMAKE_CUDA_ARCHITECTURES may be the compiler's
# default that CMakeLists.txt overrides): the GPU host is a Hopper card, so sm_90 code is needed.
archs=$(grep -oE 'arch=compute_[0-9a-z]+,code=\[[^]]*\]' "$build/build.ninja" | sort -u | tr '\n' ' ')
[[ "$archs" == *sm_90* || "$archs" == *compute_90* ]] ||
    die "$build compiles CUDA for '${archs:-nothing}', not for sm_90 (H100/H200): reconfigure it"

rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib" "$dest/evlib" "$dest/scenes" "$dest/load"
manifest="$dest/MANIFEST"
{
    echo "wmserve GPU bundle"
    echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (working tree modified)')"
    echo "build:  $build ($(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2)," \
         "CUDA code ${archs:-?}," \
         "WM_CUDA_VAE $(grep -E '^WM_CUDA_VAE:' "$build/CMakeCache.txt" | cut -d= -f2))"
    echo "nvcc:   $(grep -E '^CMAKE_CUDA_COMPILER:' "$build/CMakeCache.txt" | cut -d= -f2)"
    echo
} > "$manifest"

for b in "${bins[@]}"; do
    out="$dest/bin/$(basename "$b")"
    if [[ "${WM_BUNDLE_KEEP_DEBUG:-0}" == 1 ]]; then cp "$b" "$out"; else strip --strip-debug -o "$out" "$b"; fi
    echo "bin/$(basename "$b")  <- $b" >> "$manifest"
done

# Shared libraries: the union of what ldd resolves for every binary, minus the host's own.
declare -A seen=()
for b in "${bins[@]}"; do
    if ldd "$b" | grep -q "not found"; then ldd "$b" | grep "not found" >&2; die "$b has unresolved libraries here"; fi
    while read -r name path; do
        case "$name" in
            linux-vdso*|ld-linux*|libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|libresolv.so.*) continue ;;
            libgcc_s.so.*|libstdc++.so.*|libz.so.*) continue ;; # zlib: dpkg needs it, so it is there
        esac
        case "$path" in /usr/local/cuda*|/opt/cuda*) continue ;; esac
        [[ -n "${seen[$name]:-}" ]] && continue
        seen[$name]=1
        size=$(stat -L -c %s "$path")
        if (( size > 8 * 1024 * 1024 )); then
            xz -T0 -6 -c "$path" > "$dest/lib/$name.xz"
            echo "lib/$name.xz  <- $path ($size bytes, xz)" >> "$manifest"
        else
            cp -L "$path" "$dest/lib/$name"
            echo "lib/$name  <- $path" >> "$manifest"
        fi
    done < <(ldd "$b" | awk '/=> \//{print $1, $3}')
done

# libwebsockets' event-library plugin: lws dlopen()s libwebsockets-evlib_uv.so from the
# directory it was configured with, not from the library path.
lws=$(ldd "$build/server/wmserve" | awk '/libwebsockets\.so/{print $3; exit}')
[[ -n "$lws" ]] || die "wmserve does not link libwebsockets"
lws_dir=""
while read -r s; do
    if [[ -f "$s/libwebsockets-evlib_uv.so" ]]; then lws_dir="$s"; break; fi
done < <(strings -n 4 "$lws" | grep -E '^/[A-Za-z0-9_./-]+$' | sort -u)
[[ -n "$lws_dir" ]] || die "cannot tell where $lws loads its evlib_uv plugin from (no compiled-in directory holds libwebsockets-evlib_uv.so here; install libwebsockets-evlib-uv)"
cp -L "$lws_dir/libwebsockets-evlib_uv.so" "$dest/evlib/"
echo "$lws_dir" > "$dest/evlib/LWS_DIR"
echo "evlib/libwebsockets-evlib_uv.so  <- $lws_dir (compiled into $lws; gpu-suite.sh installs it there)" >> "$manifest"
# the plugin's own libraries (libuv, libwebsockets) must be in lib/ too
while read -r name path; do
    case "$name" in libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|ld-linux*|linux-vdso*) continue ;; esac
    [[ -e "$dest/lib/$name" || -e "$dest/lib/$name.xz" ]] && continue
    case "$path" in /usr/local/cuda*) continue ;; esac
    cp -L "$path" "$dest/lib/$name"
    echo "lib/$name  <- $path (for the evlib plugin)" >> "$manifest"
done < <(ldd "$lws_dir/libwebsockets-evlib_uv.so" | awk '/=> \//{print $1, $3}')

# Every program carries the CUDA kernels (about 6 MB each): xz them so the bundle fits a device
# call's 64 MiB; gpu-suite.sh unpacks them first.
for f in "$dest"/bin/*; do
    if (( $(stat -c %s "$f") > 4 * 1024 * 1024 )); then xz -T0 -6 "$f"; fi
done
cp -r web "$dest/web"
cp tests/fixtures/start.png "$dest/scenes/start.png"
cp -r tests/load/scenarios/. "$dest/load/"
echo "web/, scenes/start.png, load/ (wmload scenarios)" >> "$manifest"

total=$(du -sb "$dest" | cut -f1)
echo >> "$manifest"
echo "total: $total bytes" >> "$manifest"
cat "$manifest"
(( total < 60 * 1024 * 1024 )) || echo "gpu-bundle: warning: $dest is $total bytes; a device call carries at most 64 MiB with the working tree" >&2
echo "gpu-bundle: $dest ready; on the GPU host: scripts/gpu-suite.sh $dest"
