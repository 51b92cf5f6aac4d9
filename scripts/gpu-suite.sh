#!/usr/bin/env bash
# wmserve's GPU suite, run ON the GPU host from a bundle made by scripts/gpu-bundle.sh:
#
#   scripts/gpu-suite.sh [BUNDLE]            BUNDLE default gpub-all
#
# Steps (WM_SUITE_STEPS=tests,sanitizer,bench,profile,serve picks them, in that order; default all):
#   tests      every GPU-host test program of the bundle (bin/test_*_gpu: each compares the CUDA
#              code with the CPU reference and times it; run with WM_BACKEND=cpu, so the models
#              they open are the reference) and test_backend (the backend switch with WM_BACKEND
#              unset: AUTO must pick CUDA there); each with a timeout (WM_SUITE_TEST_TIMEOUT, 900 s)
#   sanitizer  compute-sanitizer memcheck (leak check on, any error fails) on a short tiny GPU
#              session: wmgen on synthetic:tiny with WM_BACKEND=cuda from a start image (CLIP on
#              the GPU, DiT block loop, VAE), 2 blocks; and test_clip_gpu part (a)
#   bench      wmbench (full size, against the floor; extra flags in WM_SUITE_BENCH_ARGS): its table
#              also goes to $OUT/wmbench.txt
#   profile    ncu (speed of light, occupancy, memory and compute workload) of the fused attention
#              and the VAE conv kernels inside a 2-layer wmbench: $OUT/ncu.txt (WM_SUITE_NCU_KERNELS:
#              a kernel-name regex; WM_SUITE_NCU_COUNT: how many launches)
#   serve      wmserve on synthetic:full with --backend cuda (WM_SUITE_SERVE_MODEL, _BACKEND; extra
#              flags in WM_SUITE_SERVE_ARGS; the warm-up measures the slots), then
#              wmload: 2 scripted players for 20 s (WM_SUITE_LOAD_PLAYERS, _LOAD_SECONDS), its
#              service level from load/smoke.json; then SIGTERM, which must exit 0
# Logs: $OUT (the device machine's output folder; ./gpu-suite-out when unset) gets summary.txt
# (the table printed last) and logs.tar.gz (every log, wmload's JSON report, nvidia-smi); only a
# few files, since a device call returns at most 8.
# Setup done here, as root: the bundle's libraries are unpacked into a temporary folder used as
# LD_LIBRARY_PATH for the bundle's programs only, and libwebsockets' evlib_uv plugin is copied
# into the directory libwebsockets was built to load it from (evlib/LWS_DIR) when it is not there.
# Exit status: 0 when every step passed, 1 otherwise, 2 on a setup error. A wmload run that
# misses its service level shows as SLO and does not fail the suite (it measures, the other steps
# check).
set -uo pipefail

bundle="$(cd "${1:-gpub-all}" 2>/dev/null && pwd)" || { echo "gpu-suite: no bundle folder ${1:-gpub-all} (scripts/gpu-bundle.sh makes it)" >&2; exit 2; }
[[ -f "$bundle/MANIFEST" ]] || { echo "gpu-suite: $bundle has no MANIFEST: not a gpu-bundle folder" >&2; exit 2; }
out="${OUT:-$PWD/gpu-suite-out}"
mkdir -p "$out"
steps="${WM_SUITE_STEPS:-tests,sanitizer,bench,profile,serve}"
work="$(mktemp -d /tmp/gpu-suite.XXXXXX)"
logs="$work/logs"
mkdir -p "$logs"
t_suite=$(date +%s)

# ---- results -------------------------------------------------------------------------------------
names=() results=() secs=() notes=()
record() { names+=("$1"); results+=("$2"); secs+=("$3"); notes+=("$4"); }
summary() {
    {
        echo
        echo "GPU suite: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        grep -E '^(commit|build):' "$bundle/MANIFEST"
        printf '%-26s %-6s %7s  %s\n' step result seconds detail
        printf '%-26s %-6s %7s  %s\n' -------------------------- ------ ------- ------------------------------
        for i in "${!names[@]}"; do
            printf '%-26s %-6s %7s  %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${notes[$i]}"
        done
        echo "total $(( $(date +%s) - t_suite )) s; logs: $out/logs.tar.gz"
    } | tee "$out/summary.txt"
}
srv=""
finish() {
    trap - INT TERM
    if [[ -n "$srv" ]] && kill -0 "$srv" 2>/dev/null; then kill -KILL "$srv"; fi
    cp "$bundle/MANIFEST" "$logs/MANIFEST" 2>/dev/null
    tar -czf "$out/logs.tar.gz" -C "$work" logs
    summary
    local bad=0
    for r in "${results[@]}"; do [[ "$r" == PASS || "$r" == SKIP || "$r" == SLO ]] || bad=1; done
    rm -rf "$work"
    exit "$bad"
}

trap 'record interrupted SIGNAL 0 "the suite was stopped"; finish' INT TERM

# ---- setup ---------------------------------------------------------------------------------------
lib="$work/lib"
mkdir -p "$lib"
cp -a "$bundle/lib/." "$lib/"
for z in "$lib"/*.xz; do
    [[ -e "$z" ]] || continue
    if command -v xz >/dev/null; then
        xz -d -f "$z"
    else
        python3 -c 'import lzma,sys; open(sys.argv[1][:-3],"wb").write(lzma.open(sys.argv[1]).read())' "$z" && rm -f "$z"
    fi || { echo "gpu-suite: cannot unpack $z" >&2; exit 2; }
done
for z in "$bundle"/bin/*.xz; do # gpu-bundle.sh packs the large programs
    [[ -e "$z" ]] || continue
    if command -v xz >/dev/null; then
        xz -d -f "$z"
    else
        python3 -c 'import lzma,sys; open(sys.argv[1][:-3],"wb").write(lzma.open(sys.argv[1]).read())' "$z" && rm -f "$z"
    fi || { echo "gpu-suite: cannot unpack $z" >&2; exit 2; }
    chmod +x "${z%.xz}"
done
cuda_lib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$d" ]] && cuda_lib="$cuda_lib:$d"
done
sanitizer="$(command -v compute-sanitizer || true)"
[[ -z "$sanitizer" && -x /usr/local/cuda/bin/compute-sanitizer ]] && sanitizer=/usr/local/cuda/bin/compute-sanitizer
# The bundle's programs only: system tools keep the host's own libraries.
run() { env LD_LIBRARY_PATH="$lib$cuda_lib" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" "$@"; }

lws_dir="$(cat "$bundle/evlib/LWS_DIR")"
evlib_note="present in $lws_dir"
if [[ ! -f "$lws_dir/libwebsockets-evlib_uv.so" ]]; then
    if mkdir -p "$lws_dir" && cp "$bundle/evlib/libwebsockets-evlib_uv.so" "$lws_dir/"; then
        evlib_note="installed into $lws_dir"
    else
        evlib_note="could not install into $lws_dir (not root?): wmserve will fail to start"
    fi
fi

{
    nvidia-smi || true
    echo
    echo "bundle: $bundle"; cat "$bundle/MANIFEST"
    echo "libwebsockets evlib_uv plugin: $evlib_note"
    echo "compute-sanitizer: ${sanitizer:-not found}"
    echo "LD_LIBRARY_PATH for the bundle: $lib$cuda_lib"
} > "$logs/setup.log" 2>&1
missing=$(for b in "$bundle"/bin/*; do run ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done | sort -u)
if [[ -n "$missing" ]]; then
    echo "$missing" | tee -a "$logs/setup.log"
    record setup ERROR 0 "libraries missing: $(echo "$missing" | awk '{print $2}' | sort -u | tr '\n' ' ')"
    finish
fi
record setup PASS 0 "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); evlib $evlib_note"

# The last line of a test program's log that states its result.
verdict() {
    local v
    v="$(grep -E 'PASSED|FAILED|checks, [0-9]+ failed|failure' "$1" | tail -1)"
    [[ -n "$v" ]] || v="$(grep -v '^\s*$' "$1" | tail -1)"
    echo "$v" | cut -c1-100
}

# ---- tests ----------------------------------------------------------------------------------------
if [[ ",$steps," == *,tests,* ]]; then
    for b in "$bundle"/bin/test_*_gpu "$bundle"/bin/test_backend; do
        [[ -x "$b" ]] || continue
        name="$(basename "$b")"
        t0=$(date +%s)
        # the test_*_gpu programs make their CUDA objects themselves and take the engine's model as
        # the CPU reference; test_backend checks the choice itself, so WM_BACKEND stays unset
        be=cpu
        [[ "$name" == test_backend ]] && be=""
        ( cd "$work" && run env ${be:+WM_BACKEND=$be} timeout "${WM_SUITE_TEST_TIMEOUT:-900}" "$b" ) \
            > "$logs/$name.log" 2>&1
        rc=$?
        dt=$(( $(date +%s) - t0 ))
        case $rc in 0) r=PASS ;; 124) r=TIME ;; 1) r=FAIL ;; *) r="rc=$rc" ;; esac
        record "$name" "$r" "$dt" "$(verdict "$logs/$name.log")"
        echo "$name: $r (${dt} s)"
    done
fi

# ---- compute-sanitizer memcheck on a short tiny GPU session ---------------------------------------------
if [[ ",$steps," == *,sanitizer,* ]]; then
    if [[ -z "$sanitizer" ]]; then
        record memcheck SKIP 0 "compute-sanitizer not found"
    else
        san=("$sanitizer" --tool memcheck --leak-check full --error-exitcode 99 --print-limit 20
             --target-processes all)
        t0=$(date +%s)
        ( cd "$work" && run env WM_BACKEND=cuda timeout 900 "${san[@]}" "$bundle/bin/wmgen" \
              --model synthetic:tiny --image "$bundle/scenes/start.png" --blocks 2 \
              --out "$work/wmgen-memcheck" ) > "$logs/memcheck_wmgen.log" 2>&1
        rc=$?
        dt=$(( $(date +%s) - t0 ))
        note="$(grep -E 'ERROR SUMMARY' "$logs/memcheck_wmgen.log" | tail -1)"
        if ! grep -q "backend cuda" "$logs/memcheck_wmgen.log"; then
            note="not on the CUDA backend? $note"
            [[ $rc == 0 ]] && rc=98
        fi
        record "memcheck wmgen tiny" "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" "$dt" "$note"
        if [[ -x "$bundle/bin/test_clip_gpu" ]]; then
            t0=$(date +%s)
            ( cd "$work" && run env WM_CLIP_TEST_PARTS=a timeout 900 "${san[@]}" \
                  "$bundle/bin/test_clip_gpu" ) > "$logs/memcheck_clip.log" 2>&1
            rc=$?
            dt=$(( $(date +%s) - t0 ))
            record "memcheck test_clip_gpu a" "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" "$dt" \
                "$(grep -E 'ERROR SUMMARY' "$logs/memcheck_clip.log" | tail -1)"
        fi
    fi
fi

# ---- wmbench: the full-size figures against the floor ------------------------------------------------
if [[ ",$steps," == *,bench,* ]]; then
    if [[ ! -x "$bundle/bin/wmbench" ]]; then
        record wmbench SKIP 0 "not in the bundle"
    else
        t0=$(date +%s)
        ( cd "$work" && run timeout "${WM_SUITE_BENCH_TIMEOUT:-400}" "$bundle/bin/wmbench" \
              ${WM_SUITE_BENCH_ARGS:-} --json "$logs/wmbench.json" ) > "$logs/wmbench.log" 2>&1
        rc=$?
        dt=$(( $(date +%s) - t0 ))
        cp "$logs/wmbench.log" "$out/wmbench.txt" 2>/dev/null
        record wmbench "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" "$dt" \
            "$(grep -E '^whole block|^DiT forward' "$logs/wmbench.log" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"
    fi
fi

# ---- ncu: where the two largest kernels stand (attention, VAE conv) ------------------------------------
if [[ ",$steps," == *,profile,* ]]; then
    ncu="$(command -v ncu || true)"
    [[ -z "$ncu" && -x /usr/local/cuda/bin/ncu ]] && ncu=/usr/local/cuda/bin/ncu
    if [[ -z "$ncu" || ! -x "$bundle/bin/wmbench" ]]; then
        record ncu SKIP 0 "ncu or wmbench missing"
    else
        t0=$(date +%s)
        # a 2-layer model is enough: the kernels and shapes are the full-size ones
        ( cd "$work" && run timeout 300 "$ncu" -k "regex:${WM_SUITE_NCU_KERNELS:-attn_kernel|conv_halo|conv_kernel}" -c "${WM_SUITE_NCU_COUNT:-8}" \
              --section SpeedOfLight --section Occupancy --section LaunchStats \
              --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
              "$bundle/bin/wmbench" --layers 2 --reps 1 --blocks 1 --no-encoders ) \
            > "$logs/ncu.log" 2>&1
        rc=$?
        dt=$(( $(date +%s) - t0 ))
        cp "$logs/ncu.log" "$out/ncu.txt" 2>/dev/null
        record ncu "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" "$dt" \
            "$(grep -c 'SM Frequency' "$logs/ncu.log") kernels profiled; $out/ncu.txt"
    fi
fi

# ---- wmserve on the CUDA backend under wmload ---------------------------------------------------------
if [[ ",$steps," == *,serve,* ]]; then
    port="${WM_SUITE_PORT:-18080}"
    t0=$(date +%s)
    model="${WM_SUITE_SERVE_MODEL:-synthetic:full}" sbackend="${WM_SUITE_SERVE_BACKEND:-cuda}"
    # env execs wmserve, so $! is the server itself (a function or subshell here would get the
    # signal instead)
    env LD_LIBRARY_PATH="$lib$cuda_lib" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" \
        "$bundle/bin/wmserve" --model "$model" --backend "$sbackend" --bind 127.0.0.1 --port "$port" \
        --web "$bundle/web" --scenes "$bundle/scenes" ${WM_SUITE_SERVE_ARGS:-} \
        > "$logs/wmserve.log" 2>&1 &
    srv=$!
    ready=0
    for _ in $(seq "${WM_SUITE_SERVE_START_S:-420}"); do
        if grep -qE ' listening |"listening"' "$logs/wmserve.log"; then ready=1; break; fi
        kill -0 "$srv" 2>/dev/null || break
        sleep 1
    done
    start_s=$(( $(date +%s) - t0 ))
    capacity="$(grep -E 'capacity' "$logs/wmserve.log" | tail -1 | grep -oE 'block_ms=[^ ]+|slots=[^ ]+' | tr '\n' ' ')"
    backend="$(grep -E 'model_open' "$logs/wmserve.log" | grep -oE 'backend=[^ ]+' | tail -1)"
    if (( ! ready )); then
        kill -TERM "$srv" 2>/dev/null; sleep 2; kill -KILL "$srv" 2>/dev/null
        record "wmserve start" FAIL "$start_s" "not listening: $(grep -E 'startup_failed|error' "$logs/wmserve.log" | tail -1 | cut -c1-120)"
    else
        record "wmserve start" PASS "$start_s" "$model $backend $capacity"
        t1=$(date +%s)
        ( cd "$work" && run timeout 300 "$bundle/bin/wmload" -n "${WM_SUITE_LOAD_PLAYERS:-2}" \
              -d "${WM_SUITE_LOAD_SECONDS:-20}" --url "ws://127.0.0.1:$port/ws" \
              --json "$logs/wmload.json" "$bundle/load/smoke.json" ) > "$logs/wmload.log" 2>&1
        rc=$?
        dt=$(( $(date +%s) - t1 ))
        note="$(grep -oE 'aggregate [0-9.]+' "$logs/wmload.log" | head -1) fps, $(grep -oE 'queued [0-9]+' "$logs/wmload.log" | head -1), blocks $(grep -oE 'server blk ms +p50 [0-9.]+' "$logs/wmload.log" | head -1 | tr -s ' ' | sed 's/server blk ms //') ms; $(grep -E 'service level' "$logs/wmload.log" | tail -1 | tr -s ' ' | cut -c1-90)"
        case $rc in 0) r=PASS ;; 1) r=SLO ;; *) r="rc=$rc" ;; esac
        record "wmload ${WM_SUITE_LOAD_PLAYERS:-2}p ${WM_SUITE_LOAD_SECONDS:-20}s" "$r" "$dt" "$note"
        t1=$(date +%s)
        kill -TERM "$srv"
        for _ in $(seq 30); do kill -0 "$srv" 2>/dev/null || break; sleep 1; done
        if kill -0 "$srv" 2>/dev/null; then
            kill -KILL "$srv"; wait "$srv" 2>/dev/null
            record "wmserve SIGTERM" FAIL $(( $(date +%s) - t1 )) "still running after 30 s: killed"
        else
            wait "$srv"; rc=$?
            record "wmserve SIGTERM" "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" $(( $(date +%s) - t1 )) "exit status $rc"
        fi
    fi
fi

finish
