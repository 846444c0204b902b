#!/usr/bin/env bash
# The accelerator suite of issue 18: one GPU, under 8 minutes (every run has its own timeout),
# one JSON file. Rows (each one JSON object, or {"error": ...} when a run failed or timed out):
#   train_B / train_B_remat / train_L / train_L_remat   LlamaGen-B and -L training (bf16, the
#       ImageNet-256 shapes, batch $TRAIN_BATCH): tokens/s, TFLOP/s (XLA's count) and MFU
#       against $PEAK_TFLOPS (dense bf16 peak of the GPU; from nvidia-smi's name if unset);
#       XLA's count includes rematerialised recomputation, so the remat rows' MFU is hardware
#       FLOP utilisation (the analytic model-FLOP MFU of train/metrics.py is lower there)
#   sample_llamagen_B   cached sampling of LlamaGen-B, batch 64, CFG 2.0 (speed/llamagen_sampling:
#       also its cache-less sampler, for the ratio)
#   sample_var_d16      VAR-d16 scale-by-scale sampling, batch 64, CFG 3.0 (top-k 900, top-p 0.96)
#   pixelcnnpp_paper    the PixelCNN++ paper-size (CIFAR) train step against PyTorch on the GPU
#       (needs torch with CUDA in the same environment)
#
#   experiments/benchmarks/accelerator_suite.sh [out.json]    (PYTHON=... to pick the python)
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-accelerator_suite.json}
PY=${PYTHON:-python}
TRAIN_BATCH=${TRAIN_BATCH:-64}
ATTN=${ATTN:-cudnn}  # model.attention_impl of the training rows (xla: XLA's own kernel)
if [ -z "${PEAK_TFLOPS:-}" ]; then
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
  case "$GPU" in
    *H100*|*H200*|*GH200*) PEAK_TFLOPS=989 ;;  # SXM dense bf16
    *A100*) PEAK_TFLOPS=312 ;;
    *L40S*) PEAK_TFLOPS=362 ;;
    *) PEAK_TFLOPS=0 ;;
  esac
fi
TMP=$(mktemp -d)
START=$(date +%s)

run() {  # run NAME SECONDS MODULE ARGS...: the JSON line of `python -m MODULE ARGS` -> NAME.json
  local name=$1 limit=$2
  shift 2
  echo "[$(( $(date +%s) - START ))s] $name" >&2
  if timeout "$limit" "$PY" -m "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"; then
    tail -n1 "$TMP/$name.out" > "$TMP/$name.json"
  else
    local rc=$?
    "$PY" - "$rc" "$TMP/$name.err" > "$TMP/$name.json" <<'PYEOF'
import json, sys
rc, err = int(sys.argv[1]), open(sys.argv[2]).read().strip().splitlines()
print(json.dumps({"error": "timed out" if rc == 124 else f"exit status {rc}",
                  "stderr_tail": err[-3:]}))
PYEOF
  fi
}

TT=experiments.benchmarks.speed.train_throughput
CFG=experiments/llamagen/imagenet.py
for size in B L; do
  run "train_$size" 75 $TT --config=$CFG --size=$size --batch="$TRAIN_BATCH" \
    --dtype=bfloat16 --attention_impl="$ATTN" --repeats=10 --peak_tflops="$PEAK_TFLOPS"
  run "train_${size}_remat" 75 $TT --config=$CFG --size=$size --batch="$TRAIN_BATCH" \
    --dtype=bfloat16 --attention_impl="$ATTN" --remat=full --repeats=10 \
    --peak_tflops="$PEAK_TFLOPS"
done
run sample_llamagen_B 70 experiments.benchmarks.speed.llamagen_sampling --config=$CFG:B \
  --batch=64 --cfg_scale=2.0 --grid=16 --vocab=16384 --repeats=2
run sample_var_d16 70 experiments.benchmarks.speed.sample_throughput \
  --config=experiments/var/imagenet.py:d16 --batch=64 --cfg_scale=3.0 --repeats=2
run pixelcnnpp_paper 80 experiments.benchmarks.speed.pixelcnnpp_speed --setting=cifar \
  --torch_device=cuda --repeats=5

"$PY" - "$TMP" "$OUT" "$PEAK_TFLOPS" "$(( $(date +%s) - START ))" <<'PYEOF'
import glob, json, os, sys
tmp, out, peak, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rows = {}
for path in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    text = open(path).read().strip()
    try:
        rows[os.path.basename(path)[:-5]] = json.loads(text)
    except json.JSONDecodeError:
        rows[os.path.basename(path)[:-5]] = {"error": "no JSON line", "stdout_tail": text[-300:]}
suite = {"suite": "accelerator_suite", "peak_tflops": peak, "seconds": seconds, **rows}
with open(out, "w") as f:
    json.dump(suite, f, indent=1)
print(out)
PYEOF
rm -rf "$TMP"
