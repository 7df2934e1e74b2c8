#!/usr/bin/env bash
# Builds .venv-example: the venv in which benchmarks/example_bench.py runs BOTH diffusers' own
# LoRA example script and loratui, so that the two sides share one torch.
#
# Why a venv of its own: the example imports torchvision, and PyPI's torchvision does not import
# beside the shared .venv's torch 2.13 CPU build ('operator torchvision::nms does not exist').
# torch 2.14.1 with torchvision 0.29.1 do import together (a CUDA build of ~5.5 GB that runs on the
# CPU; on this machine pip on Python 3.11 takes both from the local disk). Everything else is the
# lock's exact pins (requirements-dev.lock without its torch line), plus `datasets` (the example
# loads its images with it) and loratui itself, installed editable with no resolving.
#
# Usage: benchmarks/example_env.sh            (once; later calls are no-ops until the lock changes)
#        EXAMPLE_VENV=/path PYTHON=python3.11 benchmarks/example_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
venv="${EXAMPLE_VENV:-.venv-example}"
# The pins (a pair that imports together; see above). 'datasets' is the example's requirement.
torch_pins="torch==2.14.1 torchvision==0.29.1"
extra="datasets"

free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
if [ ! -x "$venv/bin/python" ] && [ "$free_gb" -lt 10 ]; then
    echo "example_env.sh: only ${free_gb} GB free here; the benchmark venv needs ~8 GB (torch's CUDA build): free some disk first" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv"
fi
stamp="$venv/.example-installed"
want="$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -d' ' -f1) $torch_pins $extra"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "setting up $venv (torch's CUDA build, ~5.5 GB; first run only)…" >&2
pip=("nice" "-n" "15" "$venv/bin/python" "-m" "pip" "install" "-q")
# torch first and pinned, so that nothing after it resolves a different build.
"${pip[@]}" $torch_pins >&2
# The lock's exact versions, less its torch line (the pair above replaces it).
lock_wo_torch="$(mktemp)"
trap 'rm -f "$lock_wo_torch"' EXIT
grep -v '^torch==' requirements-dev.lock > "$lock_wo_torch"
"${pip[@]}" -r "$lock_wo_torch" $torch_pins >&2
"${pip[@]}" $extra $torch_pins >&2
"${pip[@]}" --no-deps --no-build-isolation -e . >&2
# Both must import together, or the benchmark cannot run the example.
"$venv/bin/python" -c "import torch, torchvision, datasets; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'datasets', datasets.__version__)" >&2
echo "$want" > "$stamp"
