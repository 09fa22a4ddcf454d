"""Observation normalisation, fitted online from the observations the agent has seen."""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("zscore", "maxabs", "none")


class ObsNormalizer:
    """`zscore` (PopSAN): (o - running mean) / running std, clipped to +-clip.
    `maxabs` (DSRL): o / running max |o|. `none`: identity.

    Statistics are float64 and updated with whole batches (Chan et al.'s parallel variance update),
    so the result does not depend on how observations were batched."""

    def __init__(self, dim: int, kind: str = "zscore", clip: float = 3.0, eps: float = 1e-8):
        if kind not in KINDS:
            raise ValueError(f"obs_norm must be one of {KINDS}, got {kind!r}")
        self.dim, self.kind, self.clip, self.eps = dim, kind, float(clip), eps
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.max_abs = np.zeros(dim)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, obs: np.ndarray) -> None:
        obs = np.asarray(obs, dtype=np.float64).reshape(-1, self.dim)
        n = obs.shape[0]
        batch_mean = obs.mean(0)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + ((obs - batch_mean) ** 2).sum(0) + delta**2 * self.count * n / total
        self.count = total
        self.max_abs = np.maximum(self.max_abs, np.abs(obs).max(0))
        self._cache = None

    @property
    def std(self) -> np.ndarray:
        var = self.m2 / max(self.count, 1)
        return np.sqrt(var + self.eps)

    def _shift_scale(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0].device != torch.device(device):
            if self.kind == "zscore" and self.count > 0:
                shift, scale = self.mean, self.std
            elif self.kind == "maxabs" and self.count > 0:
                shift, scale = np.zeros(self.dim), np.maximum(self.max_abs, self.eps)
            else:
                shift, scale = np.zeros(self.dim), np.ones(self.dim)
            self._cache = (
                torch.as_tensor(shift, dtype=torch.float32, device=device),
                torch.as_tensor(scale, dtype=torch.float32, device=device),
            )
        return self._cache

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return obs
        shift, scale = self._shift_scale(obs.device)
        out = (obs - shift) / scale
        return out.clamp(-self.clip, self.clip) if self.kind == "zscore" else out

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "clip": self.clip,
            "count": self.count,
            "mean": torch.from_numpy(self.mean.copy()),
            "m2": torch.from_numpy(self.m2.copy()),
            "max_abs": torch.from_numpy(self.max_abs.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.kind, self.clip, self.count = state["kind"], float(state["clip"]), int(state["count"])
        self.mean = state["mean"].double().numpy().copy()
        self.m2 = state["m2"].double().numpy().copy()
        self.max_abs = state["max_abs"].double().numpy().copy()
        self._cache = None
