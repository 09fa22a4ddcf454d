"""Replay buffer: preallocated tensors holding raw observations; batches come out normalised with the
normaliser's current statistics (as PopSAN does), so old samples follow the statistics as they move."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    obs: torch.Tensor  # [B, obs_dim], normalised
    act: torch.Tensor  # [B, act_dim], in [-1, 1]
    rew: torch.Tensor  # [B]
    next_obs: torch.Tensor  # [B, obs_dim], normalised
    terminated: torch.Tensor  # [B], 1.0 where the episode really ended (no bootstrap)


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, device: torch.device | str = "cpu"):
        self.capacity, self.device = int(capacity), torch.device(device)
        self.obs = torch.zeros(self.capacity, obs_dim)
        self.next_obs = torch.zeros(self.capacity, obs_dim)
        self.act = torch.zeros(self.capacity, act_dim)
        self.rew = torch.zeros(self.capacity)
        self.terminated = torch.zeros(self.capacity)
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, rew, next_obs, terminated) -> None:
        """Add a batch of transitions (one per vector-env copy), numpy arrays with a leading axis."""
        n = len(rew)
        idx = (self.ptr + np.arange(n)) % self.capacity
        self.obs[idx] = torch.as_tensor(obs, dtype=torch.float32)
        self.act[idx] = torch.as_tensor(act, dtype=torch.float32)
        self.rew[idx] = torch.as_tensor(rew, dtype=torch.float32)
        self.next_obs[idx] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.terminated[idx] = torch.as_tensor(terminated, dtype=torch.float32)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, normalize, generator: torch.Generator) -> Batch:
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        to = self.device
        return Batch(
            obs=normalize(self.obs[idx].to(to)),
            act=self.act[idx].to(to),
            rew=self.rew[idx].to(to),
            next_obs=normalize(self.next_obs[idx].to(to)),
            terminated=self.terminated[idx].to(to),
        )

    def state_dict(self) -> dict:
        """The filled part of the buffer, as tensors (loadable with weights_only=True)."""
        n = self.size
        return {"ptr": self.ptr, "size": n, "capacity": self.capacity, "obs": self.obs[:n].clone(),
                "next_obs": self.next_obs[:n].clone(), "act": self.act[:n].clone(), "rew": self.rew[:n].clone(),
                "terminated": self.terminated[:n].clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError(f"replay of capacity {state['capacity']} and obs shape {tuple(state['obs'].shape[1:])} "
                             f"does not fit this run's ({self.capacity}, {tuple(self.obs.shape[1:])})")
        n = state["size"]
        for key in ("obs", "next_obs", "act", "rew", "terminated"):
            getattr(self, key)[:n] = state[key]
        self.ptr, self.size = state["ptr"], n
