#!/usr/bin/env bash
# Runs launch/main.py as N cooperating processes on this machine (jax.distributed).
#
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS LOG_DIR -- <main.py flags>
#
# Example (2 processes x 4 CPU devices = the same 8-device mesh as one process with 8):
#   launch/local_multiprocess.sh 2 4 /tmp/mp -- \
#       --config=experiments/igpt/mnist.py:tiny --workdir=/tmp/mp/w
#
# Process i logs to LOG_DIR/process_i.log; the script exits non-zero if any process fails.
# CPU by default (gloo collectives, DEVICES_PER_PROCESS fake CPU devices each). For GPUs set
# PLATFORM=gpu: process i then sees GPUs i*D .. i*D+D-1 through CUDA_VISIBLE_DEVICES.
set -euo pipefail
if [[ $# -lt 4 || "$4" != "--" ]]; then
  sed -n '2,12p' "$0"; exit 2
fi
NPROC=$1; NDEV=$2; LOGDIR=$3; shift 4
PLATFORM=${PLATFORM:-cpu}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
PYTHON=${PYTHON:-python}  # the interpreter of your environment, e.g. PYTHON=.venv/bin/python
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$LOGDIR"
pids=()
for ((i = 0; i < NPROC; i++)); do
  env_args=(JAX_COORDINATOR_ADDRESS="localhost:$PORT" JAX_NUM_PROCESSES="$NPROC"
            JAX_PROCESS_ID="$i")
  if [[ "$PLATFORM" == cpu ]]; then
    # one fake-device setting only: a leftover XLA_FLAGS device count would override ours
    env_args+=(JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES="$NDEV" XLA_FLAGS=)
  else
    first=$((i * NDEV)); ids=$(seq -s, "$first" $((first + NDEV - 1)))
    env_args+=(CUDA_VISIBLE_DEVICES="$ids")
  fi
  env "${env_args[@]}" "$PYTHON" "$ROOT/launch/main.py" --distributed "$@" \
    > "$LOGDIR/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
echo "local_multiprocess: $NPROC processes finished with status $status; logs in $LOGDIR"
exit $status
