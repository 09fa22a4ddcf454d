"""Learners: the off-policy algorithms, each a set of pure losses on one shell (base.py). `algo=<name>`
picks one (conf/algo/<name>.yaml names its class and hyperparameters)."""

from .base import HyperparameterError, Learner, update_probe
from .ddpg import DDPG
from .sac import SAC
from .td3 import TD3

__all__ = ["DDPG", "SAC", "TD3", "HyperparameterError", "Learner", "update_probe"]
