"""DDPG (Lillicrap et al., 2016) as PopSAN ships it (popsan_drl/popsan_ddpg): one Q-network, the target
actor's action without smoothing noise, an actor step and soft target updates at every iteration, and
Gaussian exploration noise. That is TD3 with one critic, no target noise and no policy delay;
`shared_noise` (DSRL's) draws one exploration noise for all of an action's dimensions, and `target`
chooses the target actor as TD3's does."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from .td3 import TD3


class DDPG(TD3):
    name = "ddpg"
    num_q = 1

    def __init__(self, actor: nn.Module, critic: nn.Module, obs_dim: int, act_dim: int, *, gamma: float,
                 polyak: float, actor_lr: float, critic_lr: float, act_noise: float, shared_noise: bool = False,
                 target: str = "polyak", proxy: Mapping | None = None, **runtime):
        super().__init__(actor, critic, obs_dim, act_dim, gamma=gamma, polyak=polyak, actor_lr=actor_lr,
                         critic_lr=critic_lr, policy_delay=1, act_noise=act_noise, target_noise=0.0,
                         noise_clip=0.0, shared_noise=shared_noise, target=target, proxy=proxy, **runtime)
