#!/usr/bin/env bash
# Multi-host training on a Cloud TPU VM slice: the same command on every worker.
# On TPU VMs jax.distributed.initialize() discovers the slice by itself (no addresses).
#
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#   launch/tpu_vm.sh my-v4-32 us-central2-b experiments/igpt/mnist.py:idx gs://bucket/run
#
# Assumes the repository is checked out at ~/argen_jax on every worker with the package
# installed (`pip install -e .[test] jax[tpu]`); WORKDIR should be shared storage (GCS).
set -euo pipefail
TPU=${1:?tpu name}; ZONE=${2:?zone}; CONFIG=${3:?config}; WORKDIR=${4:?workdir}
shift 4
EXTRA=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="\
  cd ~/argen_jax && python launch/main.py --distributed \
  --config=$CONFIG --workdir=$WORKDIR$EXTRA"
