#!/usr/bin/env bash
# `loratui demo --headless`, quiet and beside two busy processes, alternated: wall seconds and
# the load average of each run (benchmarks/RESULTS.md, "A shared machine").
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
export LORATUI_CACHE_DIR="${TMPDIR:-/tmp}/demo-bench-cache" LORATUI_STATE_DIR="${TMPDIR:-/tmp}/demo-bench-state"
run() {
  d=$(mktemp -d); s=$(date +%s.%N)
  (cd "$d" && "$root/.venv/bin/loratui" demo --headless > "$d/out.log" 2>&1); rc=$?
  e=$(date +%s.%N); echo "$1 rc=$rc wall=$(echo "$e - $s" | bc) s load=$(cut -d' ' -f1 /proc/loadavg)"
  rm -rf "$d"
}
run warmup
for i in 1 2; do
  run quiet
  python3 -c "while True: pass" & h1=$!; python3 -c "while True: pass" & h2=$!
  sleep 3; run busy; kill $h1 $h2
  sleep 5
done
