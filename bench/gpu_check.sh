#!/bin/bash
# Every GPU check in one run, for a machine that has a GPU, CuPy, PyTorch and pytest but not this project
# installed: run from the project's root, nothing is installed. Its parts took about 4 minutes together on an H200.
#
#   bin/collect-rollouts --episodes 6 --steps 300 --seed 777 --out .gpu/data --quiet    # beforehand, ~22 MB
#   bash bench/gpu_check.sh [.gpu/data] [--cpu-vs-gpu]                                   # on the GPU machine
#
# Each part has its own time limit, so a hang costs only that part; each prints its own summary. Full
# outputs go to $OUT (or /tmp/gpu-check): bench.txt, tests_gpu.txt, tests_rest.txt, train.txt, and with
# --cpu-vs-gpu (about 3 minutes more), cpu_vs_gpu.txt.
DATA=${1:-.gpu/data}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
O=${OUT:-/tmp/gpu-check}; mkdir -p "$O"
nvidia-smi -L; python3 -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)"

part() {    # part NAME LIMIT COMMAND...: run it under its limit, output to $O/NAME.txt, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$O/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$O/$name.txt"
}

part bench 80 python3 bench/bench_step.py --devices gpu --batch 100,1000 --precision fp32,tf32 --blocks 3 --steps 10 --top 12
grep -A6 "^training step" "$O/bench.txt"
part tests_gpu 90 python3 -m pytest -m gpu -q -rfE --tb=short --durations=5 -p no:cacheprovider --timeout 40 tests/test_gpu.py
tail -4 "$O/tests_gpu.txt"
part tests_rest 170 python3 -m pytest -m gpu -q -rfE --tb=short --durations=15 -p no:cacheprovider --timeout 60 tests --ignore tests/test_gpu.py
tail -20 "$O/tests_rest.txt"
part train 40 python3 bin/train-scratch --data "$DATA" --steps 1000 --device gpu --out /tmp/gpu-check-run --eval-every 250 --checkpoint-every 500 --quiet
tail -1 /tmp/gpu-check-run/log.jsonl >> "$O/train.txt" 2>/dev/null; tail -3 "$O/train.txt"
if [ "$2" = "--cpu-vs-gpu" ]; then
    part cpu_vs_gpu 180 python3 bench/cpu_vs_gpu.py --data "$DATA" --first 12 --steps 200 --seeds 3 --quiet
    grep -E "PASS|FAIL|held-out MSE after" "$O/cpu_vs_gpu.txt"
fi
