"""Mixed precision: the one object that owns autocast and (fp16 only) the gradient scaler.

The learner calls `autocast()` around forward passes and `step(loss, optimizer)` for the backward
pass and optimizer step; it never knows which mode is active. Weights, optimizer state, targets and
losses stay fp32 in every mode.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .sections import PRECISION_MODES

# On a CPU, auto takes bf16 only where the probe measures it at least this much faster than fp32: where the
# two are about even (AVX512-BF16 without AMX) the probe's noise would otherwise pick bf16, which then
# runs no faster and computes with 8 bits of mantissa.
AUTO_BF16_MARGIN = 1.1


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run computes in, what was asked for, and why they differ (or agree)."""

    mode: str
    requested: str
    reason: str


@dataclass(frozen=True)
class Probe:
    """A measurement of how fast bf16 runs this run's work: `ratio()` is fp32 time / bf16 time (above 1,
    bf16 is faster); `what` names the work measured."""

    ratio: Callable[[], float]
    what: str


def cpu_native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (x86: the avx512_bf16 or amx_bf16 flag; Arm: bf16), from
    /proc/cpuinfo; None where that cannot be read. torch's `get_cpu_capability()` does not say: it
    reports AVX512 on CPUs with and without avx512_bf16."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        return None
    return None


def choose(requested: str, device: torch.device | str, probe: Probe) -> PrecisionChoice:
    """The mode to run `requested` in on `device`. `auto`: bf16 on CUDA GPUs that compute it natively
    (compute capability 8.0 and later), and on a CPU where `probe` (the run's own update and acting)
    shows bf16 at least AUTO_BF16_MARGIN times as fast as fp32; else fp32. A CPU without bf16
    instructions (AVX2-only: bf16 is emulated, 10-60x slower) takes fp32 without probing, which would
    cost tens of seconds there. An explicit bf16 on a CPU where the probe shows it slower runs as asked,
    with one warning that says by how much."""
    device = torch.device(device)
    if requested not in ("auto", "bf16"):
        return PrecisionChoice(requested, requested, "as requested")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = major >= 8
        why = f"CUDA compute capability {major}.{minor} {'computes' if native else 'does not compute'} bf16 natively"
        if requested == "bf16":
            return PrecisionChoice("bf16", requested, f"as requested; {why}")
        return PrecisionChoice("bf16" if native else "fp32", requested, why)
    if requested == "auto" and cpu_native_bf16() is False:
        return PrecisionChoice("fp32", requested, f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 "
                               "instructions (no avx512_bf16 or amx_bf16 flag): bf16 would be emulated; not probed")
    ratio = probe.ratio()
    measured = (f"{probe.what} on this CPU ({torch.backends.cpu.get_cpu_capability()}) runs {ratio:.2f}x as fast "
                "in bf16 as in fp32")
    if requested == "bf16":
        if ratio < 0.9:
            warnings.warn(f"precision=bf16: {measured}; precision=fp32 (or auto) would train faster here",
                          stacklevel=2)
        return PrecisionChoice("bf16", requested, f"as requested; {measured}")
    return PrecisionChoice("bf16" if ratio >= AUTO_BF16_MARGIN else "fp32", requested, measured)


def nonfinite_flag(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """1.0 if any gradient `optimizer` would apply is NaN or inf, else 0.0: a tensor on the gradients'
    device, so the check needs no host synchronisation. GradScaler's own check, with a scale of 1 (it
    leaves the gradients as they are); about 30x faster on a CPU than a max-abs norm per tensor."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    found = torch.zeros((), device=params[0].device if params else "cpu")
    if grads:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones((), device=found.device))
    return found


def step_unless(found: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()` unless `found` is 1. Fused optimizers (our Adam) skip on the device, reading
    `found` in their kernel as they do for GradScaler; others need its value on the host."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = found
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not found.item():
        optimizer.step()


class Precision:
    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu",
                 scaler: torch.amp.GradScaler | None = None):
        """`scaler` (fp16 only) replaces the CUDA GradScaler built here: tests pass a CPU one to
        exercise the skip logic without a GPU. Without it, fp16 off CUDA is refused, as in config
        validation."""
        if mode not in PRECISION_MODES:
            raise ValueError(f"precision must be one of {PRECISION_MODES}, got {mode!r}")
        if scaler is not None and mode != "fp16":
            raise ValueError(f"a GradScaler is only used with precision=fp16, not {mode!r}")
        self.mode = mode
        self.device_type = torch.device(device).type
        if mode == "fp16" and scaler is None and self.device_type != "cuda":
            raise ValueError("precision=fp16 needs a CUDA GPU; use precision=bf16 on CPU")
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self):
        if self.mode == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mode == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             sync: Callable[[torch.optim.Optimizer], None] | None = None) -> torch.Tensor:
        """Backward `loss` (fp32) and step `optimizer`, through the scaler when there is one. A
        non-finite gradient skips the step. Returns 1.0 if the step was skipped, else 0.0, as a tensor
        on the device: nothing here waits for the device. `sync` (a distributed job's GradientMean)
        averages the gradients across ranks right after backward; they are checked after it, so every
        rank takes the same decision."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            # The scale only changes in scaler.update() (end_iteration), so comparing it around
            # scaler.step() never sees a skip. Instead unscale_ (public API) and check the true
            # gradients ourselves, the test unscale_ records for scaler.step: no reliance on the
            # scaler's private per-optimizer state.
            self.scaler.scale(loss).backward()
            if sync is not None:
                sync(optimizer)  # scaled gradients average as the true ones do; an inf stays an inf
            self.scaler.unscale_(optimizer)
            found = nonfinite_flag(optimizer)
            self.scaler.step(optimizer)  # skips on the check unscale_ recorded, the same test as ours
            return found
        loss.backward()
        if sync is not None:
            sync(optimizer)
        found = nonfinite_flag(optimizer)
        step_unless(found, optimizer)
        return found

    def end_iteration(self) -> None:
        """Once per learner iteration (after all optimizer steps of that iteration)."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
