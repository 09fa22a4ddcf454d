"""Mixed precision: the one object that owns autocast and (fp16 only) the gradient scaler.

The learner calls `autocast()` around forward passes and `step(loss, optimizer)` for the backward
pass and optimizer step; it never knows which mode is active. Weights, optimizer state, targets and
losses stay fp32 in every mode.
"""

from __future__ import annotations

import contextlib

import torch

MODES = ("fp32", "bf16", "fp16")


class Precision:
    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu"):
        if mode not in MODES:
            raise ValueError(f"precision must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.device_type = torch.device(device).type
        if mode == "fp16" and self.device_type != "cuda":
            raise ValueError("precision=fp16 needs a CUDA GPU; use precision=bf16 on CPU")
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

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
            self.scaler.scale(loss).backward()
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)  # skips by itself on inf/nan
            return self.scaler.get_scale() >= scale
        loss.backward()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
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
