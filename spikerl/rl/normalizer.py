"""Observation normalisation, fitted online from the observations the agent has seen."""

from __future__ import annotations

import numpy as np
import torch

from .sections import NORMALIZER_KINDS


class ObsNormalizer:
    """`zscore` (PopSAN): (o - running mean) / running std, clipped to +-clip.
    `maxabs` (DSRL, its src/td3_agent.py): o / running max |o|, where the max starts at the observation
    space's upper bound (`start_at`; +inf read as 1, so never below 1 on MuJoCo) and grows with every
    observation before the policy sees it, an episode's last observation included (`every_step`).
    `none`: identity.

    New observations are first gathered as pending sums; `sync` folds them into the statistics
    (Chan et al.'s parallel variance update, float64), summed over all ranks of a distributed job, so
    every rank normalises with the same statistics. The training loop syncs at every update round;
    the collector also syncs at every env step where `every_step`."""

    def __init__(self, dim: int, kind: str = "zscore", clip: float = 3.0, eps: float = 1e-8):
        if kind not in NORMALIZER_KINDS:
            raise ValueError(f"normalizer kind must be one of {NORMALIZER_KINDS}, got {kind!r}")
        self.dim, self.kind, self.clip, self.eps = dim, kind, float(clip), eps
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.max_abs = np.zeros(dim)
        self._pending = np.zeros(1 + 2 * dim)  # count, sum, sum of squares since the last sync
        self._pending_max = np.zeros(dim)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def every_step(self) -> bool:
        """Whether each observation must count before the policy acts on it (DSRL's max |o|)."""
        return self.kind == "maxabs"

    def start_at(self, high: np.ndarray) -> None:
        """Start the running max |o| at the observation space's upper bound, +inf read as 1 (DSRL's
        td3_agent.py, `Agent.__init__`); before any observation."""
        high = np.asarray(high, dtype=np.float64).reshape(self.dim)
        self.max_abs = np.where(high == np.inf, 1.0, high)
        self._cache = None

    def update(self, obs: np.ndarray) -> None:
        """Record observations; they count once `sync` has run."""
        obs = np.asarray(obs, dtype=np.float64).reshape(-1, self.dim)
        self._pending[0] += obs.shape[0]
        self._pending[1:1 + self.dim] += obs.sum(0)
        self._pending[1 + self.dim:] += (obs**2).sum(0)
        self._pending_max = np.maximum(self._pending_max, np.abs(obs).max(0))

    def sync(self, all_reduce=None) -> None:
        """Fold the pending observations (of every rank, when `all_reduce(tensor, op)` is given)
        into the statistics."""
        pending, pending_max = self._pending, self._pending_max
        if all_reduce is not None:
            pending = all_reduce(torch.from_numpy(pending.copy()), "sum").numpy()
            pending_max = all_reduce(torch.from_numpy(pending_max.copy()), "max").numpy()
        self._pending = np.zeros_like(self._pending)
        self._pending_max = np.zeros_like(self._pending_max)
        n = pending[0]
        if n == 0:
            return
        batch_mean = pending[1:1 + self.dim] / n
        batch_m2 = np.maximum(pending[1 + self.dim:] - n * batch_mean**2, 0.0)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.count = int(total)
        self.max_abs = np.maximum(self.max_abs, pending_max)
        self._cache = None

    @property
    def std(self) -> np.ndarray:
        var = self.m2 / max(self.count, 1)
        return np.sqrt(var + self.eps)

    def _shift_scale(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0].device != torch.device(device):
            if self.kind == "zscore" and self.count > 0:
                shift, scale = self.mean, self.std
            elif self.kind == "maxabs" and (self.count > 0 or self.max_abs.any()):
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

    @property
    def bound(self) -> float | None:
        """The largest |value| it hands the actor (None: unbounded)."""
        return {"zscore": self.clip, "maxabs": 1.0}.get(self.kind)

    # On the host of an exported actor (spikerl/export/host.py): frozen at the statistics it had.
    def host_state(self) -> tuple[dict, dict]:
        shift, scale = self._shift_scale("cpu")  # the float32 tensors it computes with
        config = {"kind": self.kind, "clip": self.clip,
                  "formula": "zscore: clamp((o - shift) / scale, -clip, clip); maxabs: o / scale; none: o"}
        return config, {"shift": shift.numpy().copy(), "scale": scale.numpy().copy()}

    @classmethod
    def from_host(cls, config: dict, arrays: dict) -> ObsNormalizer:
        shift, scale = (torch.from_numpy(np.ascontiguousarray(arrays[k], dtype=np.float32)) for k in ("shift", "scale"))
        frozen = cls(shift.shape[0], config["kind"], config["clip"])
        frozen._cache = (shift, scale)
        return frozen

    def host_ops(self, timesteps: int) -> dict:
        n = 0 if self.kind == "none" else self.dim  # subtract the shift, divide by the scale (counted as a mult)
        return {"adds": n, "mults": n, "exps": 0, "tanhs": 0, "randoms": 0}

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "clip": self.clip,
            "count": self.count,
            "mean": torch.from_numpy(self.mean.copy()),
            "m2": torch.from_numpy(self.m2.copy()),
            "max_abs": torch.from_numpy(self.max_abs.copy()),
            "pending": torch.from_numpy(self._pending.copy()),
            "pending_max": torch.from_numpy(self._pending_max.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.kind, self.clip, self.count = state["kind"], float(state["clip"]), int(state["count"])
        self.mean = state["mean"].double().numpy().copy()
        self.m2 = state["m2"].double().numpy().copy()
        self.max_abs = state["max_abs"].double().numpy().copy()
        if "pending" in state:
            self._pending = state["pending"].double().numpy().copy()
            self._pending_max = state["pending_max"].double().numpy().copy()
        self._cache = None
