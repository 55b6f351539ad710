#!/bin/bash
# Every GPU check of docs/gpu.md ("Checking a GPU") in one run, for a machine that has a GPU, CuPy, PyTorch,
# pytest and hypothesis but not this project installed: run from the project's root, nothing is installed.
#
#   bin/collect-rollouts --episodes 6 --steps 300 --seed 777 --out .gpu/data --quiet    # beforehand, ~22 MB
#   bash bench/gpu_check.sh [DATA]                                                      # on the GPU machine
#   PARTS="tests_gpu train" bash bench/gpu_check.sh [DATA]                              # some parts only
#   TRY_HERE=1 bash bench/gpu_check.sh DATA                                             # here, before: see below
#
# The parts, in order, each under its own time limit (a hang costs only that part), each printing its own
# summary; the full outputs go to $OUT (or /tmp/gpu-check), one NAME.txt a part:
#   tests_gpu    pytest -m gpu tests/test_gpu.py                 the kernels, layers, model and gradient checks
#   tests_rest   pytest -m gpu on every other test file          the tools end to end on the GPU, and the rest
#   end_to_end   bench/end_to_end.py --device gpu                the tools on real frames and the full-size model
#   cpu_vs_gpu   bench/cpu_vs_gpu.py --steps 200 --seeds 3       the same runs on both devices
#   bench        bench/bench_step.py --batch 100,1000            speed against PyTorch eager, graphed and AMP
#   loader       bench/bench_loader.py                           the data feed on this machine's cores
#   fp16         bench/fp16_vs_fp32.py --steps 2000 --seeds 3    mixed precision against float32, over seeds
#   train        bin/train-scratch --steps 1000 --device gpu     a training run and its pictures
# Their limits add up to 13 minutes and 20 seconds, more than one 600-second call: on an H200 the first four
# parts took about 4 minutes, but when a part may run long, run the parts in two calls (PARTS=...).
#
# TRY_HERE=1 runs every part's command on a machine without a GPU, with the same options: the pytest parts
# for real (their GPU tests skip) and the others only as far as parsing their options (no training), so a
# mistake in the script costs no GPU minutes; tests/test_project.py does this.
DATA=${1:-.gpu/data}
PARTS=${PARTS:-tests_gpu tests_rest end_to_end cpu_vs_gpu bench loader fp16 train}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
O=${OUT:-/tmp/gpu-check}; mkdir -p "$O"
PY=${PYTHON:-python3}
if [ -z "$TRY_HERE" ]; then
    nvidia-smi -L; $PY -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)"
fi

run_python() {  # run_python SCRIPT ARGS...: the script; with TRY_HERE, only as far as its options are parsed
    if [ -z "$TRY_HERE" ]; then
        $PY "$@"
    else
        $PY -c '
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_only(self, *a, **k):
    parse(self, *a, **k)
    print("options parsed")
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_only
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$@"
    fi
}

part() {        # part NAME LIMIT COMMAND...: run it under its limit, output to $O/NAME.txt, say how it ended
    local name=$1 limit=$2; shift 2
    case " $PARTS " in *" $name "*) ;; *) return ;; esac
    local t0=$SECONDS
    timeout "$limit" bash -c '"$@"' _ "$@" > "$O/$name.txt" 2>&1      # (bash: run_python is a function)
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$O/$name.txt"
    FAILED=$((FAILED + (rc != 0)))
}
FAILED=0
export -f run_python
export PY TRY_HERE

part tests_gpu 100 $PY -m pytest -m gpu -q -rfE --tb=short --durations=5 -p no:cacheprovider tests/test_gpu.py
tail -4 "$O/tests_gpu.txt" 2>/dev/null
part tests_rest 170 $PY -m pytest -m gpu -q -rfE --tb=short --durations=15 -p no:cacheprovider tests --ignore tests/test_gpu.py
tail -20 "$O/tests_rest.txt" 2>/dev/null
part end_to_end 90 run_python bench/end_to_end.py --data "$DATA" --device gpu --steps 200 --out /tmp/gpu-check-e2e
grep -E "PASS|FAIL" "$O/end_to_end.txt" 2>/dev/null
part cpu_vs_gpu 180 run_python bench/cpu_vs_gpu.py --data "$DATA" --first 12 --steps 200 --seeds 3 --quiet
grep -E "PASS|FAIL|held-out MSE after" "$O/cpu_vs_gpu.txt" 2>/dev/null
part bench 120 run_python bench/bench_step.py --devices gpu --batch 100,1000 --precision fp32,tf32,fp16 --torch eager,graphed,graphed_cl,amp,amp_cl --sharded --blocks 3 --steps 10 --top 12
grep -A6 "^training step" "$O/bench.txt" 2>/dev/null
part loader 40 run_python bench/bench_loader.py --keep /tmp/gpu-check-loader --seconds 1

part fp16 150 run_python bench/fp16_vs_fp32.py --data "$DATA" --device gpu --steps 2000 --seeds 3

part train 50 run_python bin/train-scratch --data "$DATA" --steps 1000 --device gpu --out /tmp/gpu-check-run --eval-every 250 --checkpoint-every 500 --readers 2 --quiet
[ -z "$TRY_HERE" ] && tail -1 /tmp/gpu-check-run/log.jsonl >> "$O/train.txt" 2>/dev/null
tail -3 "$O/train.txt" 2>/dev/null
echo "gpu_check: $FAILED part(s) failed"
exit $((FAILED > 0))
