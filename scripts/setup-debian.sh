#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages that wmserve's build and tests need, with apt-get,
# non-interactively (through sudo when not root). When every package is installed already it does
# nothing and needs no network, so it is cheap to run before every build. CUDA is not installed
# here: nvcc comes preinstalled on the GPU machines, and the build enables CUDA only when it finds
# nvcc. Set WM_SKIP_SETUP=1 to skip this script (e.g. on a machine without apt).
set -euo pipefail

# One entry per need; "a|b" means the first of the alternatives that apt knows (msgpack's C library
# is libmsgpack-dev on bookworm and libmsgpack-c-dev from trixie on).
PACKAGES=(
    build-essential cmake ninja-build pkg-config
    clang libomp-dev # clang builds (sanitizer pass, fuzzers) need LLVM's OpenMP
    libopenblas-dev libcjson-dev
    libuv1-dev libwebsockets-dev "libmsgpack-c-dev|libmsgpack-dev"
    libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev
    libssl-dev # wmserve's signed access tokens: HMAC-SHA256 from libcrypto
    ffmpeg # wmgen writes an MP4 next to its PNG frames when the ffmpeg program is present
    chromium # the browser end-to-end test (tests/e2e) drives Debian's headless Chromium
    # Static checks of docker/ (tests/test_docker_files.py): `haproxy -c` (2.0 MB download, 5 MB
    # installed with its libraries; Debian's default haproxy.cfg defines no listener, so its
    # service opens no port) and yamllint (0.2 MB with python3-yaml and python3-pathspec).
    haproxy yamllint
)
# Node.js for the browser test's playwright-core (needs node >= 20) and the JS codec check: only
# when no node is on the machine (Debian 12's nodejs is 18; the development machines have 20).
if ! command -v node >/dev/null; then PACKAGES+=(nodejs npm); fi

if [ "${WM_SKIP_SETUP:-0}" = 1 ]; then
    echo "setup: WM_SKIP_SETUP=1, not checking packages"
    exit 0
fi
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "setup: this is not a Debian system (no dpkg-query/apt-get)." >&2
    echo "setup: install the equivalents of: ${PACKAGES[*]}" >&2
    echo "setup: then rerun with WM_SKIP_SETUP=1." >&2
    exit 1
fi

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "setup: need root or sudo to run: $*" >&2
        exit 1
    fi
}

missing=()
for entry in "${PACKAGES[@]}"; do
    IFS='|' read -r -a alts <<<"$entry"
    ok=0
    for p in "${alts[@]}"; do
        if is_installed "$p"; then ok=1; break; fi
    done
    [ "$ok" = 1 ] || missing+=("$entry")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: all ${#PACKAGES[@]} required Debian packages are installed"
    exit 0
fi

echo "setup: missing: ${missing[*]}"
echo "setup: + apt-get update"
as_root apt-get update -q

install=()
for entry in "${missing[@]}"; do
    IFS='|' read -r -a alts <<<"$entry"
    pick=""
    for p in "${alts[@]}"; do
        if has_candidate "$p"; then pick=$p; break; fi
    done
    if [ -z "$pick" ]; then
        echo "setup: no installable package for '$entry' in the apt sources" >&2
        exit 1
    fi
    install+=("$pick")
done

echo "setup: + apt-get install ${install[*]}"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${install[@]}"
echo "setup: done"
