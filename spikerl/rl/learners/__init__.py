"""Learners: the off-policy algorithms, each a module of pure losses and a small class on one shell
(base.py). `algo=<name>` picks one: conf/algo/<name>.yaml names its class by its module path, so a new
algorithm is its own module, its config and its tests."""

from .base import HyperparameterError, Learner, update_probe
from .ddpg import DDPG
from .sac import SAC
from .td3 import TD3

__all__ = ["DDPG", "SAC", "TD3", "HyperparameterError", "Learner", "update_probe"]
