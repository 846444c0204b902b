"""Throughput and model FLOPs utilisation for the training log.

Every training log row carries `train/examples_per_sec`, `train/tokens_per_sec` (token
models), `train/model_tflops_per_sec` (model FLOPs per step x steps per second) and
`train/mfu` = that / (peak bf16 TFLOP/s of a device x devices) where the peak is known:
`train.peak_tflops` if set, else `PEAK_BF16_TFLOPS` by `device.device_kind`. FLOPs per step
come from the family (`models.base.CountsFlops`, analytic: `models/flops.py`) or, for the
others, XLA's count of the lowered training step.
"""
from __future__ import annotations

import jax

# dense bf16 peak TFLOP/s per JAX device (vendor data sheets; no sparsity), matched in order
# as a case-insensitive substring of `device_kind`
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0),
    ("TPU v6 lite", 918.0), ("TPU v5 lite", 197.0), ("TPU v5p", 459.0), ("TPU v5", 459.0),
    ("TPU v4", 275.0), ("TPU v3", 61.5),  # v3: a JAX device is one of a chip's two cores
)


def xla_flops(program) -> float:
    """FLOPs of a lowered or compiled program by XLA's `cost_analysis()` (0 if unavailable)."""
    cost = program.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def peak_tflops(device_kind: str, override: float = 0.0) -> float | None:
    """bf16 peak of one device: `override` if > 0, else the table's, else None (CPU)."""
    if override > 0:
        return override
    kind = device_kind.lower()
    return next((p for name, p in PEAK_BF16_TFLOPS if name.lower() in kind), None)


class Throughput:
    """Turns steps per second into the log row's throughput and MFU fields."""

    def __init__(self, flops_per_step: float, examples_per_step: int,
                 tokens_per_example: int | None, peak_per_device: float | None,
                 num_devices: int):
        self.flops_per_step = flops_per_step
        self.examples_per_step = examples_per_step
        self.tokens_per_example = tokens_per_example
        self.peak = peak_per_device * num_devices if peak_per_device else None

    @classmethod
    def of(cls, exp, override_peak: float = 0.0) -> Throughput:
        """For an `Experiment` (its family's FLOP count, global batch and mesh)."""
        flops, tokens = exp.flops_per_step()
        devices = exp.mesh.devices.size
        peak = peak_tflops(jax.devices()[0].device_kind, override_peak)
        return cls(flops, exp.global_batch_size, tokens, peak, devices)

    def metrics(self, steps_per_sec: float) -> dict:
        m = {"train/examples_per_sec": steps_per_sec * self.examples_per_step}
        if self.tokens_per_example:
            m["train/tokens_per_sec"] = m["train/examples_per_sec"] * self.tokens_per_example
        tflops = steps_per_sec * self.flops_per_step / 1e12
        m["train/model_tflops_per_sec"] = tflops
        if self.peak:
            m["train/mfu"] = tflops / self.peak
        return m
