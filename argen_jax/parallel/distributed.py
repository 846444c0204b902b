"""Multi-process / multi-host start-up: `jax.distributed.initialize` with sensible sources.

Every process runs the same program; after `initialize()`, `jax.devices()` lists the devices
of all processes, the mesh spans them, and `Experiment.device_batch` feeds each process its
slice of the global batch. Where the coordinates come from, in order:

1. explicit arguments;
2. environment variables `JAX_COORDINATOR_ADDRESS` (host:port of process 0),
   `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (set by `launch/local_multiprocess.sh`), and
   `JAX_LOCAL_DEVICE_IDS` (read by JAX itself);
3. JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU VMs, GKE): `launch/slurm.sbatch`
   and `launch/tpu_vm.sh` need nothing else.

On CPU, cross-process collectives use gloo (`jax_cpu_collectives_implementation`), and
`local_cpu_devices` (or `JAX_NUM_CPU_DEVICES`) sets how many CPU devices each process exposes.
Call this before anything touches a JAX backend.
"""
from __future__ import annotations

import os

import jax
from absl import logging


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_cpu_devices: int | None = None,
               cpu_collectives: str = "gloo") -> None:
    """Starts the distributed runtime (no-op if it is already running)."""
    if jax.distributed.is_initialized():
        return
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int(
        "JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    local_cpu_devices = local_cpu_devices or _env_int("JAX_NUM_CPU_DEVICES")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if local_cpu_devices:
        jax.config.update("jax_num_cpu_devices", local_cpu_devices)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())


_barrier_count = 0


def barrier(name: str, timeout_s: float = 1800.0) -> None:
    """Waits until every process reaches this point (coordination service, not a device
    collective, so its timeout is long). No-op in a single process.

    Used before the first run of each newly compiled step: CPU (gloo) collectives give up
    after 30 s, and processes that finish compiling at different times would otherwise
    time out waiting for each other inside the step."""
    global _barrier_count
    if jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed  # the client has no public handle

    _barrier_count += 1
    jax_distributed.global_state.client.wait_at_barrier(
        f"argen_jax:{name}:{_barrier_count}", int(timeout_s * 1000))
