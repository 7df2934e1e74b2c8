#!/usr/bin/env bash
# the demo, quiet and beside two busy processes, alternated; wall seconds and the load average
cd /work/main
export LORATUI_CACHE_DIR=/tmp/demo-bench-cache LORATUI_STATE_DIR=/tmp/demo-bench-state
run() {
  d=$(mktemp -d); s=$(date +%s.%N)
  (cd $d && /work/main/.venv/bin/loratui demo --headless > $d/out.log 2>&1); rc=$?
  e=$(date +%s.%N); echo "$1 rc=$rc wall=$(echo "$e - $s" | bc) s load=$(cut -d' ' -f1 /proc/loadavg)"
}
run warmup
for i in 1 2; do
  run quiet
  python3 -c "while True: pass" & h1=$!; python3 -c "while True: pass" & h2=$!
  sleep 3; run busy; kill $h1 $h2
  sleep 5
done
