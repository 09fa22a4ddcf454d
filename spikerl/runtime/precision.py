"""Mixed precision: the one object that owns autocast and (fp16 only) the gradient scaler.

The learner calls `autocast()` around forward passes and `step(loss, optimizer)` for the backward
pass and optimizer step; it never knows which mode is active. Weights, optimizer state, targets and
losses stay fp32 in every mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

MODES = ("fp32", "bf16", "fp16")


@dataclass
class PrecisionConfig:
    """The `precision` config section."""

    mode: str = "fp32"

    CHOICES = {"mode": MODES}


def grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient `optimizer` would apply is finite. The max-abs norm of each tensor keeps
    NaN and inf and, unlike an L2 norm, cannot overflow for large finite gradients."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf")))).all())


class Precision:
    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu",
                 scaler: torch.amp.GradScaler | None = None):
        """`scaler` (fp16 only) replaces the CUDA GradScaler built here: tests pass a CPU one to
        exercise the skip logic without a GPU. Without it, fp16 off CUDA is refused, as in config
        validation."""
        if mode not in MODES:
            raise ValueError(f"precision must be one of {MODES}, got {mode!r}")
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

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> bool:
        """Backward `loss` (fp32) and step `optimizer`, through the scaler when there is one. A
        non-finite gradient skips the step and returns False. Gradients are checked after backward,
        when DDP has averaged them, so every rank takes the same decision."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            # The scale only changes in scaler.update() (end_iteration), so comparing it around
            # scaler.step() never sees a skip. Instead unscale_ (public API) and inspect the true
            # gradients ourselves, the same test unscale_ records as found_inf: no reliance on the
            # scaler's private per-optimizer state. On a skip scaler.step is not called; update()
            # still backs the scale off from the found_inf that unscale_ recorded.
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            if not grads_finite(optimizer):
                return False
            self.scaler.step(optimizer)  # reuses the unscaled gradients and their (finite) check
            return True
        loss.backward()
        if not grads_finite(optimizer):
            return False
        optimizer.step()
        return True

    def end_iteration(self) -> None:
        """Once per learner iteration (after all optimizer steps of that iteration)."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
