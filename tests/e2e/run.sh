#!/usr/bin/env bash
# Browser end-to-end test: starts the real wmserve on a free loopback port with the synthetic tiny
# model and this repository's web/ folder, drives it with headless Chromium (play.mjs), then stops
# the server with SIGTERM and checks that it exited cleanly.
#
#   tests/e2e/run.sh PATH/TO/wmserve [ARTIFACT_DIR]
#
# Exit 0 pass, 1 fail, 77 skipped (no node or no chromium; ctest shows it as skipped).
# $CHROMIUM overrides /usr/bin/chromium. Artifacts (screenshots, server log) go to ARTIFACT_DIR
# (default: ./e2e-artifacts).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
server_bin="${1:?usage: run.sh PATH/TO/wmserve [ARTIFACT_DIR]}"
artifacts="${2:-$PWD/e2e-artifacts}"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not found (Debian: apt-get install nodejs npm)"
  exit 77
fi
if [[ ! -x "$chromium" ]]; then
  echo "SKIP: $chromium not found (Debian: apt-get install chromium)"
  exit 77
fi
if [[ ! -x "$server_bin" ]]; then
  echo "FAIL: server binary $server_bin not found"
  exit 1
fi

# playwright-core at the version pinned in package-lock.json (it downloads no browser).
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "installing playwright-core (npm ci) in $here"
  if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error); then
    echo "FAIL: npm ci failed"
    exit 1
  fi
fi

mkdir -p "$artifacts"
log="$artifacts/server.log"

# A free loopback port: bind port 0 and read what the kernel chose. A small race with other
# processes remains, so a server that fails to bind gets a few more ports before we give up.
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# Polls /healthz until it answers 200 or the server exits; returns 0 when healthy.
wait_healthy() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if node -e '
      fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1));
      setTimeout(() => process.exit(1), 1000);' "http://127.0.0.1:$port/healthz" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "server did not exit within 10 s of SIGTERM; killing it"
      kill -KILL "$server_pid" 2>/dev/null
    fi
  fi
}
trap stop_server EXIT

port=""
for attempt in 1 2 3; do
  p="$(free_port)"
  echo "starting $server_bin on 127.0.0.1:$p (attempt $attempt)"
  # Two slots, fixed: the reconnect step rejoins while the server may not yet have noticed the cut
  # connection, and the slot count measured at start-up depends on how loaded the machine is.
  "$server_bin" --model synthetic:tiny --port "$p" --web "$repo/web" --max-sessions 2 >"$log" 2>&1 &
  server_pid=$!
  if wait_healthy "$p" "$server_pid"; then
    port="$p"
    break
  fi
  stop_server
  wait "$server_pid" 2>/dev/null
  server_pid=""
  echo "--- server log (attempt $attempt) ---"; tail -n 20 "$log"
done
if [[ -z "$port" ]]; then
  echo "FAIL: the server did not become healthy"
  exit 1
fi

(cd "$here" && node play.mjs "http://127.0.0.1:$port/" "$artifacts")
play_rc=$?

kill -TERM "$server_pid"
server_rc=""
for ((i = 0; i < 100; i++)); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid"
    server_rc=$?
    break
  fi
  sleep 0.1
done
if [[ -z "$server_rc" ]]; then
  echo "FAIL: server still running 10 s after SIGTERM"
  kill -KILL "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_rc=137
fi
server_pid=""

if [[ $server_rc -eq 0 ]]; then
  echo "ok   server exited 0 after SIGTERM"
else
  echo "FAIL server exit status after SIGTERM: $server_rc"
  echo "--- server log (last 30 lines) ---"; tail -n 30 "$log"
fi
if [[ $play_rc -ne 0 && $server_rc -eq 0 ]]; then
  echo "--- server log (last 30 lines) ---"; tail -n 30 "$log"
fi
echo "artifacts: $artifacts"
[[ $play_rc -eq 0 && $server_rc -eq 0 ]]
